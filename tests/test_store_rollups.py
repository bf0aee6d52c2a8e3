"""History store levels: hourly rollups, retention per level, migration from schema 1, the
chart level history() picks by span, and the [store] keys. Real SQLite files throughout; time
is synthetic (record_tick takes `now`), so days of history take a second or two."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import msgpack
import pytest

from ctop import store as store_mod
from ctop.config import ConfigError, StoreConfig, TomlSource, from_source
from ctop.snapshot import Liveness, NodeView, ServiceView
from ctop.store import MIGRATIONS, Store, StoreReader, rollups

HOUR = 3600
DAY = 86400
T0 = 1_800_000_000.0  # an hour boundary (500,000 hours)


def view(node: str, now: float, cpu: float, latency: float | None = 2.0) -> NodeView:
    return NodeView(node, node, "g", Liveness.ALIVE, now, 1, 1.0, cpu=cpu, mem=40.0,
                    load1=1.25, conns=100, disk_root=50.0,
                    services=(ServiceView("http", "ok", latency),), metrics={"procs": 7})


def drive(store: Store, start: float, stop: float, step: float,
          views: Callable[[float], list[NodeView]], flush_every: int = 50) -> None:
    """record_tick from start to stop (exclusive); flushed often enough that the writer's
    queue (120 batches) never overflows, which would lose rows silently."""
    for i, now in enumerate(_range(start, stop, step)):
        store.record_tick(now, views(now), ())
        if i % flush_every == flush_every - 1:
            store.flush()
    store.flush()
    assert store.dropped_batches == 0


def _range(start: float, stop: float, step: float) -> Iterator[float]:
    now = start
    while now < stop:
        yield now
        now += step


def sql(store: Store, query: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(store.path)
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


# -- hourly rollups -------------------------------------------------------------------------


def test_an_hour_of_ticks_becomes_one_hourly_row_weighted_by_samples(tmp_path: Path) -> None:
    """First half hour: a report every 5 s at 80 % CPU, 10 ms; second half: every 30 s at 20 %,
    40 ms. Per sample that averages 71.4 % and 14.3 ms; per minute (unweighted) it would be
    50 % and 25 ms."""
    store = Store(str(tmp_path / "h.db"))

    def views(now: float) -> list[NodeView]:
        first = now < T0 + 1800
        return [view("a", now, 80.0 if first else 20.0, 10.0 if first else 40.0),
                view("b", now, 5.0)]

    drive(store, T0, T0 + 1800, 5, views)
    drive(store, T0 + 1800, T0 + HOUR, 30, views)
    assert sql(store, "SELECT count(*) FROM hourly") == [(0,)]  # the hour has not finished
    drive(store, T0 + HOUR, T0 + HOUR + 1, 1, views)  # the first tick of the next hour
    rows = sql(store, "SELECT n.node_id, h.hour, h.n, h.cpu_avg, h.cpu_max, h.mem_avg, "
                      "h.load1_max, h.svc FROM hourly h JOIN nodes n ON n.id = h.node "
                      "ORDER BY 1")
    assert [r[:3] for r in rows] == [("a", T0 // HOUR, 360 + 60), ("b", T0 // HOUR, 420)]
    a, b = rows
    assert a[3] == round(10 * (360 * 80 + 60 * 20) / 420)  # scaled x10, as the minutes
    assert a[4] == 800 and a[5] == 400 and a[6] == 125
    assert b[3] == 50 and b[4] == 50
    ids, latencies = msgpack.unpackb(a[7])
    assert latencies == [round(10 * (360 * 10 + 60 * 40) / 420)]  # 0.1 ms
    assert sql(store, "SELECT name FROM services WHERE id = ?", ids[0]) == [("http",)]
    assert sql(store, "SELECT value FROM meta WHERE key = 'hourly_next'") == [
        (str(int(T0 // HOUR) + 1),)]
    store.close()


def test_services_that_change_within_the_hour_average_per_service(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))

    def views(now: float) -> list[NodeView]:
        v = view("a", now, 10.0, 4.0)
        if now >= T0 + 1800:  # a second service appears half way; http loses its latency
            v = v._replace(services=(ServiceView("http", "fail", None),
                                     ServiceView("dns", "ok", 1.0)))
        return [v]

    drive(store, T0, T0 + HOUR + 1, 60, views)
    (blob,), = sql(store, "SELECT svc FROM hourly")
    ids, latencies = msgpack.unpackb(blob)
    names = dict(sql(store, "SELECT id, name FROM services"))
    assert dict(zip([names[i] for i in ids], latencies, strict=True)) == {"http": 40, "dns": 10}
    points = store.history("a", ["svc:http", "svc:dns"], 7 * DAY, now=T0 + HOUR + 1)
    assert points == {"svc:http": [(T0, 4.0)], "svc:dns": [(T0, 1.0)]}
    store.close()


# -- retention ------------------------------------------------------------------------------


def test_retention_prunes_each_level_to_its_own_age(tmp_path: Path) -> None:
    """Two days of a report a minute with 2 h / 5 h / 1 day of retention. Retention runs every
    PRUNE_EVERY (600 s), so each level's oldest row is its retention old, give or take that
    and the level's unit; without pruning all would be two days old."""
    store = Store(str(tmp_path / "r.db"), raw_retention=2 * HOUR, minute_retention=5 * HOUR,
                  hourly_retention=DAY, raw_every=1)
    now = T0  # the last tick
    drive(store, now - 2 * DAY, now + 1, 60, lambda t: [view("a", t, 30.0)])
    slack = store_mod.PRUNE_EVERY + 60
    (oldest_raw,), = sql(store, "SELECT min(ts) / 1000.0 FROM samples")
    (oldest_minute,), = sql(store, "SELECT min(minute) * 60 FROM rollups")
    (oldest_hour, hours), = sql(store, "SELECT min(hour) * 3600, count(*) FROM hourly")
    assert now - 2 * HOUR - slack <= oldest_raw <= now - 2 * HOUR + 60
    assert now - 5 * HOUR - slack - 60 <= oldest_minute <= now - 5 * HOUR + 60
    assert now - DAY - slack - HOUR <= oldest_hour <= now - DAY + HOUR
    assert hours in (24, 25)
    store.close()


