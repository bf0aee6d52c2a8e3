"""A past moment as a snapshot source: what `ctop --at TIME` and the UI's `T` show.

`PastSource` reads the history database and builds, for one moment, the same immutable
Snapshot the live UI renders: each node's metrics (the last raw sample before the moment, else
its minute, else its hour), its liveness (the last join/state/leave event before it), the
alerts firing then (ctop.alert_history), the events up to then, and the load-balancer view of
the last LB round (ctop.lb_history). The snapshot says `past=True` and `readonly=True`, and the
source refuses every load-balancer action: the past is for looking at.

What history does not keep is not invented: a service check's status (only its latency is
stored: shown as "unknown"), top processes, drift and weight advice.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import groupby, repeat
from operator import attrgetter, itemgetter, truediv
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgpack

from ctop import alert_history, lb_history
from ctop.cluster import _added, _of_sums, _sums  # the totals from the groups' sums
from ctop.snapshot import EventView, GroupView, Liveness, NodeView, ServiceView, Snapshot
from ctop.store import StoreReader
from ctop.store.schema import LATENCY_SCALE, SCALES
from ctop.store.schema import METRIC_COLUMNS as COLUMNS
from ctop.store.schema import connect_readonly as open_readonly

if TYPE_CHECKING:
    from ctop.lb.actions import ActionResult, Plan
    from ctop.lb.base import Connection
    from ctop.lb.request import ActionRequest

EVENTS_KEPT = 200  # as many as a live snapshot carries
CPU_HISTORY_S = 30.0  # the card's CPU sparkline: the half minute before the moment
# A node whose last data is older than this at the moment was not reporting, whatever its last
# event says (e.g. the director restarted while it was down): it is shown dead.
STALE_S = 300.0
clock = time.time  # the present (tests of the header's "ago" fix it)
REFUSAL = "this is the past (ctop --at / T): load-balancer actions are disabled"

_COLS = tuple(COLUMNS.values())
_CPU_SCALE = float(SCALES["cpu"])
# the node's metrics at a level: table, time column in ms, the column per metric, how far back
# (a missing value reads as 0, in SQLite: not a Python pass over 10,000 rows of 13 columns)
_LEVELS = (
    ("samples", "s.ts", "s.ts", tuple(f"ifnull(s.{c} / {SCALES[c]:.1f}, 0)" for c in _COLS),
     600.0, 1000),
    ("rollups", "s.minute * 60000", "s.minute",
     tuple(f"ifnull(s.{c}_avg / {SCALES[c]:.1f}, 0)" for c in _COLS), 3600.0, 1 / 60),
    ("hourly", "s.hour * 3600000", "s.hour",
     tuple(f"ifnull(s.{c}_avg / {SCALES[c]:.1f}, 0)" for c in _COLS), 86400.0, 1 / 3600),
)
_STATE = re.compile(r" → (alive|suspect|dead|left) \(")
_LIVENESS_KINDS = ("join", "restart", "state", "leave", "forget")


class PastError(Exception):
    """The moment or the database cannot be used (said to the operator as it is)."""


class PastSource:
    """The EngineLike of a past moment; `go()` / `move()` change the moment."""

    readonly = True
    records_actions = False
    lb = None

    def __init__(self, db_path: str, at: float, *, cluster: str = "cluster") -> None:
        try:
            self._db = connect_readonly(db_path)
            self._store = StoreReader(db_path)
        except sqlite3.Error as e:
            raise PastError(f"cannot read the history database {db_path}: {e}") from None
        self.path = db_path
        self.cluster = cluster
        self.at = at  # the moment shown
        self.target = at  # the moment asked for (a step not read yet: ahead of `at`)
        self._moves = 0
        self._snap: Snapshot | None = None
        try:
            side = connect_readonly(db_path)  # the LB view, alerts, events: read beside the nodes
        except sqlite3.Error:
            side = None
        self._reader = MomentReader(self._db, side)
        self._lock = threading.Lock()  # one read at a time (the UI reads in worker threads)
        self._state = threading.Lock()  # target and the shown moment: held for no time
        self._closed = False

    def close(self) -> None:
        with self._lock:  # after a moment still being read
            if not self._closed:
                self._closed = True
                self._reader.close()
                self._store.close()
                self._db.close()

    # -- the moment ------------------------------------------------------------------------

    def want(self, seconds: float) -> float:
        """Ask for the moment `seconds` from the last one asked for (never later than now: the
        future is not stored yet) and return it; no reading: the UI calls it on a key press,
        then `load()`s the moment in a worker. Quick presses add up."""
        with self._state:
            self.target = min(self.target + seconds, clock())
            return self.target

    def load(self, at: float) -> Snapshot | None:
        """Read the moment `at` and show it from then on; None (nothing shown) when a newer
        moment was asked for before or while it was read: a superseded step never shows."""
        with self._lock:
            if self._closed or at != self.target:
                return None
            snap = self._reader.read(at, self.cluster, tick=self._moves + 1,
                                     wanted=lambda: at == self.target)
            with self._state:
                if snap is None or at != self.target:
                    return None
                self.at, self._moves, self._snap = at, self._moves + 1, snap
                return snap

    def go(self, at: float) -> Snapshot:
        """Read the moment `at` now and show it (`ctop --at`, tests); the snapshot shown."""
        with self._state:
            if self._closed and self._snap is not None:  # a key pressed as the UI went live
                return self._snap
            self.target = at = min(at, clock())
        snap = self.load(at) or self._snap  # (superseded meanwhile: what is shown)
        if snap is None:
            raise PastError(f"{self.path}: closed before a moment was read")
        return snap

    def move(self, seconds: float) -> Snapshot:
        return self.go(self.target + seconds)

    def snapshot(self) -> Snapshot:
        snap = self._snap
        return snap if snap is not None else self.go(self.at)

    # -- what views read -------------------------------------------------------------------

    def history(
        self, node_id: str, metrics: Sequence[str], seconds: float
    ) -> dict[str, list[tuple[float, float]]]:
        return self._store.history(node_id, metrics, seconds, now=self.at)

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, kind, node, message FROM events WHERE node = ? AND ts <= ? "
                "ORDER BY ts DESC, id DESC LIMIT ?", (node_id, self.at, limit)).fetchall()
        return [EventView(*r) for r in reversed(rows)]

    def watch(self, node_id: str | None) -> None:
        pass  # every node's stored metrics are in the snapshot

    async def lb_plan(self, request: ActionRequest) -> Plan | None:
        raise RuntimeError(REFUSAL)

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        raise RuntimeError(REFUSAL)

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        raise RuntimeError(REFUSAL)


def connect_readonly(path: str) -> sqlite3.Connection:
    """The database as it is, read-only; a missing file is an error, not a new empty database."""
    db = open_readonly(path)
    try:
        db.execute("SELECT 1 FROM nodes LIMIT 1")  # not a ctop database: say so now
    except sqlite3.Error:
        db.close()
        raise
    return db


# -- building the snapshot ---------------------------------------------------------------------


def snapshot_at(db: sqlite3.Connection, at: float, cluster: str, *, tick: int = 0) -> Snapshot:
    """The snapshot of `at` (one-off: nothing kept for the next moment)."""
    snap = MomentReader(db).read(at, cluster, tick=tick)
    assert snap is not None  # (nothing can supersede a one-off read)
    return snap


def _always() -> bool:
    return True


class MomentReader:
    """Builds the snapshot of a moment with one query per table (each a primary-key or index
    seek per node), and keeps between moments what does not change with the moment: the
    nodes' facts, decoded and in the screen's (group, node_id) order, and the decoded latency
    sets. One moment at a time (PastSource's lock)."""

    def __init__(self, db: sqlite3.Connection, side: sqlite3.Connection | None = None) -> None:
        self._db = db
        # `side`: a second connection to the same database; with it the LB view, the alerts
        # and the events are read in a thread while this one reads the nodes (SQLite works
        # without the GIL: the two overlap on a second core)
        self._side = side
        self._pool = ThreadPoolExecutor(1, "ctop-past") if side is not None else None
        self._version: int | None = None  # PRAGMA data_version when the facts were read
        self._fact_rows: list[tuple[Any, ...]] | None = None
        self._facts: list[tuple[Any, ...]] = []  # in display order, decoded
        self._latencies: dict[Any, tuple[ServiceView, ...]] = {}  # svc blob -> its views
        # each node's last liveness event at `_states_at`, for the next moment to start from
        self._states: dict[str, tuple[str, str]] = {}
        self._states_at: float | None = None
        self._states_of: list[tuple[Any, ...]] | None = None  # the facts they were read for
        self._events_seen = 0  # the highest event id when they were read
        # the last moment's views: node row id -> (its stored row, liveness, view), reused
        # for a node whose row and liveness are the same at the next moment (a dead node, a
        # step shorter than its sample spacing), with the facts and service names they were
        # built from
        self._views: dict[int, tuple[tuple[Any, ...] | None, Liveness, NodeView]] = {}
        self._views_of: tuple[list[tuple[Any, ...]], dict[int, str]] | None = None

    def read(self, at: float, cluster: str, *, tick: int = 0,
             wanted: Callable[[], bool] = _always) -> Snapshot | None:
        """The snapshot of `at`; None as soon as `wanted()` says a newer moment replaced it
        (checked between the reads, so a superseded step stops early)."""
        pool = self._pool
        side: Future[_Side] | None = None
        if pool is not None:
            side = pool.submit(_side_reads, self._side, at)  # type: ignore[arg-type]
        try:
            return self._read(at, cluster, tick, wanted, side)
        finally:
            if side is not None and not side.cancel():
                side.exception()  # until it is done: the next read uses its connection

    def close(self) -> None:
        if self._pool is not None and self._side is not None:
            self._pool.shutdown(wait=True)
            self._side.close()

    def _read(self, at: float, cluster: str, tick: int, wanted: Callable[[], bool],
              side: Future[_Side] | None) -> Snapshot | None:
        db = self._db
        facts = self._node_facts()
        values = _node_values(db, at, len(facts))
        if not wanted():
            return None
        states = self._liveness_at(at, facts)
        if not wanted():
            return None
        names = dict(db.execute("SELECT id, name FROM services"))
        kept = []
        for fact in facts:
            row = values.get(fact[0])
            kind, message = states.get(fact[1], ("", ""))
            if kind == "forget" or (row is None and not kind):
                continue  # dropped after leaving, or nothing known of it by then
            liveness = _liveness(kind, message, at - row[0] / 1000 if row else None)
            kept.append((fact, liveness, row))
        nodes = self._views_for(kept, names, facts)
        sums = [(name, _sums(list(run)))  # nodes are in group order
                for name, run in groupby(nodes, key=_GROUP)]
        groups = tuple(GroupView(name, _of_sums(part)) for name, part in sums)
        if not wanted():
            return None
        lb, imbalance, alerts, events = side.result() if side is not None else _side_reads(db, at)
        return Snapshot(
            ts=at, tick=tick, cluster=cluster, nodes=nodes, groups=groups,
            totals=_of_sums(_added([part for _, part in sums])), alerts=alerts,
            events=events, lb=lb, imbalance=imbalance,
            lb_note="" if lb else "no load-balancer round stored near this moment",
            readonly=True, past=True, _index=Snapshot.index_of(nodes),
        )

    def _views_for(self, kept: list[tuple[tuple[Any, ...], Liveness, tuple[Any, ...] | None]],
                   names: dict[int, str],
                   facts: list[tuple[Any, ...]]) -> tuple[NodeView, ...]:
        """A view per kept node: the last moment's where the node's stored row and liveness
        did not change (nor the facts and service names it was built from), else a new one."""
        last = self._views if self._views_of is not None and (
            self._views_of[0] is facts and self._views_of[1] == names) else {}
        views: dict[int, tuple[tuple[Any, ...] | None, Liveness, NodeView]] = {}
        out = []
        latencies = self._latencies
        for fact, liveness, row in kept:
            old = last.get(fact[0])
            if old is not None and old[1] is liveness and old[0] == row:
                view = old[2]
            else:
                view = _view(fact, liveness, row, latencies, names)
            views[fact[0]] = (row, liveness, view)
            out.append(view)
        self._views, self._views_of = views, (facts, names)
        return tuple(out)

    def _liveness_at(self, at: float, facts: list[tuple[Any, ...]]) -> dict[str, tuple[str, str]]:
        """Each node's last liveness event up to `at`: the previous moment's, read again only
        for the nodes that had one between the two moments (a step of a minute: a few)."""
        prev, seen = self._states_at, self._events_seen
        # events written since the last read, whatever their time: the daemon's writer may
        # store an event stamped before the previous moment after that moment was read
        self._events_seen = self._db.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        if prev is None or facts is not self._states_of:
            states = _last_liveness(self._db, at)
        else:
            lo, hi = min(prev, at), max(prev, at)
            changed = [n for (n,) in self._db.execute(
                f"SELECT DISTINCT node FROM events WHERE kind IN ({_KIND_MARKS}) AND "
                f"((ts > ? AND ts <= ?) OR (id > ? AND ts <= ?))",
                (*_LIVENESS_KINDS, lo, hi, seen, hi))]
            if len(changed) > len(facts) // 4:  # an incident of most nodes: read them all
                states = _last_liveness(self._db, at)
            else:
                states = dict(self._states)
                for k in range(0, len(changed), 500):  # (SQLite's bound on parameters)
                    some = changed[k:k + 500]
                    found = _last_liveness(self._db, at, some)
                    for node in some:
                        if node in found:
                            states[node] = found[node]
                        else:
                            states.pop(node, None)
        self._states, self._states_at, self._states_of = states, at, facts
        return states

    def _node_facts(self) -> list[tuple[Any, ...]]:
        """(row id, node_id, hostname, group, addresses, cores, mem_total, version, interval)
        of every node, in (group, node_id) order; decoded again only when the table changed
        (a join, a new address: the daemon writes it as the moment goes on)."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version and self._fact_rows is not None:
            return self._facts  # no connection wrote to the database since
        self._version = version
        rows = self._db.execute(
            "SELECT id, node_id, hostname, grp, addresses, cores, mem_total, version, interval "
            "FROM nodes").fetchall()
        if rows != self._fact_rows:
            self._fact_rows = rows
            self._facts = sorted(
                ((rowid, node_id, hostname or node_id, group or "",
                  tuple(json.loads(addresses or "[]")), cores or 0, mem_total or 0,
                  version or "", interval or 1.0)
                 for rowid, node_id, hostname, group, addresses, cores, mem_total, version,
                 interval in rows),
                key=_ORDER)
        return self._facts


_Side = tuple[tuple[Any, ...], float, tuple[Any, ...], tuple[EventView, ...]]


def _side_reads(db: sqlite3.Connection, at: float) -> _Side:
    """What a moment shows besides its nodes: the LB view and imbalance, the alerts firing,
    the events up to then."""
    lb, imbalance = lb_history.servers_at(db, at)
    events = db.execute("SELECT ts, kind, node, message FROM events WHERE ts <= ? "
                        "ORDER BY ts DESC, id DESC LIMIT ?", (at, EVENTS_KEPT)).fetchall()
    return (lb, imbalance, alert_history.firing_at(db, at),
            tuple(EventView(*e) for e in reversed(events)))


_ORDER = itemgetter(3, 1)  # (group, node_id): the live snapshot's order
_GROUP = attrgetter("group")


def _node_values(db: sqlite3.Connection, at: float, nodes: int) -> dict[int, tuple[Any, ...]]:
    """node row id -> (time in ms, metric values..., svc blob, CPU of the half minute before
    as "v,v,..." or None) of its last stored row before `at`: a raw sample of the last 10
    minutes, else a minute row of the last hour, else an hour row of the last day (the levels'
    retention). One query per level, each a primary-key seek per node."""
    out: dict[int, tuple[Any, ...]] = {}
    for table, ts, col, cols, window, scale in _LEVELS:
        if len(out) >= nodes:  # every node found at a finer level
            break
        if table == "samples":
            lo, hi = round((at - window) * 1000), round(at * 1000)
            # the card's CPU sparkline, in the same pass (the rows are clustered by node)
            # (as stored, scaled: SQLite writing each quotient as text cost more than the
            # division in Python; the primary key gives them in time order)
            history = ("(SELECT group_concat(cpu) FROM samples WHERE node = n.id AND "
                       "ts > :since AND ts <= :hi)")
        else:
            lo, hi = int((at - window) * scale), int(at * scale)
            history = "NULL"
        try:
            rows = db.execute(
                f"SELECT n.id, {ts}, {', '.join(cols)}, s.svc, {history} FROM nodes AS n "
                f"CROSS JOIN {table} AS s WHERE s.node = n.id AND {col} = (SELECT max({col[2:]}) "
                f"FROM {table} WHERE node = n.id AND {col[2:]} <= :hi AND {col[2:]} >= :lo)",
                {"hi": hi, "lo": lo, "since": round((at - CPU_HISTORY_S) * 1000)}).fetchall()
        except sqlite3.OperationalError:  # no such level in an old database
            continue
        for rowid, *row in rows:
            out.setdefault(rowid, tuple(row))
    return out


_KIND_MARKS = ",".join("?" * len(_LIVENESS_KINDS))


def _last_liveness(db: sqlite3.Connection, at: float,
                   nodes: Sequence[str] | None = None) -> dict[str, tuple[str, str]]:
    """node -> (kind, message) of its last liveness event up to `at` (every node's, or those
    of `nodes`); a node without one is absent."""
    where = f" WHERE n.node_id IN ({','.join('?' * len(nodes))})" if nodes is not None else ""
    rows = db.execute(
        f"SELECT n.node_id, (SELECT kind || char(31) || message FROM events WHERE node = "
        f"n.node_id AND ts <= ? AND kind IN ({_KIND_MARKS}) ORDER BY ts DESC, id DESC LIMIT 1) "
        f"FROM nodes AS n{where}", (at, *_LIVENESS_KINDS, *(nodes or ()))).fetchall()
    return {node: tuple(last.split("\x1f", 1)) for node, last in rows if last}  # type: ignore


def _liveness(kind: str, message: str, silent: float | None) -> Liveness:
    if kind == "leave":
        state = Liveness.LEFT
    elif kind == "state":
        found = _STATE.findall(message)
        state = Liveness(found[-1]) if found else Liveness.DEAD
    elif kind in ("join", "restart"):
        state = Liveness.ALIVE
    else:  # no event kept: its data says whether it reported
        state = Liveness.ALIVE
    if state in (Liveness.ALIVE, Liveness.SUSPECT) and (silent is None or silent > STALE_S):
        return Liveness.DEAD
    return state


_ZEROS = (0.0,) * len(_COLS)
_METRIC_NAMES = tuple(COLUMNS)  # in the order of _COLS
_AT = {c: i for i, c in enumerate(_COLS)}
# NodeView's cpu .. net_tx_bps, then its conns .. users, then disk_root, from a row's values
_FLOATS = itemgetter(*(_AT[c] for c in ("cpu", "mem", "swap", "load1", "net_rx", "net_tx")))
_INTS = itemgetter(*(_AT[c] for c in ("conns", "procs", "threads", "users")))
_DISK, _LOAD1 = _AT["disk"], _AT["load1"]
_tuple_new = tuple.__new__  # all fields given: without NamedTuple's Python-level __new__


def _view(fact: tuple[Any, ...], liveness: Liveness, row: tuple[Any, ...] | None,
          services: dict[Any, tuple[ServiceView, ...]], names: dict[int, str]) -> NodeView:
    _, node_id, hostname, group, addresses, cores, mem_total, version, interval = fact
    values = row[1:-2] if row else _ZEROS  # unscaled by the query, 0 for a missing one
    svcs: tuple[ServiceView, ...] = ()
    blob = row[-2] if row else None
    if blob:
        svcs = services.get(blob)  # type: ignore[assignment]
        if svcs is None:  # a cluster repeats a few distinct latency sets: decode each once
            ids, latencies = msgpack.unpackb(blob)
            svcs = services[blob] = tuple(
                ServiceView(names.get(sid, f"#{sid}"), "unknown", x / LATENCY_SCALE,
                            "status not kept in history")
                for sid, x in zip(ids, latencies, strict=True))
    cpu_history = row[-1] if row else None
    conns, procs, threads, users = map(int, _INTS(values))
    metrics = dict(zip(_METRIC_NAMES, values, strict=True))
    metrics["load"] = (values[_LOAD1],)
    return _tuple_new(NodeView, (  # every field, in NodeView's order (as ctop.cluster._view)
        node_id, hostname, group, liveness, row[0] / 1000 if row else 0.0, 0, interval,
        addresses, cores, mem_total, version, *_FLOATS(values), conns, procs, threads, users,
        values[_DISK], _unscaled_cpu(cpu_history) if cpu_history else (),
        svcs, 0,
        MappingProxyType(metrics), 0.0, "", (), ""))


def _unscaled_cpu(stored: str) -> tuple[float, ...]:
    """The card's CPU history from its stored values, "4500,4610,...": percent."""
    return tuple(map(truediv, map(float, stored.split(",")), repeat(_CPU_SCALE)))


# -- the operator's words for a moment ---------------------------------------------------------

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)(?:\s+ago)?$")
_UNIT = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_moment(text: str, now: float | None = None) -> float:
    """A moment as the operator writes it: "2026-12-01 14:05" (local time; seconds and an
    ISO 8601 offset allowed), "14:05" (today), "-15m" / "2h ago" (before now), or Unix seconds.
    Raises ValueError saying what is accepted."""
    now = time.time() if now is None else now
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return float(t)
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", t):
            day = datetime.fromtimestamp(now).date().isoformat()
            moment = datetime.fromisoformat(f"{day} {t}")
        else:
            moment = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"--at {text!r}: not a time; use \"2026-12-01 14:05\" (local), \"14:05\" (today), "
            "\"-15m\" or \"2h ago\", or Unix seconds") from None
    value = moment.timestamp()  # naive: local time
    if value > now + 1:
        raise ValueError(f"--at {text!r}: that is in the future (now is "
                         f"{datetime.fromtimestamp(now):%Y-%m-%d %H:%M:%S})")
    return value


def describe(at: float) -> str:
    """The moment in the header: local time, and how long ago."""
    ago = timedelta(seconds=max(0, round(clock() - at)))
    return f"{datetime.fromtimestamp(at):%Y-%m-%d %H:%M:%S} ({ago} ago)"
