"""History in SQLite: nodes, raw samples, 1-minute and hourly rollups, and events.

Writes are batched: the engine hands one batch per tick to a writer thread, which commits it
in one transaction, so ingest never waits on the disk. Reads (chart queries) use their own
connection; WAL mode lets them run while the writer commits.

Three levels, each with its own retention: raw samples (charts up to 6 h), 1-minute rollups
(charts up to the minute retention) and hourly rollups (longer charts). The event loop builds
the minute rollups from every report; the writer thread rolls each finished hour's minute rows
up into one hourly row per node (`_roll_hours`), so the hourly level costs the loop nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby, repeat
from operator import add, attrgetter, itemgetter, mul
from typing import Any

import msgpack

from ctop import alert_history, lb_history
from ctop.filemodes import private_database
from ctop.snapshot import AlertView, EventView, NodeView

log = logging.getLogger(__name__)

# Chartable metrics: readable name -> column in samples (and <column>_avg/_max in rollups).
COLUMNS = {
    "cpu_percent": "cpu",
    "mem_percent": "mem",
    "swap_percent": "swap",
    "load": "load1",
    "net_rx_bps": "net_rx",
    "net_tx_bps": "net_tx",
    "tcp_established": "conns",
    "procs": "procs",
    "threads": "threads",
    "users": "users",
    "disk_root_percent": "disk",
}
_COLS = tuple(COLUMNS.values())
# Values are stored as integers, round(value * scale), like the wire carries them: SQLite
# stores a small integer in 1-4 bytes where a REAL takes 8, which is most of a sample row.
SCALES = {
    "cpu": 10, "mem": 10, "swap": 10, "load1": 100, "net_rx": 1, "net_tx": 1,
    "conns": 1, "procs": 1, "threads": 1, "users": 1, "disk": 10,
}
_SCALE = tuple(SCALES[c] for c in _COLS)
TS_SCALE = 1000  # samples.ts in milliseconds
LATENCY_SCALE = 10  # service latencies in tenths of a millisecond, as on the wire
PRUNE_EVERY = 600.0  # seconds between retention passes
RAW_SPAN = 6 * 3600.0  # history() reads raw samples for spans up to this
# Default retention per level; at 10,000 nodes a day of minute rollups is ~1.8 GB and a day of
# hourly rollups ~30 MB (docs/performance.md). 48 h of minutes keep the UI's longest chart
# (24 h) at full resolution with a day to spare; beyond, hourly rows (168 points a week).
RAW_RETENTION = 24 * 3600.0
MINUTE_RETENTION = 48 * 3600.0
HOURLY_RETENTION = 90 * 86400.0
# One hourly pass reads at most this many minute rows (one hour of 10,000 nodes), so catching
# up a backlog (an upgraded database, downtime) goes in short steps between the tick batches.
HOURLY_ROWS_PER_PASS = 600_000
CATCHUP_EVERY = 5.0  # seconds between hourly passes while behind
REBUILD_MINUTES = 10  # at start, minutes after the last written one rebuilt from raw samples
FAILURE_LOG_EVERY = 60.0  # seconds between log lines while history writes keep failing
_ROLLUP_COLUMNS = ", ".join(f"{c}_avg INTEGER, {c}_max INTEGER" for c in _COLS)

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema. Samples and rollups hold scaled integers (see SCALES); their svc
    # blobs are msgpack [[service id, ...], [latency in 0.1 ms, ...]] with the ids of the
    # services table, so a row does not repeat seven service names.
    f"""
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL UNIQUE,
        hostname TEXT, grp TEXT, addresses TEXT, cores INTEGER, mem_total INTEGER,
        version TEXT, interval REAL, first_seen REAL, last_seen REAL
    );
    CREATE TABLE samples (
        node INTEGER NOT NULL, ts INTEGER NOT NULL,
        {", ".join(f"{c} INTEGER" for c in _COLS)},
        svc BLOB,
        PRIMARY KEY (node, ts)
    ) WITHOUT ROWID;
    CREATE TABLE rollups (
        node INTEGER NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
        {", ".join(f"{c}_avg INTEGER, {c}_max INTEGER" for c in _COLS)},
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
    """,
    # 2: hourly rollups, the minute rows of one hour per node: averages weighted by sample
    # count, maxima, svc as in rollups (mean latency per service). Filled by the writer from
    # `meta.hourly_next` on, so an upgraded database rolls up its existing minutes in the
    # background, and minute rows are pruned only once their hour is rolled up.
    f"""
    CREATE TABLE hourly (
        node INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
        {_ROLLUP_COLUMNS},
        svc BLOB,
        PRIMARY KEY (node, hour)
    ) WITHOUT ROWID;
    """,
    # 3: each node's replay high-water mark (agentd.wire.Mark), so a message captured before a
    # director restart is still refused after it.
    """
    CREATE TABLE marks (
        node TEXT PRIMARY KEY, boot INTEGER NOT NULL, boot_ts REAL NOT NULL,
        seq INTEGER NOT NULL, at REAL NOT NULL
    );
    """,
    # 4: the load-balancer view of each LB round with its rollups, and the alerts firing
    # after each change (ctop.lb_history, ctop.alert_history): what ctop --at shows.
    lb_history.SCHEMA + alert_history.SCHEMA,
)


def _hour_avg(c: str, t: str = "") -> str:
    """An hour's value of column c from its minute rows (table alias t): each minute's average
    weighted by its sample count, which is the average over all the hour's samples."""
    # total(), a float sum: sum() of integers raises "integer overflow" past 2^63
    return f"CAST(round(total({t}{c}_avg * {t}n) / sum({t}n)) AS INTEGER)"


_HOUR_SQL = (
    "INSERT OR REPLACE INTO hourly SELECT r.node, ?, sum(r.n), "
    + ", ".join(f"{_hour_avg(c, 'r.')}, max(r.{c}_max)" for c in _COLS)
    # CROSS JOIN: one primary-key range per node, where "minute BETWEEN" alone would scan
    # the whole table (rows are clustered by node)
    + ", NULL FROM nodes CROSS JOIN rollups AS r "
    "WHERE r.node = nodes.id AND r.minute >= ? AND r.minute < ? GROUP BY nodes.id"
)
# A minute already in the table (the part before a stop, or rebuilt from raw samples at start)
# and the rest of it: one row, averages weighted by sample count. SET reads the old row.
_ROLLUP_SQL = (
    f"INSERT INTO rollups VALUES ({', '.join('?' * (2 * len(_COLS) + 4))}) "
    "ON CONFLICT (node, minute) DO UPDATE SET n = n + excluded.n, "
    + ", ".join(f"{c}_avg = CAST(round(({c}_avg * n + excluded.{c}_avg * excluded.n) * 1.0 "
                f"/ (n + excluded.n)) AS INTEGER), {c}_max = max({c}_max, excluded.{c}_max)"
                for c in _COLS)
    + ", svc = coalesce(excluded.svc, svc)"
)
# Minutes with raw samples but no rollup row (the one in progress at a crash), per node.
_REBUILD_SQL = (
    "INSERT INTO rollups SELECT s.node, s.ts / 60000, count(*), "
    + ", ".join(f"CAST(round(avg(s.{c})) AS INTEGER), max(s.{c})" for c in _COLS)
    + ", NULL FROM nodes CROSS JOIN samples AS s WHERE s.node = nodes.id "
    "AND s.ts >= ? AND s.ts < ? AND NOT EXISTS (SELECT 1 FROM rollups AS r "
    "WHERE r.node = s.node AND r.minute = s.ts / 60000) GROUP BY s.node, s.ts / 60000"
)
_REBUILD_SVC_SQL = (
    "SELECT s.node, s.ts / 60000, s.svc FROM nodes CROSS JOIN samples AS s "
    "WHERE s.node = nodes.id AND s.ts >= ? AND s.ts < ? AND s.svc IS NOT NULL "
    "ORDER BY s.node, s.ts"
)
_HOUR_SVC_SQL = (
    "SELECT r.node, r.n, r.svc FROM nodes CROSS JOIN rollups AS r "
    "WHERE r.node = nodes.id AND r.minute >= ? AND r.minute < ? AND r.svc IS NOT NULL "
    "ORDER BY nodes.id"
)


class WriteHealth:
    """Whether history is being written, for `ctop status`, the UI header and Prometheus.

    The writer thread never dies of a bad batch: it counts it, remembers since when and why
    writes fail, and logs at most once a minute (a full disk would otherwise log every tick).
    """

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.reason = ""
        self.failed = 0  # batches (or rows) lost since the failures began
        self._logged_at = 0.0
        self._unlogged = 0

    def failure(self, reason: str, node: str = "") -> None:
        now = time.time()
        if self.failing_since is None:
            self.failing_since = now
        self.reason = f"{reason} (node {node})" if node else reason
        self.failed += 1
        self._unlogged += 1
        if now - self._logged_at >= FAILURE_LOG_EVERY:
            log.error("history write failing: %d batch(es) lost since the last message; %s",
                      self._unlogged, self.reason)
            self._logged_at, self._unlogged = now, 0

    def success(self) -> None:
        if self.failing_since is not None:
            log.warning("history writes work again after %d lost batch(es)", self.failed)
            self.failing_since, self.reason, self.failed, self._unlogged = None, "", 0, 0
            self._logged_at = 0.0

    def text(self) -> str:
        """"" while writes work, else "history failing since … (reason)"."""
        if self.failing_since is None:
            return ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.failing_since))
        return f"history failing since {since} ({self.reason})"  # the count: in the log


