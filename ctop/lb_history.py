"""The load-balancer view in the history database: each LB round, with minute and hour rollups.

Per real server and round: weight, state, active/inactive connections, connections/s, its share
of the service's load and of its weight, and the service's imbalance. The engine's LB round
(a worker thread) hands a round to `LBRecorder.observe`, which keeps the last rounds in memory
for the LB pane's sparkline and queues the rows for the store's writer thread; the writer calls
`write_round` (rows, then the minutes and hours that finished) and `prune` (same retention as
node metrics). Readers: `servers_at` (the LB view at a past moment, for ctop --at) and `series`
(one server's share history, for the node detail's charts through Store.history).

Values are stored as integers like node samples: shares in 1/10,000, conn/s in tenths,
timestamps in milliseconds. A minute or hour row keeps averages and maxima, and the weight and
state of its last round.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from ctop.snapshot import LBServiceView, RealServerView

SHARE_SCALE = 10_000
CPS_SCALE = 10
TS_SCALE = 1000
SPARK_ROUNDS = 30  # rounds kept per server for the LB pane's sparkline
PREFIX = "lb:"  # Store.history metric names: lb:<balancer>/<service>/<server>:share|weight
FACTS_EVERY = 60.0  # seconds between rounds that carry every server's facts again
ROLL_MINUTES_PER_PASS = 600  # a backlog (downtime, an upgrade) is rolled up in short steps

# one primary-key range per real server (rows are clustered by server), where a time range
# alone would scan the whole table
_EACH = "rs IN (SELECT id FROM lb_servers) AND "

# One list says what a minute and an hour keep of a round's columns: both tables' DDL and
# both rollup queries come from it, so they cannot disagree.
ROLLUP = (("active", ("avg", "max")), ("inactive", ("avg",)), ("cps", ("avg", "max")),
          ("share", ("avg",)), ("wshare", ("avg",)), ("imbalance", ("avg", "max")))
ROLLUP_COLUMNS = tuple(f"{column}_{how}" for column, hows in ROLLUP for how in hows)
ROLLUP_TABLES = (("lb_minutes", "minute"), ("lb_hours", "hour"))


def _rollup_table(table: str, unit: str) -> str:
    aggregates = ", ".join(f"{c} INTEGER" for c in ROLLUP_COLUMNS)
    return (f"CREATE TABLE {table} (rs INTEGER NOT NULL, {unit} INTEGER NOT NULL, "
            f"n INTEGER NOT NULL, weight INTEGER, state TEXT, {aggregates}, "
            f"PRIMARY KEY (rs, {unit})) WITHOUT ROWID;\n")


def _of_samples(column: str, how: str) -> str:
    """A minute's aggregate of the rounds' column."""
    return f"CAST(round(avg({column})) AS INTEGER)" if how == "avg" else f"max({column})"


def _of_minutes(column: str, how: str) -> str:
    """An hour's aggregate of its minutes' (averages weighted by their rounds)."""
    c = f"{column}_{how}"
    return f"CAST(round(total({c} * n) / sum(n)) AS INTEGER)" if how == "avg" else f"max({c})"


def _rollup_sql(table: str, unit: str, key_and_n: str, of: Callable[[str, str], str],
                rest: str) -> str:
    """INSERT … SELECT of one rollup level (its weight and state are set after it)."""
    return (f"INSERT OR REPLACE INTO {table} (rs, {unit}, n, weight, state, "
            f"{', '.join(ROLLUP_COLUMNS)}) SELECT rs, {key_and_n}, NULL, NULL, "
            + ", ".join(of(column, how) for column, hows in ROLLUP for how in hows)
            + f" {rest}")


# column `backend` holds the balancer's name (`balancer` in Python): existing databases
SCHEMA = """
CREATE TABLE lb_servers (
    id INTEGER PRIMARY KEY,
    backend TEXT NOT NULL, service TEXT NOT NULL, server TEXT NOT NULL,
    address TEXT NOT NULL, port INTEGER NOT NULL, node TEXT NOT NULL,
    protocol TEXT NOT NULL, scheduler TEXT NOT NULL, basis TEXT NOT NULL,
    UNIQUE (backend, service, server)
);
CREATE TABLE lb_rounds (ts INTEGER PRIMARY KEY);
CREATE TABLE lb_samples (
    rs INTEGER NOT NULL, ts INTEGER NOT NULL, weight INTEGER NOT NULL, state TEXT NOT NULL,
    active INTEGER NOT NULL, inactive INTEGER NOT NULL, cps INTEGER NOT NULL,
    share INTEGER NOT NULL, wshare INTEGER NOT NULL, imbalance INTEGER NOT NULL,
    PRIMARY KEY (rs, ts)
) WITHOUT ROWID;
""" + "".join(_rollup_table(table, unit) for table, unit in ROLLUP_TABLES)

_MINUTE_SQL = _rollup_sql(
    "lb_minutes", "minute", "ts / 60000, count(*)", _of_samples,
    f"FROM lb_samples WHERE {_EACH}ts >= ? AND ts < ? GROUP BY rs, ts / 60000")
# the weight and state a minute ended with: its last round's
_MINUTE_LAST_SQL = (
    "UPDATE lb_minutes SET (weight, state) = (SELECT weight, state FROM lb_samples AS s "
    "WHERE s.rs = lb_minutes.rs AND s.ts >= lb_minutes.minute * 60000 "
    "AND s.ts < lb_minutes.minute * 60000 + 60000 ORDER BY s.ts DESC LIMIT 1) "
    f"WHERE {_EACH}minute >= ? AND minute < ?"
)


_HOUR_SQL = _rollup_sql(
    "lb_hours", "hour", "minute / 60, sum(n)", _of_minutes,
    f"FROM lb_minutes WHERE {_EACH}minute >= ? AND minute < ? GROUP BY rs, minute / 60")
_HOUR_LAST_SQL = (
    "UPDATE lb_hours SET (weight, state) = (SELECT weight, state FROM lb_minutes AS m "
    "WHERE m.rs = lb_hours.rs AND m.minute >= lb_hours.hour * 60 "
    "AND m.minute < lb_hours.hour * 60 + 60 ORDER BY m.minute DESC LIMIT 1) "
    f"WHERE {_EACH}hour >= ? AND hour < ?"
)


@dataclass(frozen=True, slots=True)
class LBRound:
    """One round as the writer stores it."""

    ts: float
    servers: tuple[tuple[Any, ...], ...]  # lb_servers facts, one per real server
    samples: tuple[tuple[Any, ...], ...]  # (balancer, service, server, values...)


# -- the engine's side -------------------------------------------------------------------------


class LBRecorder:
    """Turns each round's views into rows for the store, and gives every real server view its
    recent (share, weight share) pairs for the sparkline. Runs in the engine's LB thread."""

    def __init__(self, every: Callable[[int], float] = lambda servers: 0.0) -> None:
        self.every = every  # seconds between stored rounds, by real servers (0: every round)
        self._last_stored = 0.0
        self._known: dict[tuple[str, str, str], tuple[Any, ...]] = {}  # facts sent
        self._facts_sent = 0.0
        self._recent: dict[tuple[str, str, str], deque[tuple[float, float]]] = {}

    def observe(
        self, now: float, views: Sequence[LBServiceView]
    ) -> tuple[tuple[LBServiceView, ...], LBRound | None]:
        """The views with their share_history, and the round to store (None: too soon)."""
        seen: dict[tuple[str, str, str], deque[tuple[float, float]]] = {}
        out = []
        for svc in views:
            history = {}
            for rs in svc.servers:
                key = (svc.balancer, svc.key, rs.key)
                recent = seen[key] = self._recent.get(key) or deque(maxlen=SPARK_ROUNDS)
                recent.append((rs.conn_share, rs.weight_share))
                history[rs.key] = tuple(recent)
            out.append(replace(svc, share_history=MappingProxyType(history)))
        self._recent = seen  # servers gone from the balancer are forgotten
        every = self.every(len(seen))
        if every and now - self._last_stored < every * 0.9:
            return tuple(out), None
        self._last_stored = now
        if now - self._facts_sent >= FACTS_EVERY:  # a batch the writer dropped had some
            self._facts_sent, self._known = now, {}
        return tuple(out), round_of(now, views, self._known)


