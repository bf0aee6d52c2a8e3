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
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgpack

from ctop import alert_history, lb_history
from ctop.cluster import aggregate
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
# the node's metrics at a level: table, time column in ms, the column per metric, how far back
_LEVELS = (
    ("samples", "s.ts", "s.ts", tuple(f"s.{c} / {SCALES[c]:.1f}" for c in _COLS), 600.0, 1000),
    ("rollups", "s.minute * 60000", "s.minute",
     tuple(f"s.{c}_avg / {SCALES[c]:.1f}" for c in _COLS), 3600.0, 1 / 60),
    ("hourly", "s.hour * 3600000", "s.hour",
     tuple(f"s.{c}_avg / {SCALES[c]:.1f}" for c in _COLS), 86400.0, 1 / 3600),
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
        self.at = at
        self._moves = 0
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()  # the UI builds the next moment in a worker thread
        self._closed = False

    def close(self) -> None:
        with self._lock:  # after a moment still being read
            if not self._closed:
                self._closed = True
                self._store.close()
                self._db.close()

    # -- the moment ------------------------------------------------------------------------

    def go(self, at: float) -> Snapshot:
        """Build the snapshot of `at` (never later than now: the future is not stored yet) and
        show it from then on; until then snapshot() keeps the previous moment."""
        with self._lock:
            if self._closed and self._snap is not None:  # a key pressed as the UI went live
                return self._snap
            at = min(at, clock())
            snap = snapshot_at(self._db, at, self.cluster, tick=self._moves + 1)
            self.at, self._moves, self._snap = at, self._moves + 1, snap
            return snap

    def move(self, seconds: float) -> Snapshot:
        with self._lock:  # (re-entrant use: go() takes it again)
            at = self.at + seconds
        return self.go(at)

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
    facts = {row[0]: row[1:] for row in db.execute(
        "SELECT node_id, id, hostname, grp, addresses, cores, mem_total, version, interval, "
        "first_seen FROM nodes")}
    values = _node_values(db, at, len(facts))
    states = _last_liveness(db, at)
    history = _cpu_history(db, at)
    services = dict(db.execute("SELECT id, name FROM services"))
    built = []
    for node_id, (_, hostname, group, addresses, cores, mem_total, version, interval,
                  _) in facts.items():
        row = values.get(node_id)
        kind, message = states.get(node_id, ("", ""))
        if kind == "forget" or (row is None and not kind):
            continue  # dropped after leaving, or nothing known of it by then
        seen = row[0] / 1000 if row else 0.0
        liveness = _liveness(kind, message, at - seen if row else None)
        built.append((node_id, hostname or node_id, group or "", liveness, seen, interval or 1.0,
                      tuple(json.loads(addresses or "[]")), cores or 0, mem_total or 0,
                      version or "", row, history.get(node_id, ())))
    total_conns = sum(int(b[10][1 + _COLS.index("conns")] or 0) for b in built
                      if b[10] and b[3] in (Liveness.ALIVE, Liveness.SUSPECT))
    decoded: dict[Any, tuple[ServiceView, ...]] = {}
    views = sorted((_view(b, decoded, services, total_conns) for b in built),
                   key=lambda v: (v.group, v.node_id))
    nodes = tuple(views)
    groups = []
    for name in sorted({v.group for v in nodes}):
        groups.append(GroupView(name, aggregate([v for v in nodes if v.group == name])))
    lb, imbalance = lb_history.servers_at(db, at)
    events = db.execute("SELECT ts, kind, node, message FROM events WHERE ts <= ? "
                        "ORDER BY ts DESC, id DESC LIMIT ?", (at, EVENTS_KEPT)).fetchall()
    return Snapshot(
        ts=at, tick=tick, cluster=cluster, nodes=nodes, groups=tuple(groups),
        totals=aggregate(nodes), alerts=alert_history.firing_at(db, at),
        events=tuple(EventView(*e) for e in reversed(events)), lb=lb, imbalance=imbalance,
        lb_note="" if lb else "no load-balancer round stored near this moment",
        readonly=True, past=True, _index=Snapshot.index_of(nodes),
    )


def _node_values(db: sqlite3.Connection, at: float, nodes: int) -> dict[str, tuple[Any, ...]]:
    """node -> (time in ms, metric values..., svc blob) of its last stored row before
    `at`: a raw sample of the last 10 minutes, else a minute row of the last hour, else an
    hour row of the last day (the levels' retention)."""
    out: dict[str, tuple[Any, ...]] = {}
    for table, ts, col, cols, window, scale in _LEVELS:
        if len(out) >= nodes:  # every node found at a finer level
            break
        if table == "samples":
            lo, hi = round((at - window) * 1000), round(at * 1000)
        else:
            lo, hi = int((at - window) * scale), int(at * scale)
        try:
            rows = db.execute(
                f"SELECT n.node_id, {ts}, {', '.join(cols)}, s.svc FROM nodes AS n "
                f"CROSS JOIN {table} AS s WHERE s.node = n.id AND {col} = (SELECT max({col[2:]}) "
                f"FROM {table} WHERE node = n.id AND {col[2:]} <= ? AND {col[2:]} >= ?)",
                (hi, lo)).fetchall()
        except sqlite3.OperationalError:  # no such level in an old database
            continue
        for node_id, *row in rows:
            out.setdefault(node_id, tuple(row))
    return out


def _last_liveness(db: sqlite3.Connection, at: float) -> dict[str, tuple[str, str]]:
    marks = ",".join("?" * len(_LIVENESS_KINDS))
    rows = db.execute(
        f"SELECT n.node_id, (SELECT kind || char(31) || message FROM events WHERE node = "
        f"n.node_id AND ts <= ? AND kind IN ({marks}) ORDER BY ts DESC, id DESC LIMIT 1) "
        "FROM nodes AS n", (at, *_LIVENESS_KINDS)).fetchall()
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


def _cpu_history(db: sqlite3.Connection, at: float) -> dict[str, tuple[float, ...]]:
    out: dict[str, list[float]] = {}
    scale = float(SCALES["cpu"])
    for node_id, cpu in db.execute(
            "SELECT n.node_id, s.cpu FROM nodes AS n CROSS JOIN samples AS s "
            "WHERE s.node = n.id AND s.ts > ? AND s.ts <= ? ORDER BY n.id, s.ts",
            (round((at - CPU_HISTORY_S) * 1000), round(at * 1000))):
        out.setdefault(node_id, []).append(cpu / scale)
    return {k: tuple(v) for k, v in out.items()}


_ZEROS = (0.0,) * len(_COLS)
_METRIC_NAMES = tuple(COLUMNS)  # in the order of _COLS
_AT = {c: i for i, c in enumerate(_COLS)}


def _view(b: tuple[Any, ...], services: dict[Any, tuple[ServiceView, ...]],
          names: dict[int, str], total_conns: int) -> NodeView:
    (node_id, hostname, group, liveness, seen, interval, addresses, cores, mem_total, version,
     row, cpu_history) = b
    values = tuple(v or 0 for v in row[1:-1]) if row else _ZEROS  # unscaled by the query
    svcs: tuple[ServiceView, ...] = ()
    blob = row[-1] if row else None
    if blob:
        svcs = services.get(blob)  # type: ignore[assignment]
        if svcs is None:  # a cluster repeats a few distinct latency sets: decode each once
            ids, latencies = msgpack.unpackb(blob)
            svcs = services[blob] = tuple(
                ServiceView(names.get(sid, f"#{sid}"), "unknown", x / LATENCY_SCALE,
                            "status not kept in history")
                for sid, x in zip(ids, latencies, strict=True))
    at = _AT
    conns = int(values[at["conns"]])
    counted = liveness is Liveness.ALIVE or liveness is Liveness.SUSPECT
    metrics = dict(zip(_METRIC_NAMES, values, strict=True))
    metrics["load"] = (values[at["load1"]],)
    return NodeView(  # positional, in NodeView's order (as ctop.cluster._view)
        node_id, hostname, group, liveness, seen, 0, interval, addresses, cores, mem_total,
        version, values[at["cpu"]], values[at["mem"]], values[at["swap"]], values[at["load1"]],
        values[at["net_rx"]], values[at["net_tx"]], conns, int(values[at["procs"]]),
        int(values[at["threads"]]), int(values[at["users"]]), values[at["disk"]], cpu_history,
        svcs, conns / total_conns if total_conns and counted else 0.0, 0,
        MappingProxyType(metrics), 0.0)


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