def test_minute_rows_never_outlive_the_hourly_retention(tmp_path: Path) -> None:
    # (Store(rollup_retention=) is gone: nothing passed it; the [store] key of that name
    # still works, see test_the_old_rollup_retention_key_is_the_hourly_retention)
    old = Store(str(tmp_path / "o.db"), hourly_retention=30 * DAY)
    assert (old.hourly_retention, old.minute_retention) == (30 * DAY, 2 * DAY)
    old.close()
    short = Store(str(tmp_path / "s.db"), hourly_retention=DAY)  # minutes: not beyond it
    assert (short.hourly_retention, short.minute_retention) == (DAY, DAY)
    short.close()
    default = Store(str(tmp_path / "d.db"))
    assert (default.minute_retention, default.hourly_retention) == (
        StoreConfig().minute_retention, StoreConfig().hourly_retention)
    default.close()


# -- migration from schema version 1 --------------------------------------------------------

# The schema as version 1 of ctop.store created it (sqlite_master of such a database).
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    node_id TEXT NOT NULL UNIQUE,
    hostname TEXT, grp TEXT, addresses TEXT, cores INTEGER, mem_total INTEGER,
    version TEXT, interval REAL, first_seen REAL, last_seen REAL
);
CREATE TABLE samples (
    node INTEGER NOT NULL, ts INTEGER NOT NULL,
    cpu INTEGER, mem INTEGER, swap INTEGER, load1 INTEGER, net_rx INTEGER, net_tx INTEGER,
    conns INTEGER, procs INTEGER, threads INTEGER, users INTEGER, disk INTEGER,
    svc BLOB,
    PRIMARY KEY (node, ts)
) WITHOUT ROWID;
CREATE TABLE rollups (
    node INTEGER NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
    cpu_avg INTEGER, cpu_max INTEGER, mem_avg INTEGER, mem_max INTEGER, swap_avg INTEGER,
    swap_max INTEGER, load1_avg INTEGER, load1_max INTEGER, net_rx_avg INTEGER,
    net_rx_max INTEGER, net_tx_avg INTEGER, net_tx_max INTEGER, conns_avg INTEGER,
    conns_max INTEGER, procs_avg INTEGER, procs_max INTEGER, threads_avg INTEGER,
    threads_max INTEGER, users_avg INTEGER, users_max INTEGER, disk_avg INTEGER,
    disk_max INTEGER,
    svc BLOB,
    PRIMARY KEY (node, minute)
) WITHOUT ROWID;
CREATE TABLE services (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
    node TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX events_node_ts ON events (node, ts);
CREATE INDEX events_ts ON events (ts);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def version1_database(path: Path, days: int) -> None:
    """A version-1 database with `days` of 1-minute rollups of node "old" (CPU = hour of day,
    http latency 3 ms) and an hour of raw samples, as version 1 wrote them."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO nodes (id, node_id, first_seen) VALUES (1, 'old', ?)", (T0 - 99,))
    db.execute("INSERT INTO services VALUES (1, 'http')")
    svc = msgpack.packb([[1], [30]])
    first = int((T0 - days * DAY) // 60)
    db.executemany(
        "INSERT INTO rollups VALUES (1, ?, 60, " + ", ".join("?" * 22) + ", ?)",
        [(m, *[10 * (m // 60 % 24), 10 * (m // 60 % 24) + 5] * 11, svc)
         for m in range(first, int(T0 // 60))],
    )
    db.executemany("INSERT INTO samples (node, ts, cpu, svc) VALUES (1, ?, 123, ?)",
                   [(int((T0 - s) * 1000), svc) for s in range(1, HOUR)])
    db.commit()
    db.close()


def test_a_version_1_database_upgrades_and_rolls_up_its_minutes(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    version1_database(path, days=3)
    store = Store(str(path))
    assert sql(store, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(len(MIGRATIONS)),)]
    assert sql(store, "SELECT count(*) FROM hourly") == [(0,)]
    assert sql(store, "SELECT count(*) FROM samples") == [(HOUR - 1,)]  # kept as they were
    store.record_tick(T0 + 5, [view("old", T0 + 5, 1.0)], ())
    store.record_tick(T0 + 65, [view("old", T0 + 65, 1.0)], ())  # minute T0 is done
    store.flush()
    rows = sql(store, "SELECT hour, n, cpu_avg, cpu_max, svc FROM hourly ORDER BY hour")
    assert len(rows) == 72
    assert [r[0] for r in rows] == list(range(int((T0 - 3 * DAY) // HOUR), int(T0 // HOUR)))
    assert all(n == 3600 and avg == 10 * (h % 24) and mx == avg + 5
               and msgpack.unpackb(svc) == [[1], [30]] for h, n, avg, mx, svc in rows)
    # The minutes beyond the minute retention (48 h) go once their hours are rolled up.
    (oldest,), = sql(store, "SELECT min(minute) FROM rollups")
    assert oldest == int((T0 + 5 - 2 * DAY) // 60)
    week = store.history("old", ["cpu_percent", "svc:http"], 7 * DAY, now=T0 + 65)
    assert len(week["cpu_percent"]) == 73  # 72 hours, and the current one from its minute
    assert week["cpu_percent"][0] == (T0 - 3 * DAY, (T0 // HOUR - 72) % 24)
    assert week["cpu_percent"][-2:] == [(T0 - HOUR, (T0 // HOUR - 1) % 24), (T0, 1.0)]
    assert week["svc:http"][-2:] == [(T0 - HOUR, 3.0), (T0, 2.0)]
    store.close()


def test_an_upgrade_catches_up_in_steps_and_keeps_minutes_until_rolled_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As at 10,000 nodes, where one pass takes one hour: the backlog goes one hour every
    CATCHUP_EVERY seconds, and no minute row is pruned before its hour is rolled up."""
    monkeypatch.setattr(rollups, "HOURLY_ROWS_PER_PASS", 60)  # an hour of one node
    path = tmp_path / "v1.db"
    version1_database(path, days=3)
    store = Store(str(path))
    every = rollups.CATCHUP_EVERY
    ticks = [T0 + i * every for i in range(10)] + [T0 + store_mod.PRUNE_EVERY + 5]
    for now in ticks:  # flushed each time: the next pass is asked for once this one is done
        store.record_tick(now, [view("old", now, 1.0)], ())
        store.flush()
    assert sql(store, "SELECT count(*) FROM hourly") == [(11,)]
    # the two retention passes (at the first and the last tick) took only rolled-up minutes
    (oldest,), = sql(store, "SELECT min(minute) FROM rollups")
    assert oldest == int((T0 - 3 * DAY) // 60) + 11 * 60
    month = store.history("old", ["cpu_percent"], 30 * DAY, now=ticks[-1])["cpu_percent"]
    assert len(month) == 73  # rolled-up hours and the backlog, averaged on the fly
    assert [t for t, _ in month] == [T0 - 3 * DAY + h * HOUR for h in range(73)]
    store.close()


def test_a_database_at_the_newest_schema_is_left_as_it_is(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "x.db"))
    store.close()
    db = sqlite3.connect(tmp_path / "x.db")
    newest = len(MIGRATIONS)
    assert store_mod.migrate(db) == newest
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(newest),)
    db.close()