def round_of(
    now: float, views: Iterable[LBServiceView],
    known: dict[tuple[str, str, str], tuple[Any, ...]] | None = None,
) -> LBRound:
    """The rows of one round. With `known` (the facts already sent, updated here), a server's
    lb_servers facts go only when new or changed: they rarely change, and a round at 10,000
    servers would otherwise carry 10,000 of them."""
    servers, samples = [], []
    for svc in views:
        imbalance = round(svc.imbalance * SHARE_SCALE)
        balancer, service = svc.balancer, svc.key
        for rs in svc.servers:
            facts = (balancer, service, rs.key, rs.address, rs.port, rs.node_id,
                     svc.protocol, svc.scheduler, svc.basis)
            if known is None or known.get(facts[:3]) != facts:
                servers.append(facts)
                if known is not None:
                    known[facts[:3]] = facts
            samples.append((balancer, service, rs.key, rs.weight, rs.state, rs.active_conns,
                            rs.inactive_conns, round(rs.conns_per_s * CPS_SCALE),
                            round(rs.conn_share * SHARE_SCALE),
                            round(rs.weight_share * SHARE_SCALE), imbalance))
    return LBRound(now, tuple(servers), tuple(samples))


# -- the writer thread's side ------------------------------------------------------------------


def write_round(db: sqlite3.Connection, r: LBRound) -> None:
    """Store one round (inside the writer's transaction), then roll up what finished."""
    db.executemany(
        "INSERT INTO lb_servers (backend, service, server, address, port, node, protocol, "
        "scheduler, basis) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (backend, service, server) "
        "DO UPDATE SET address = excluded.address, port = excluded.port, node = excluded.node, "
        "protocol = excluded.protocol, scheduler = excluded.scheduler, basis = excluded.basis "
        "WHERE (address, port, node, protocol, scheduler, basis) IS NOT "
        "(excluded.address, excluded.port, excluded.node, excluded.protocol, "
        "excluded.scheduler, excluded.basis)",
        r.servers,
    )
    ts = round(r.ts * TS_SCALE)
    db.execute("INSERT OR IGNORE INTO lb_rounds VALUES (?)", (ts,))
    db.executemany(
        "INSERT OR REPLACE INTO lb_samples SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM lb_servers "
        "WHERE backend = ? AND service = ? AND server = ?",
        [(ts, *values, balancer, service, server)
         for balancer, service, server, *values in r.samples],
    )
    roll(db, r.ts)