# Errors that refuse one row, not the database: salvaged row by row (see _salvage).
_ROW_ERRORS = (OverflowError, ValueError, TypeError, sqlite3.IntegrityError,
               sqlite3.InterfaceError, sqlite3.DataError)


def auto_raw_every(nodes: int) -> float:
    """Raw sample spacing by cluster size: at 10,000 nodes 1 s samples cost ~78 GB a day
    (docs/performance.md); charts beyond 6 h read the rollups anyway."""
    return 1.0 if nodes <= 1000 else 5.0 if nodes <= 5000 else 10.0


def connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
    # Each tick touches one B-tree leaf per node (rows are clustered by node): a page cache
    # that holds those leaves saves re-reading them from the file every second.
    db.execute("PRAGMA cache_size=-32768")  # KiB
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; return it."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with db:
            db.executescript(f"BEGIN; {script}; COMMIT;")
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),)
            )
        log.info("database schema migrated to version %d", number)
    return len(MIGRATIONS)


@dataclass(slots=True)
class _Rollup:
    """One node's current minute, in readable units (scaled when the row is written)."""

    minute: int
    n: int = 0
    sums: list[float] = field(default_factory=list)
    maxes: list[float] = field(default_factory=list)
    # Service latencies: while every sample has the same services, all with a latency (the
    # usual case), sums in the order of `names` (one C-level map per sample); else per name.
    names: list[str] | None = None
    lat_sums: list[float] = field(default_factory=list)
    svc: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]