# -- history(): the level by span -----------------------------------------------------------


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """30 days of one node reporting every 10 minutes; CPU = 2 x the hour of day."""
    path = tmp_path_factory.mktemp("month") / "m.db"
    store = Store(str(path), raw_every=1)
    drive(store, T0 - 30 * DAY, T0, 600,
          lambda now: [view("n", now, cpu_at(now), 1.0 + now // HOUR % 3)])
    store.record_tick(T0, [], ())  # the last minute and hour end
    store.flush()
    yield store
    store.close()


def cpu_at(t: float) -> float:
    return 2.0 * (t // HOUR % 24)


def spacing(points: list[tuple[float, float]]) -> set[float]:
    return {b[0] - a[0] for a, b in pairwise(points)}


def test_history_reads_raw_samples_up_to_6_hours(month: Store) -> None:
    points = month.history("n", ["cpu_percent"], 6 * HOUR, now=T0)["cpu_percent"]
    assert len(points) == 36 and spacing(points) == {600.0}
    assert points[-1] == (T0 - 600, cpu_at(T0 - 600))


def test_history_reads_minute_rollups_up_to_the_minute_retention(month: Store) -> None:
    points = month.history("n", ["cpu_percent"], 2 * DAY, now=T0)["cpu_percent"]
    assert len(points) == 288 and spacing(points) == {600}  # one minute row per report


def test_history_over_7_days_reads_hourly_rollups(month: Store) -> None:
    points = month.history("n", ["cpu_percent", "svc:http"], 7 * DAY, now=T0)
    cpu = points["cpu_percent"]
    assert len(cpu) == 7 * 24 and spacing(cpu) == {HOUR}
    assert cpu[0] == (T0 - 7 * DAY, cpu_at(T0 - 7 * DAY))
    assert cpu[-1] == (T0 - HOUR, cpu_at(T0 - HOUR))
    assert [v for _, v in points["svc:http"][:4]] == [1.0 + (T0 // HOUR - 168 + h) % 3
                                                       for h in range(4)]


def test_history_over_30_days_reads_hourly_rollups(month: Store) -> None:
    cpu = month.history("n", ["cpu_percent", "mem_percent"], 30 * DAY, now=T0)
    assert len(cpu["cpu_percent"]) == 30 * 24 and spacing(cpu["cpu_percent"]) == {HOUR}
    assert all(v == cpu_at(t) for t, v in cpu["cpu_percent"])
    assert {v for _, v in cpu["mem_percent"]} == {40.0}
    # 30 days of hourly rows, not 30 days of minutes: the minutes are gone beyond 48 h
    (minutes,), = sql(month, "SELECT count(*) FROM rollups")
    assert minutes <= 2 * 24 * 6 + 1


def test_a_reader_picks_the_level_by_the_daemons_minute_retention(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")
    daemon = Store(path, minute_retention=12 * HOUR)
    drive(daemon, T0 - DAY, T0, 600, lambda now: [view("n", now, 9.0)])
    reader = StoreReader(path)  # as `ctop` attached to `ctop serve`
    day = reader.history("n", ["cpu_percent"], DAY, now=T0)["cpu_percent"]
    assert spacing(day) == {HOUR}  # 24 h > the daemon's 12 h of minutes: hourly
    half = reader.history("n", ["cpu_percent"], 12 * HOUR, now=T0)["cpu_percent"]
    assert spacing(half) == {600}
    reader.close()
    daemon.close()


# -- [store] in ctop.toml -------------------------------------------------------------------


def store_config(tmp_path: Path, text: str) -> StoreConfig:
    path = tmp_path / "ctop.toml"
    path.write_text(text)
    return from_source(TomlSource.load(path)).store


def store_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        store_config(tmp_path, text)
    return str(e.value)


def test_store_retention_keys(tmp_path: Path) -> None:
    cfg = store_config(tmp_path, '[store]\nminute_retention = "3d"\nhourly_retention = "400d"\n')
    assert (cfg.minute_retention, cfg.hourly_retention) == (3 * DAY, 400 * DAY)
    assert cfg.rollup_retention == 400 * DAY  # what the engine passes on to Store
    default = store_config(tmp_path, "[store]\n")
    assert (default.raw_retention, default.minute_retention, default.hourly_retention) == (
        DAY, 2 * DAY, 90 * DAY)


def test_the_old_rollup_retention_key_is_the_hourly_retention(tmp_path: Path) -> None:
    cfg = store_config(tmp_path, '[store]\nrollup_retention = "30d"\n')
    assert (cfg.minute_retention, cfg.hourly_retention) == (2 * DAY, 30 * DAY)
    cfg = store_config(tmp_path, '[store]\nrollup_retention = "1d"\n')
    assert (cfg.minute_retention, cfg.hourly_retention) == (DAY, DAY)


@pytest.mark.parametrize(("text", "where"), [
    ('[store]\npath = "x.db"\nminute_retention = "soon"\n', ":3: key 'store.minute_retention'"),
    ('cluster = "c"\n\n[store]\nhourly_retention = -5\n', ":4: key 'store.hourly_retention'"),
    ('[store]\nhourly_retention = "0d"\n', ":2: key 'store.hourly_retention': expected a "
                                           "duration > 0"),
    ('[store]\nhourly_retention = "30d"\nrollup_retention = "30d"\n',
     ":3: key 'store.rollup_retention': old name of hourly_retention"),
    ('[store]\nminute_retention = "7d"\nhourly_retention = "2d"\n',
     ":2: key 'store.minute_retention': must not exceed"),
    ('[store]\nminute_retention = true\n', ":2: key 'store.minute_retention'"),
])
def test_bad_retention_values_name_the_line(tmp_path: Path, text: str, where: str) -> None:
    msg = store_error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "ctop.toml")) and where in msg, msg


# -- a reader only reads --------------------------------------------------------------------


def test_a_reader_creates_nothing_before_the_daemon_does(tmp_path: Path) -> None:
    """`ctop` attached before `ctop serve` made its database: the reader shows no history
    and leaves the path alone (no file with the caller's umask instead of the daemon's
    0640, no directory), then shows what the daemon writes."""
    path = tmp_path / "lib" / "ctop.db"
    reader = StoreReader(str(path))
    assert reader.history("n", ["cpu_percent"], HOUR, now=T0) == {"cpu_percent": []}
    assert reader.events() == [] and reader.load_marks() == []
    assert not (tmp_path / "lib").exists()
    daemon = Store(str(path))
    drive(daemon, T0 - 600, T0, 60, lambda now: [view("n", now, 9.0)])
    assert [v for _, v in reader.history("n", ["cpu_percent"], HOUR, now=T0)["cpu_percent"]
            ] == [9.0] * 10
    reader.close()
    daemon.close()


def test_a_reader_cannot_change_the_history(tmp_path: Path) -> None:
    path = str(tmp_path / "d.db")
    daemon = Store(path)
    drive(daemon, T0 - 600, T0, 60, lambda now: [view("n", now, 9.0)])
    reader = StoreReader(path)
    assert len(reader.history("n", ["cpu_percent"], HOUR, now=T0)["cpu_percent"]) == 10
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._query("DELETE FROM samples")
    assert sql(daemon, "SELECT count(*) FROM samples") == [(10,)]
    reader.close()
    daemon.close()