def _meta(db: sqlite3.Connection, key: str) -> int | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else None


def roll(db: sqlite3.Connection, now: float) -> None:
    """Roll the finished minutes into lb_minutes and the finished hours into lb_hours, from
    where the last pass stopped (meta lb_minute_next / lb_hour_next): a restart loses none."""
    minute = int(now // 60)
    start = _meta(db, "lb_minute_next")
    if start is None:
        first = db.execute("SELECT min(ts) FROM lb_rounds").fetchone()[0]
        start = minute if first is None else first // 60000
    end = min(minute, start + ROLL_MINUTES_PER_PASS)
    if end > start:
        span = (start * 60000, end * 60000)
        db.execute(_MINUTE_SQL, span)
        db.execute(_MINUTE_LAST_SQL, (start, end))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('lb_minute_next', ?)", (str(end),))
    hour = end // 60  # every minute before `end` is rolled up
    first_hour = _meta(db, "lb_hour_next")
    if first_hour is None:
        first_hour = start // 60
    if hour > first_hour:
        db.execute(_HOUR_SQL, (first_hour * 60, hour * 60))
        db.execute(_HOUR_LAST_SQL, (first_hour, hour))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('lb_hour_next', ?)",
               (str(max(hour, first_hour)),))


def prune(db: sqlite3.Connection, now: float, raw: float, minutes: float, hours: float) -> None:
    """The node metrics' retention (docs/director.md): raw rounds, minutes (never one whose
    hour is not rolled up yet), hours."""
    db.execute(f"DELETE FROM lb_samples WHERE {_EACH}ts < ?", (round((now - raw) * TS_SCALE),))
    db.execute("DELETE FROM lb_rounds WHERE ts < ?", (round((now - raw) * TS_SCALE),))
    hour_next = _meta(db, "lb_hour_next") or 0
    db.execute(f"DELETE FROM lb_minutes WHERE {_EACH}minute < ?",
               (min(int((now - minutes) // 60), hour_next * 60),))
    db.execute(f"DELETE FROM lb_hours WHERE {_EACH}hour < ?", (int((now - hours) // 3600),))


# -- readers -----------------------------------------------------------------------------------

# the level, its time column in seconds, and how far before the moment a row still tells it
_LEVELS = (
    ("lb_samples", "ts / 1000.0", "ts", TS_SCALE, 60.0),
    ("lb_minutes", "minute * 60.0", "minute", 1 / 60, 180.0),
    ("lb_hours", "hour * 3600.0", "hour", 1 / 3600, 7200.0),
)
_RAW_COLS = ("weight, state, active, inactive, cps, share, wshare, imbalance")
_ROLLED_COLS = ("weight, state, active_avg, inactive_avg, cps_avg, share_avg, wshare_avg, "
                "imbalance_avg")


def servers_at(db: sqlite3.Connection, at: float) -> tuple[tuple[LBServiceView, ...], float]:
    """The LB view as the round at or before `at` saw it (raw rounds, else the minute, else the
    hour), with each server's share history up to then; and the cluster imbalance (the worst
    service's, as the engine computes it). Nothing when no round was stored near `at`."""
    try:
        facts = {row[0]: row[1:] for row in db.execute(
            "SELECT id, backend, service, server, address, port, node, protocol, scheduler, "
            "basis FROM lb_servers")}
    except sqlite3.OperationalError:  # a database from before LB history
        return (), 0.0
    if not facts:
        return (), 0.0
    rows: list[tuple[Any, ...]] = []
    for table, _, col, scale, window in _LEVELS:
        cols = _RAW_COLS if table == "lb_samples" else _ROLLED_COLS
        if table == "lb_samples":
            found = db.execute("SELECT max(ts) FROM lb_rounds WHERE ts <= ? AND ts >= ?",
                               (round(at * TS_SCALE), round((at - window) * TS_SCALE))).fetchone()
        else:
            found = db.execute(f"SELECT max({col}) FROM {table} WHERE {col} <= ? AND {col} >= ?",
                               (int(at * scale), int((at - window) * scale))).fetchone()
        if found[0] is None:
            continue
        rows = db.execute(f"SELECT rs, {cols} FROM {table} WHERE {_EACH}{col} = ?",
                          (found[0],)).fetchall()
        if rows:
            break
    if not rows:
        return (), 0.0
    history = _recent_pairs(db, at)
    services: dict[tuple[str, str], list[RealServerView]] = {}
    recent: dict[tuple[str, str], dict[str, tuple[tuple[float, float], ...]]] = {}
    imbalances: dict[tuple[str, str], float] = {}
    for rs, weight, state, active, inactive, cps, share, wshare, imbalance in rows:
        balancer, service, server, address, port, node, *_ = facts[rs]
        conn_share, weight_share = share / SHARE_SCALE, wshare / SHARE_SCALE
        services.setdefault((balancer, service), []).append(RealServerView(
            key=server, address=address, port=port, weight=weight or 0, state=state or "",
            active_conns=active or 0, inactive_conns=inactive or 0,
            conns_per_s=(cps or 0) / CPS_SCALE, node_id=node, conn_share=conn_share,
            weight_share=weight_share,
            ratio=conn_share / weight_share if weight_share else None,
        ))
        recent.setdefault((balancer, service), {})[server] = history.get(rs, ())
        imbalances[(balancer, service)] = (imbalance or 0) / SHARE_SCALE
    by_service = {(f[0], f[1]): f for f in facts.values()}
    views = []
    for (balancer, service), servers in sorted(services.items()):
        _, _, _, _, _, _, protocol, scheduler, basis = by_service[(balancer, service)]
        servers.sort(key=lambda s: s.key)
        views.append(LBServiceView(service, balancer, protocol, scheduler, tuple(servers),
                                   imbalances[(balancer, service)], basis,
                                   MappingProxyType(recent[(balancer, service)])))
    return tuple(views), max(imbalances.values(), default=0.0)


def _recent_pairs(db: sqlite3.Connection, at: float) -> dict[int, tuple[tuple[float, float], ...]]:
    """Each server's last SPARK_ROUNDS (share, weight share) pairs up to `at`, from the raw
    rounds of the two minutes before (empty past the raw retention)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for rs, share, wshare in db.execute(
            f"SELECT rs, share, wshare FROM lb_samples WHERE {_EACH}ts <= ? AND ts > ? "
            "ORDER BY rs, ts",
            (round(at * TS_SCALE), round((at - 120) * TS_SCALE))):
        out.setdefault(rs, []).append((share / SHARE_SCALE, wshare / SHARE_SCALE))
    return {rs: tuple(pairs[-SPARK_ROUNDS:]) for rs, pairs in out.items()}


def metric_name(balancer: str, service: str, server: str, what: str = "share") -> str:
    """The Store.history name of one server's share ("share") or weight share ("weight")."""
    return f"{PREFIX}{balancer}/{service}/{server}:{what}"


def series(
    db: sqlite3.Connection, metrics: Sequence[str], seconds: float, now: float,
    raw_span: float, minute_span: float,
) -> dict[str, list[tuple[float, float]]]:
    """Points (time, percent) per `metric_name`, over the last `seconds` before `now`: raw
    rounds up to raw_span, minute rows up to minute_span, hour rows beyond (as Store.history)."""
    out: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
    table, t_expr, col, scale, _ = (
        _LEVELS[0] if seconds <= raw_span else _LEVELS[1] if seconds <= minute_span
        else _LEVELS[2])
    share, wshare = ("share", "wshare") if table == "lb_samples" else ("share_avg", "wshare_avg")
    for metric in metrics:
        try:
            name, what = metric[len(PREFIX):].rsplit(":", 1)
            balancer, rest = name.split("/", 1)
            service, server = rest.rsplit("/", 1)
        except ValueError:
            continue
        column = share if what == "share" else wshare
        try:
            rows = db.execute(
                f"SELECT {t_expr}, {column} * 100.0 / {SHARE_SCALE} FROM {table} "
                f"WHERE rs = (SELECT id FROM lb_servers WHERE backend = ? AND service = ? "
                f"AND server = ?) AND {col} >= ? AND {col} <= ? ORDER BY {col}",
                (balancer, service, server, int((now - seconds) * scale), int(now * scale)),
            ).fetchall()
        except sqlite3.OperationalError:  # a database from before LB history
            rows = []
        out[metric] = [(t, v) for t, v in rows]
    return out