_NAME = attrgetter("name")
_FIRST = itemgetter(0)
_N = itemgetter(1)  # of (key, n, svc blob) rollup rows
_BLOB = itemgetter(2)
_LATENCIES = itemgetter(1)  # of an unpacked svc blob
_LATENCY = attrgetter("latency_ms")
_TENTHS = repeat(LATENCY_SCALE)
_HALVES = repeat(0.5)


def sample_values(v: NodeView) -> tuple[float, ...]:
    m = v.metrics
    return (v.cpu, v.mem, v.swap, v.load1, v.net_rx_bps, v.net_tx_bps, v.conns,
            m.get("procs", 0), m.get("threads", 0), m.get("users", 0), v.disk_root)


def scaled_values(v: NodeView) -> tuple[int, ...]:
    """sample_values() as the stored integers."""
    return _scaled(sample_values(v))


def _scaled(values: Sequence[float]) -> tuple[int, ...]:
    return tuple(map(round, map(mul, values, _SCALE)))  # C-level: runs per node per tick


class Store:
    """The history database. `record_tick()` is called on the event loop and only queues."""

    def __init__(
        self,
        path: str,
        *,
        raw_retention: float = RAW_RETENTION,
        minute_retention: float = MINUTE_RETENTION,
        hourly_retention: float | None = None,
        rollup_retention: float | None = None,
        raw_every: float = 0.0,
        writer: bool = True,
        group: int | None = None,
    ) -> None:
        self.path = path
        if writer:  # 0640 before SQLite creates it (ctop.filemodes)
            private_database(path, group)
        self.raw_retention = raw_retention
        # rollup_retention is the old name of hourly_retention: with one rollup level it said
        # how far back charts go, which is what the hourly level's retention says now.
        if hourly_retention is None:
            hourly_retention = HOURLY_RETENTION if rollup_retention is None else rollup_retention
        self.hourly_retention = hourly_retention
        # keep nothing longer than asked for (e.g. the old rollup_retention = "1d")
        self.minute_retention = min(minute_retention, hourly_retention)
        self.raw_every = raw_every  # seconds between stored raw samples of one node (0: auto)
        self.writes = writer
        self.db = connect(path)
        self._hourly_next: int | None = None  # first hour not rolled up yet (meta.hourly_next)
        if writer:
            migrate(self.db)
            with self.db:  # readers pick the chart level by it (see _minute_span)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('minute_retention', ?)",
                                (repr(self.minute_retention),))
            self._hourly_next = self._load_hourly_next()
            self._rebuild_minutes()
        self._hourly_pending = False  # an "hourly" entry is queued (one at a time)
        self._hourly_not_before = 0.0  # while catching up: the next pass not before this
        self._hour_cut = -1  # hourly rows before this hour were pruned
        self._read = connect(path)
        self._ids: dict[str, int] = {}
        self._svc_ids: dict[str, int] = {}  # service name -> id in the services table
        self._svc_names: dict[int, str] = {}
        self._ids_of: dict[tuple[str, ...], list[int]] = {}  # service names -> their ids
        self._load_ids()
        self._last_raw: dict[str, float] = {}
        self._seen: dict[str, float] = {}  # last_seen already recorded, per node
        self._rollups: dict[int, _Rollup] = {}
        self._queue: queue.Queue[list[tuple[str, Any]] | None] = queue.Queue(maxsize=120)
        self._writer = threading.Thread(target=self._write_loop, name="ctop-store", daemon=True)
        if writer:  # a reader (the UI attached to a daemon) never writes
            self._writer.start()
        self._last_prune = 0.0
        self.dropped_batches = 0
        self.health = WriteHealth()
        self.write_seconds = 0.0  # time the writer thread spent committing, for the benchmark
        self.hourly_seconds = 0.0  # of which in hourly passes

    # -- writing (event loop side) ---------------------------------------------------------

    def _load_ids(self) -> None:
        # a reader may start before the daemon made the schema
        with contextlib.suppress(sqlite3.OperationalError):
            self._ids.update(self.db.execute("SELECT node_id, id FROM nodes"))
            for sid, name in self.db.execute("SELECT id, name FROM services"):
                self._svc_ids[name] = sid
                self._svc_names[sid] = name

    def node_ids(self, nodes: Iterable[str]) -> bool:
        """Create rows for nodes not seen before, in one transaction (10,000 at start-up).
        False if the database refused (e.g. a full disk): those nodes wait for a later tick."""
        new = [n for n in nodes if n not in self._ids]
        if not new:
            return True
        try:
            self._insert_nodes(new)
        except sqlite3.Error as e:
            self.health.failure(_reason(e))
            return False
        return True

    def _insert_nodes(self, new: list[str]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO nodes (node_id, first_seen) VALUES (?, ?)",
                [(n, time.time()) for n in new],
            )
            marks = ",".join("?" * len(new))
            for node, rowid in self.db.execute(
                f"SELECT node_id, id FROM nodes WHERE node_id IN ({marks})", new
            ):
                self._ids[node] = rowid

    def record_tick(
        self, now: float, views: Sequence[NodeView], events: Iterable[EventView]
    ) -> None:
        """Queue this tick's samples, rollups and events for one transaction."""
        batch: list[tuple[str, Any]] = []
        samples = []
        minute = int(now // 60)
        seen = self._seen
        fresh = [v for v in views if v.metrics and seen.get(v.node_id) != v.last_seen]
        ids = self._ids
        if not self.node_ids(v.node_id for v in fresh):
            fresh = [v for v in fresh if v.node_id in ids]
        last_raw = self._last_raw
        raw_gap = (self.raw_every or auto_raw_every(len(views))) * 0.9
        new_services = len(self._svc_ids)
        # Minutes that ended go out first, in this tick's batch: at a minute boundary that is
        # one row per node, which must not become one queue entry per node.
        rollups = [self._rollup_row(rid, r) for rid, r in self._rollups.items()
                   if r.minute < minute]
        if rollups:
            self._rollups = {rid: r for rid, r in self._rollups.items() if r.minute >= minute}
        for v in fresh:
            node = v.node_id
            seen[node] = v.last_seen
            rowid = ids[node]
            values = sample_values(v)
            names = list(map(_NAME, v.services))
            latencies = list(map(_LATENCY, v.services))
            self._add_rollup(rowid, minute, values, names, latencies, rollups)
            if v.last_seen - last_raw.get(node, 0.0) >= raw_gap:
                last_raw[node] = v.last_seen
                # scaled to integers by SQLite in the writer thread (see _write)
                samples.append((rowid, v.last_seen, *values,
                                self._pack_services(names, latencies)))
        if len(self._svc_ids) != new_services:  # names first: the samples refer to them
            batch.append(("services", list(self._svc_ids.items())[new_services:]))
        if samples:
            batch.append(("samples", samples))
        if rollups:
            batch.append(("rollups", rollups))
        evs = [(e.ts, e.kind, e.node_id, e.message) for e in events]
        if evs:
            batch.append(("events", evs))
        # After the rollups: the first tick of an hour carries the last minute of the previous
        # one, which the writer then rolls up. Asked for again while the writer is behind.
        hourly = (not self._hourly_pending and now >= self._hourly_not_before
                  and (self._hourly_next is None or self._hourly_next < minute // 60))
        if hourly:
            self._hourly_pending = True
            batch.append(("hourly", (now, len(ids))))
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            batch.append(("prune", (now, list(ids.values()))))
        if batch and not self._put(batch) and hourly:
            self._hourly_pending = False  # dropped: ask again next tick

    def _service_ids(self, names: list[str]) -> list[int]:
        key = tuple(names)
        ids = self._ids_of.get(key)
        if ids is None:
            svc_ids = self._svc_ids
            for name in names:
                if name not in svc_ids:
                    sid = svc_ids[name] = max(self._svc_names, default=0) + 1
                    self._svc_names[sid] = name
            ids = self._ids_of[key] = [svc_ids[n] for n in names]
        return ids

    def _pack_services(self, names: list[str], latencies: list[float | None]) -> bytes | None:
        """msgpack [[service id, ...], [latency in 0.1 ms, ...]] of those that measured one."""
        if None in latencies:
            pairs = [(n, x) for n, x in zip(names, latencies, strict=True) if x is not None]
            names, latencies = [n for n, _ in pairs], [x for _, x in pairs]
        if not names:
            return None
        ids = self._service_ids(names)
        # int(x + 0.5) for these non-negative values: int() is cheaper than round()
        return msgpack.packb((ids, list(map(int, map(add, map(mul, latencies, _TENTHS),
                                                     _HALVES)))))

    def record_nodes(self, views: Iterable[NodeView]) -> None:
        """Update the static facts of nodes (joins, groups); cheap, call on change only."""
        views = list(views)
        self.node_ids(v.node_id for v in views)
        rows = [
            (v.hostname, v.group, json.dumps(v.addresses), v.cores, v.mem_total, v.version,
             v.interval, v.last_seen, self._ids[v.node_id])
            for v in views if v.node_id in self._ids
        ]
        if rows:
            self._put([("nodes", rows)])

    def record_marks(self, marks: Sequence[tuple[str, int, float, int, float]]) -> None:
        """Queue replay high-water marks (node, boot, boot_ts, seq, at) for the writer."""
        if marks:
            self._put([("marks", list(marks))])

    def load_marks(self) -> list[tuple[str, int, float, int, float]]:
        try:
            return self._read.execute("SELECT node, boot, boot_ts, seq, at FROM marks").fetchall()
        except sqlite3.OperationalError:  # a reader before the daemon made the schema
            return []

    def record_lb(self, lb_round: lb_history.LBRound) -> None:
        """Queue one load-balancer round (any thread: the engine's LB worker)."""
        self._put([("lb", lb_round)])

    def record_alerts(self, ts: float, firing: Sequence[AlertView]) -> None:
        """Queue the alerts firing from `ts` on (after a change)."""
        self._put([("alerts", (ts, alert_history.pack(firing)))])

    def record_events(self, events: Iterable[EventView]) -> None:
        evs = [(e.ts, e.kind, e.node_id, e.message) for e in events]
        if evs:
            self._put([("events", evs)])

    def _add_rollup(
        self, rowid: int, minute: int, values: tuple[float, ...], names: list[str],
        latencies: list[float | None], finished: list[tuple[Any, ...]],
    ) -> None:
        r = self._rollups.get(rowid)
        if r is None or r.minute != minute:
            if r is not None:  # only when the clock stepped back: keep what we had
                finished.append(self._rollup_row(rowid, r))
            r = self._rollups[rowid] = _Rollup(minute)
        r.n += 1
        if r.n == 1:
            r.sums, r.maxes = list(values), list(values)
            if None not in latencies:
                r.names, r.lat_sums = names, latencies  # type: ignore[assignment]
                return
        else:
            r.sums = list(map(add, r.sums, values))
            # not map(max, ...): the builtin's argument handling costs 3x this comparison
            r.maxes = [m if m >= x else x for m, x in zip(r.maxes, values, strict=True)]
            if names == r.names and None not in latencies:
                r.lat_sums = list(map(add, r.lat_sums, latencies))
                return
        # Services changed within the minute, or some had no latency: count per name.
        svc = r.svc
        if r.names is not None:
            for name, total in zip(r.names, r.lat_sums, strict=True):
                svc[name] = [total, r.n - 1]
            r.names, r.lat_sums = None, []
        for name, latency in zip(names, latencies, strict=True):
            if latency is not None:
                acc = svc.get(name)
                if acc is None:
                    svc[name] = [latency, 1]
                else:
                    acc[0] += latency
                    acc[1] += 1

    def _rollup_row(self, rowid: int, r: _Rollup) -> tuple[Any, ...]:
        n = r.n
        pairs: list[int] = []
        for total, mx, scale in zip(r.sums, r.maxes, _SCALE, strict=True):
            pairs += (round(total / n * scale), round(mx * scale))
        names, means = [], []
        if r.names is not None:
            names, means = list(r.names), [total / n for total in r.lat_sums]
        for name, (total, count) in r.svc.items():
            names.append(name)
            means.append(total / count)
        return (rowid, r.minute, n, *pairs, self._pack_services(names, means))  # type: ignore[arg-type]

    def _put(self, batch: list[tuple[str, Any]]) -> bool:
        try:
            self._queue.put_nowait(batch)
        except queue.Full:  # the disk cannot keep up: lose history, never stall ingest
            self.dropped_batches += 1
            return False
        return True

    # -- writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            started = time.thread_time()  # this thread only: the event loop runs meanwhile
            try:
                with self.db:
                    for what, rows in batch:
                        self._write(what, rows)
                self.health.success()
            except Exception as e:  # never let one batch end history for every node
                self._batch_failed(batch, e)
            if any(what == "hourly" for what, _ in batch):
                self._hourly_pending = False
            self.write_seconds += time.thread_time() - started
            self._queue.task_done()

    def _batch_failed(self, batch: list[tuple[str, Any]], error: Exception) -> None:
        """A batch was rolled back: write what can be written, row by row, and say who failed.

        A row SQLite or the driver refuses (a value out of range) loses only that node's row;
        a database that cannot write at all (a full disk, a read-only file) loses the batch."""
        with contextlib.suppress(Exception):  # rolled back: the hourly marker too
            self._hourly_next = self._load_hourly_next()
        if not isinstance(error, _ROW_ERRORS):
            self.health.failure(_reason(error))
            return
        try:
            bad = self._salvage(batch)
        except Exception as e:
            self.health.failure(_reason(e))
            return
        if bad:
            what, row, e = bad[0]
            self.health.failure(f"{len(bad)} {what} row(s) refused: {_reason(e)}",
                                self._node_of(what, row))
        else:
            self.health.success()

    def _salvage(self, batch: list[tuple[str, Any]]) -> list[tuple[str, Any, Exception]]:
        bad: list[tuple[str, Any, Exception]] = []
        with self.db:
            for what, rows in batch:
                if what in ("hourly", "prune", "lb", "alerts"):  # not lists of rows
                    self._write(what, rows)
                    continue
                for row in rows:
                    try:
                        self._write(what, [row])
                    except _ROW_ERRORS as e:
                        bad.append((what, row, e))
        return bad

    def _node_of(self, what: str, row: Any) -> str:
        if what == "events":
            return str(row[2])
        rowid = row[-1] if what == "nodes" else row[0] if what in ("samples", "rollups") else None
        return next((n for n, i in self._ids.items() if i == rowid), "?")

    def _write(self, what: str, rows: Any) -> None:
        db = self.db
        if what == "services":
            db.executemany("INSERT OR IGNORE INTO services (name, id) VALUES (?, ?)", rows)
        elif what == "samples":
            # round() in SQL: a whole REAL stored in an INTEGER column becomes an integer, and
            # SQLite does it in C without the GIL, where Python's round() costs ~0.1 µs a value.
            scaled = ", ".join(f"round(? * {s})" if s != 1 else "round(?)" for s in _SCALE)
            db.executemany(
                f"INSERT OR REPLACE INTO samples VALUES (?, round(? * {TS_SCALE}), {scaled}, ?)",
                rows,
            )
        elif what == "rollups":
            db.executemany(_ROLLUP_SQL, rows)
            done = max(row[1] for row in rows) + 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('rollup_next', ?)", (str(done),))
        elif what == "partial":  # a clean stop: the minute in progress, merged on restart
            db.executemany(_ROLLUP_SQL, rows)
        elif what == "marks":
            db.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?)", rows)
        elif what == "events":
            db.executemany("INSERT INTO events (ts, kind, node, message) VALUES (?,?,?,?)", rows)
        elif what == "nodes":
            db.executemany(
                "UPDATE nodes SET hostname=?, grp=?, addresses=?, cores=?, mem_total=?, "
                "version=?, interval=?, last_seen=? WHERE id=?",
                rows,
            )
        elif what == "lb":
            lb_history.write_round(db, rows)
        elif what == "alerts":
            db.execute("INSERT OR REPLACE INTO alert_states VALUES (?, ?)", rows)
        elif what == "hourly":
            started = time.thread_time()
            self._roll_hours(*rows)
            self.hourly_seconds += time.thread_time() - started
        elif what == "prune":
            # Per node: rows are clustered by (node, time), so each DELETE is one short range
            # at the start of a node's rows, where "ts < ?" alone would scan the whole table.
            now, nodes = rows
            raw_cut = round((now - self.raw_retention) * TS_SCALE)
            db.executemany("DELETE FROM samples WHERE node = ? AND ts < ?",
                           [(n, raw_cut) for n in nodes])
            if self._hourly_next is not None:  # never a minute whose hour is not rolled up
                minute_cut = min(int((now - self.minute_retention) // 60),
                                 self._hourly_next * 60)
                db.executemany("DELETE FROM rollups WHERE node = ? AND minute < ?",
                               [(n, minute_cut) for n in nodes])
            hour_cut = int((now - self.hourly_retention) // 3600)
            if hour_cut != self._hour_cut:  # hourly rows expire once an hour
                self._hour_cut = hour_cut
                db.executemany("DELETE FROM hourly WHERE node = ? AND hour < ?",
                               [(n, hour_cut) for n in nodes])
            # events go with the longest history, and so do replay marks of nodes long gone
            db.execute("DELETE FROM events WHERE ts < ?", (now - self.hourly_retention,))
            db.execute("DELETE FROM marks WHERE at < ?", (now - self.hourly_retention,))
            lb_history.prune(db, now, self.raw_retention, self.minute_retention,
                             self.hourly_retention)
            alert_history.prune(db, now - self.hourly_retention)

    def _load_hourly_next(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'hourly_next'").fetchone()
        return int(row[0]) if row else None

    def _roll_hours(self, now: float, nodes: int) -> None:
        """Roll the finished hours from meta.hourly_next on into hourly rows (writer thread).

        An aggregation pass over the hour's minute rows rather than hourly sums kept as the
        minutes finish: the 22 numbers are aggregated by SQLite in C, without the GIL, once an
        hour, where incremental sums would cost the event loop (or the writer, in Python) per
        node every minute; only the service latencies (msgpack) need Python. And the minute
        rows on disk are the state, so a restart or an upgrade loses nothing.
        """
        db = self.db
        hour = int(now // 3600)  # the current hour: not finished
        floor = int((now - self.hourly_retention) // 3600)
        start = max(floor if self._hourly_next is None else self._hourly_next, floor)
        # Skip hours without minute rows (downtime, a new database): one key lookup per node.
        first = db.execute(
            "SELECT min((SELECT min(minute) FROM rollups WHERE node = nodes.id AND minute >= ?))"
            " FROM nodes", (start * 60,)
        ).fetchone()[0]
        start = hour if first is None else max(start, min(first // 60, hour))
        end = min(hour, start + max(1, HOURLY_ROWS_PER_PASS // (60 * max(nodes, 1))))
        for h in range(start, end):
            lo, hi = h * 60, h * 60 + 60
            db.execute(_HOUR_SQL, (h, lo, hi))
            # Service latencies are msgpack blobs: averaged in Python, one node at a time.
            updates = [(blob, node, h) for node, group in groupby(
                db.execute(_HOUR_SVC_SQL, (lo, hi)), _FIRST)
                if (blob := _mean_services(group)) is not None]
            db.executemany("UPDATE hourly SET svc = ? WHERE node = ? AND hour = ?", updates)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('hourly_next', ?)", (str(end),))
        self._hourly_next = end
        if end < hour:
            self._hourly_not_before = now + CATCHUP_EVERY

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _rebuild_minutes(self) -> None:
        """Minutes after the last one written (meta.rollup_next) that have raw samples but
        no rollup row: the minute in progress when the daemon was killed. Rebuilt from the
        samples (fewer points than the live rollup had, the same averages and maxima)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'rollup_next'").fetchone()
        if row is None:  # a new database: from the minute this daemon starts in
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('rollup_next', ?)",
                                (str(int(time.time() // 60)),))
            return
        first = int(row[0])
        last = min(int(time.time() // 60) + 1, first + REBUILD_MINUTES)
        span = (first * 60 * TS_SCALE, last * 60 * TS_SCALE)
        with self.db:
            rebuilt = self.db.execute(_REBUILD_SQL, span).rowcount
            updates = [(blob, node, minute) for (node, minute), group in groupby(
                self.db.execute(_REBUILD_SVC_SQL, span), itemgetter(0, 1))
                if (blob := _mean_services((k, 1, b) for *k, b in group)) is not None]
            self.db.executemany("UPDATE rollups SET svc = ? WHERE node = ? AND minute = ? "
                                "AND svc IS NULL", updates)
        if rebuilt > 0:
            log.info("rebuilt %d minute rollup(s) from raw samples", rebuilt)

    def close(self) -> None:
        if self._writer.is_alive():
            # the minute in progress: written now, completed by the next start's rollup
            partial = [self._rollup_row(rid, r) for rid, r in self._rollups.items()]
            self._rollups = {}
            if partial:
                self._put([("partial", partial)])
            self.flush()
            self._queue.put(None)
            self._writer.join(timeout=10)
        self.db.close()
        self._read.close()

    # -- reading ---------------------------------------------------------------------------

    def history(
        self, node: str, metrics: Sequence[str], seconds: float, now: float | None = None
    ) -> dict[str, list[tuple[float, float]]]:
        """Points (time, value) per metric for one node over the last `seconds`.

        Up to 6 hours come from raw samples, spans up to the minute retention from the 1-minute
        rollups (avg), longer ones from the hourly rollups (avg; the hours not rolled up yet
        are averaged from their minute rows on the fly). A rollup point's time is the start of
        its minute or hour. Metric names are those of COLUMNS, or "svc:<name>" for a service's
        latency.
        """
        now = time.time() if now is None else now
        rowid = self._ids.get(node)
        if rowid is None:
            self._load_ids()  # nodes registered since (by the daemon, when we only read)
            rowid = self._ids.get(node)
        out: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
        lb = [m for m in metrics if m.startswith(lb_history.PREFIX)]
        if lb:  # real servers' shares (node detail): the LB history's own tables
            out.update(lb_history.series(self._read, lb, seconds, now, RAW_SPAN,
                                         self._minute_span()))
        if rowid is None:
            return out
        since = now - seconds
        plain = [m for m in metrics if m in COLUMNS]
        services = [m[4:] for m in metrics if m.startswith("svc:")]
        if services and any(name not in self._svc_ids for name in services):
            self._load_ids()  # services named since (by the daemon, when we only read)
        wanted = {self._svc_ids[n]: f"svc:{n}" for n in services if n in self._svc_ids}
        if seconds <= RAW_SPAN:
            cols = ", ".join(_unscaled(COLUMNS[m]) for m in plain) or "NULL"
            rows = self._read.execute(
                f"SELECT ts / {float(TS_SCALE)}, svc, {cols} FROM samples "
                "WHERE node = ? AND ts >= ? ORDER BY ts",
                (rowid, round(since * TS_SCALE)),
            ).fetchall()
        elif seconds <= self._minute_span():
            cols = ", ".join(_unscaled(f"{COLUMNS[m]}_avg", COLUMNS[m]) for m in plain) or "NULL"
            rows = self._read.execute(
                f"SELECT minute * 60, svc, {cols} FROM rollups "
                "WHERE node = ? AND minute >= ? ORDER BY minute",
                (rowid, int(since // 60)),
            ).fetchall()
        else:
            rows = self._hourly_rows(rowid, [COLUMNS[m] for m in plain], int(since // 3600),
                                     bool(wanted))
        columns = [out[m] for m in plain]
        for row in rows:
            ts = row[0]
            for i, points in enumerate(columns, start=2):
                points.append((ts, row[i]))
            if wanted and row[1]:
                sids, latencies = msgpack.unpackb(row[1])
                for sid, latency in zip(sids, latencies, strict=True):
                    name = wanted.get(sid)
                    if name is not None:
                        out[name].append((ts, latency / LATENCY_SCALE))
        return out

    def _minute_span(self) -> float:
        """The longest span history() reads from minute rollups: the minute retention, the
        daemon's (from meta) when this store only reads."""
        if self.writes:
            return self.minute_retention
        try:
            row = self._read.execute(
                "SELECT value FROM meta WHERE key = 'minute_retention'").fetchone()
        except sqlite3.OperationalError:  # no schema yet
            row = None
        return float(row[0]) if row else self.minute_retention

    def _hourly_rows(
        self, rowid: int, columns: list[str], since_hour: int, services: bool
    ) -> list[tuple[Any, ...]]:
        """(time, svc, column values...) per hour from since_hour on, as history() reads."""
        cols = ", ".join(_unscaled(f"{c}_avg", c) for c in columns) or "NULL"
        rows = self._read.execute(
            f"SELECT hour * 3600, svc, {cols} FROM hourly "
            "WHERE node = ? AND hour >= ? ORDER BY hour",
            (rowid, since_hour),
        ).fetchall()
        # The hours the writer has not rolled up yet (the current one; a backlog after an
        # upgrade): the same averages from the minute rows, so a chart reaches the present.
        tail_from = (rows[-1][0] // 3600 + 1 if rows else since_hour) * 60
        cols = ", ".join(_unscaled(_hour_avg(c), c) for c in columns) or "NULL"
        tail = self._read.execute(
            f"SELECT minute / 60 * 3600, NULL, {cols} FROM rollups "
            "WHERE node = ? AND minute >= ? GROUP BY minute / 60 ORDER BY 1",
            (rowid, tail_from),
        ).fetchall()
        if tail and services:
            blobs = {hour: _mean_services(group) for hour, group in groupby(
                self._read.execute(
                    "SELECT minute / 60, n, svc FROM rollups "
                    "WHERE node = ? AND minute >= ? AND svc IS NOT NULL ORDER BY minute",
                    (rowid, tail_from)),
                _FIRST)}
            tail = [(ts, blobs.get(ts // 3600), *values) for ts, _, *values in tail]
        return rows + tail

    def events(self, node: str | None = None, limit: int = 100) -> list[EventView]:
        if node is None:
            rows = self._read.execute(
                "SELECT ts, kind, node, message FROM events ORDER BY ts DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        else:
            rows = self._read.execute(
                "SELECT ts, kind, node, message FROM events WHERE node = ? "
                "ORDER BY ts DESC, id DESC LIMIT ?",
                (node, limit),
            ).fetchall()
        return [EventView(*r) for r in reversed(rows)]

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _mean_services(rows: Iterable[tuple[Any, int, bytes]]) -> bytes | None:
    """(key, n, svc blob) rows of rollups -> one svc blob: each service's latency averaged
    over the rows, weighted by their sample count n."""
    rows = list(rows)
    unpacked = list(map(msgpack.unpackb, map(_BLOB, rows)))
    if not unpacked:
        return None
    counts = list(map(_N, rows))
    ids = unpacked[0][0]
    if all(u[0] == ids for u in unpacked):
        # the usual case, the same services all along: a C-level sum per service
        total = sum(counts)
        means = [sum(map(mul, column, counts)) / total
                 for column in zip(*map(_LATENCIES, unpacked), strict=True)]
    else:
        per_id: dict[int, list[float]] = {}
        for (sids, latencies), n in zip(unpacked, counts, strict=True):
            for sid, x in zip(sids, latencies, strict=True):
                acc = per_id.setdefault(sid, [0.0, 0])
                acc[0] += x * n
                acc[1] += n
        ids = list(per_id)
        means = [total / count for total, count in per_id.values()]
    return msgpack.packb((ids, [int(x + 0.5) for x in means]))  # 0.1 ms, as in the minutes


def _unscaled(column: str, base: str | None = None) -> str:
    scale = SCALES[base or column]
    return column if scale == 1 else f"{column} / {float(scale)}"
