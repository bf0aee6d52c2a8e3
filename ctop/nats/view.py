"""Every cluster and group reachable through NATS as one snapshot (`ctop --nats URL`).

`ClusterView` merges the group snapshots collectors publish (ctop.nats.collector) into one
Snapshot: all nodes sorted by (group, node), a group row each, the totals summed, events from
all. It judges the collectors, not the nodes: a collector whose heartbeat has not arrived for
LOST_AFTER seconds (measured on this machine's clock, so no clock sync is needed) has its nodes
shown as `unknown` (collector lost) — never dead: the view does not know, and nothing acts on
them (the source has no balancers; a director acts only on its own).

Group snapshots arrive as deltas (ctop.control.delta, as an attached UI polls them): a
DeltaReader per group holds its rows; a delta that does not fit what it holds (the view joined
late, or missed a message) is dropped and the view asks the collector for a full snapshot on
`<group>.want` (a view that may not publish waits for the next keyframe, KEYFRAME s at most).
Until then the group shows what it held.

`NatsSource` is the UI's source over it (like ctop.tui.remote.RemoteSource), read-only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import msgpack

from ctop.codec import unpack_compact
from ctop.control.delta import DaemonRefused, DeltaError, DeltaReader
from ctop.nats.collector import FORMAT, group_token, want_subject
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.sparks import CpuHistories
from ctop.snapshot import (
    Aggregate,
    EventView,
    GroupView,
    LBServiceView,
    Liveness,
    NodeView,
    Snapshot,
)
from ctop.victoria import VictoriaReader

HISTORY_NOTE = ("no history in a NATS view: it is on the collector "
                "([history] victoria_url draws it here)")
LOST_AFTER = 2.0  # s without a heartbeat: 4 missed beats; nodes unknown within 3 s of a loss
MAX_EVENTS = 500
REFUSAL = "a view through NATS acts on nothing: run actions on the director that owns them"


@dataclass
class _Group:
    cluster: str
    name: str
    collector: str
    snap: Snapshot


@dataclass
class _Collector:
    name: str
    cluster: str
    last: float  # time.monotonic() of its newest heartbeat or snapshot
    groups: tuple[str, ...] = ()


@dataclass
class ClusterView:
    """The merge (see the module doc); fed from the NATS thread, read from the UI's."""

    lost_after: float = LOST_AFTER
    clock: Any = time.monotonic
    _groups: dict[tuple[str, str], _Group] = field(default_factory=dict)
    _collectors: dict[tuple[str, str], _Collector] = field(default_factory=dict)
    _events: deque[EventView] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    _lost: set[tuple[str, str]] = field(default_factory=set)
    _lb: dict[tuple[str, str], tuple[LBServiceView, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    errors: int = 0  # messages that could not be read (a newer or foreign publisher)
    gaps: int = 0  # deltas that did not fit what the view held: a full snapshot asked for
    # asks a collector for a group's full snapshot: (cluster, group) -> None (NatsSource: a
    # publish on `want`); None: wait for the next keyframe
    ask: Callable[[str, str], None] | None = None
    _readers: dict[tuple[str, str], DeltaReader] = field(default_factory=dict)
    _sparks: CpuHistories = field(default_factory=CpuHistories)

    def receive(self, data: bytes, subject: str) -> None:
        """One message of any of the collector subjects; bad input is counted, never raised."""
        try:
            env = msgpack.unpackb(data)
            if env.get("v") != FORMAT:
                raise ValueError(f"envelope version {env.get('v')!r}")
            collector, cluster, group = str(env["collector"]), str(env["cluster"]), \
                str(env["group"])
            body: bytes = env["body"]
            kind = subject.rsplit(".", 1)[-1]
            if "._collector." in subject:
                self._beat(cluster, collector, msgpack.unpackb(body)["groups"])
            elif "._director." in subject and kind == "lb":
                self._balancers(cluster, collector, unpack_compact(body).lb)
            elif kind == "snap":
                snap = self._delta(cluster, group, body)
                if snap is not None:
                    self._snap(cluster, group, collector,
                               self._sparks.apply(cluster, group, snap))
            elif kind == "events":
                self._add_events(cluster, collector, msgpack.unpackb(body))
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            self.errors += 1

    def _delta(self, cluster: str, group: str, body: bytes) -> Snapshot | None:
        """The group's snapshot after this delta; None if it does not fit (asked for anew)."""
        reader = self._readers.setdefault((cluster, group), DeltaReader())
        try:
            return reader.apply(body)
        except (DeltaError, DaemonRefused):
            reader.reset()
            self.gaps += 1
            if self.ask is not None:
                self.ask(cluster, group)
            return None

    def cluster_of(self, node_id: str) -> str | None:
        """The cluster whose collector publishes the node (None: not held)."""
        with self._lock:
            return next((g.cluster for g in self._groups.values()
                         if g.snap.node(node_id) is not None), None)

    def group_snapshot(self, cluster: str, group: str) -> Snapshot | None:
        """The group's snapshot as the view holds it (bench/scale.py measures with it)."""
        with self._lock:
            g = self._groups.get((cluster, group))
        return g.snap if g is not None else None

    def _beat(self, cluster: str, collector: str, groups: Iterable[str]) -> None:
        with self._lock:
            c = self._collectors.setdefault((cluster, collector),
                                            _Collector(collector, cluster, self.clock()))
            c.last, c.groups = self.clock(), tuple(str(g) for g in groups)

    def _snap(self, cluster: str, group: str, collector: str, snap: Snapshot) -> None:
        with self._lock:
            self._groups[(cluster, group)] = _Group(cluster, group, collector, snap)
            self._collectors.setdefault((cluster, collector),
                                        _Collector(collector, cluster, self.clock()))

    def _balancers(self, cluster: str, director: str, lb: tuple[LBServiceView, ...]) -> None:
        # a service's key says whose it is: every director's balancers in one LB pane
        with self._lock:
            # known from its first message: one that dies before its first heartbeat is lost too
            self._collectors.setdefault((cluster, director),
                                        _Collector(director, cluster, self.clock()))
            self._lb[(cluster, director)] = tuple(replace(v, key=f"{director} {v.key}")
                                                  for v in lb)

    def _add_events(self, cluster: str, collector: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._collectors.setdefault((cluster, collector),
                                        _Collector(collector, cluster, self.clock()))
            self._events.extend(EventView(float(r[0]), str(r[1]), r[2], str(r[3]))
                                for r in rows)

    def lost(self) -> list[tuple[str, str, float]]:
        """(cluster, collector, seconds silent) of each collector lost now."""
        now = self.clock()
        with self._lock:
            return [(c.cluster, c.name, now - c.last) for c in self._collectors.values()
                    if now - c.last > self.lost_after]

    def contexts(self) -> list[tuple[str, str]]:
        """(name, what) of each context `:ctx` offers: all, each cluster, each director."""
        with self._lock:
            clusters = sorted({cl for cl, _ in self._groups} | {cl for cl, _ in self._lb})
            directors = sorted(self._lb)
        return ([("all", "every cluster and director reachable")]
                + [(cl, f"cluster {cl}: its groups and directors") for cl in clusters]
                + [(name, f"director {name} ({cl}): its balancers") for cl, name in directors])

    def snapshot(self, tick: int = 0, context: str = "all") -> Snapshot:
        lost = {(cl, name): age for cl, name, age in self.lost()}
        with self._lock:
            groups = sorted(self._groups.values(), key=lambda g: (g.cluster, g.name))
            self._note_losses(lost)
            events = tuple(sorted(self._events, key=lambda e: e.ts))
            lbs = sorted(self._lb.items())
        if context != "all":
            directors = {name for _, name in self._lb}
            if context in directors:  # a director: its balancers only
                groups = []
                lbs = [(k, v) for k, v in lbs if k[1] == context]
            else:  # a cluster
                groups = [g for g in groups if g.cluster == context]
                lbs = [(k, v) for k, v in lbs if k[0] == context]
        lb = tuple(v for key, views in lbs if key not in lost for v in views)
        clusters = sorted({g.cluster for g in groups})
        many = len(clusters) > 1
        nodes: list[NodeView] = []
        group_views: list[GroupView] = []
        alerts = []
        newest = 0.0
        for g in groups:
            gone = (g.cluster, g.collector) in lost
            shown = f"{g.cluster}/{g.name}" if many else g.name
            part = g.snap.nodes
            if gone:
                part = tuple(n._replace(liveness=Liveness.UNKNOWN) for n in part)
            if many:
                part = tuple(n._replace(group=shown) for n in part)
            nodes.extend(part)
            group_views.append(GroupView(shown, _unknown(g.snap.totals) if gone
                                         else g.snap.totals))
            alerts.extend(g.snap.alerts)
            newest = max(newest, g.snap.ts)
        nodes.sort(key=lambda n: (n.group, n.node_id))
        note = "; ".join(f"collector {name} ({cl}) lost {age:.0f} s ago: its nodes unknown"
                         for (cl, name), age in sorted(lost.items()))
        frozen = tuple(nodes)
        return Snapshot(
            ts=newest or time.time(), tick=tick, cluster="+".join(clusters) or "nats",
            nodes=frozen, groups=tuple(group_views),
            totals=_sum(gv.totals for gv in group_views), alerts=tuple(alerts), events=events,
            lb=lb,
            lb_note=note or "through NATS: read-only", readonly=True,
            _index=Snapshot.index_of(frozen))

    def _note_losses(self, lost: dict[tuple[str, str], float]) -> None:
        """An event when a collector is lost and when it is back (under the lock)."""
        now = time.time()
        for key in lost.keys() - self._lost:
            self._events.append(EventView(now, "collector", None,
                                          f"collector {key[1]} ({key[0]}) lost: its nodes "
                                          "unknown (not dead)"))
        for key in self._lost - lost.keys():
            self._events.append(EventView(now, "collector", None,
                                          f"collector {key[1]} ({key[0]}) back"))
        self._lost = set(lost)


_COUNTS = ("nodes", "alive", "suspect", "dead", "left", "conns")


def _unknown(t: Aggregate) -> Aggregate:
    """A lost collector's group totals: its nodes are counted, none of them as alive."""
    return Aggregate(nodes=t.nodes)


def _sum(parts: Iterable[Aggregate]) -> Aggregate:
    """Cluster totals from group totals: counts and rates add up, averages weighted by the
    nodes counted in them (alive + suspect), maxima the max."""
    items = list(parts)
    out: dict[str, Any] = {f.name: 0 for f in fields(Aggregate)}
    weight = 0
    for t in items:
        w = t.alive + t.suspect
        weight += w
        for f in fields(Aggregate):
            v = getattr(t, f.name)
            if f.name.endswith("_max"):
                out[f.name] = max(out[f.name], v)
            elif f.name.endswith("_avg"):
                out[f.name] += v * w
            else:
                out[f.name] += v
    for f in fields(Aggregate):
        if f.name.endswith("_avg"):
            out[f.name] = out[f.name] / weight if weight else 0.0
    return Aggregate(**out)


def subjects(prefix: str, cluster: str = "*") -> list[str]:
    """What a view subscribes to: every group of `cluster` ('*': of every cluster)."""
    return [f"{prefix}.{cluster}.*.snap", f"{prefix}.{cluster}.*.events",
            f"{prefix}.{cluster}._collector.*", f"{prefix}.{cluster}._director.*.lb"]


def scoped_subjects(prefix: str, cluster: str, groups: Sequence[str]) -> list[str]:
    """A view of only `groups` ([nats] groups): a user whose NATS permissions allow only those
    groups' subjects must not ask for the others (the server would refuse the whole
    subscription)."""
    if not groups:
        return subjects(prefix, cluster)
    return [f"{prefix}.{cluster}.{group_token(g)}.{kind}" for g in groups
            for kind in ("snap", "events")] + [f"{prefix}.{cluster}._collector.*"]


class NatsSource:
    """The UI's source for `ctop --nats URL`: ClusterView over its own NATS link; read-only
    (see REFUSAL). Charts from a shared VictoriaMetrics when given, else none (history_note)."""

    readonly = True
    records_actions = False
    lb = None

    def __init__(self, cfg: NatsConfig, *, cluster: str = "*", victoria_url: str = "") -> None:
        self.view = ClusterView()
        # the node detail's charts: from a shared VictoriaMetrics ([history] victoria_url),
        # which the collectors write to; else the detail says where the history is
        self.victoria = VictoriaReader(victoria_url, "") if victoria_url else None
        self.history_note = "" if victoria_url else HISTORY_NOTE
        self.scope = frozenset(cfg.groups)  # a scoped user's groups (empty: every group)
        self.link = NatsLink(cfg, name="ctop view").start()
        # a scoped user needs publish permission on its groups' `want` (docs/scaling.md);
        # without it the server refuses the request and the view waits for a keyframe
        prefix = cfg.subject_prefix
        self.view.ask = lambda cl, group: self.link.publish_soon(
            want_subject(prefix, cl, group), b"")
        for subject in scoped_subjects(cfg.subject_prefix, cluster, cfg.groups):
            self.link.subscribe(subject, self.view.receive)
        self._tick = 0
        self.context = "all"

    def contexts(self) -> list[tuple[str, str]]:
        return self.view.contexts()

    def use_context(self, name: str) -> None:
        """`:ctx NAME`: show only that cluster or director ("all": everything)."""
        self.context = name

    def snapshot(self) -> Snapshot:
        self._tick += 1
        snap = self.view.snapshot(self._tick, self.context)
        status = self.link.status
        if not status.connected:
            return replace(snap, lb_error=f"NATS {status.text()}")
        return snap

    def watch(self, node_id: str | None) -> None:
        pass  # collectors send no raw metrics (the compact form leaves them out)

    def history(
        self, node_id: str, metrics: Sequence[str], seconds: float
    ) -> dict[str, list[tuple[float, float]]]:
        cluster = self.view.cluster_of(node_id) if self.victoria is not None else None
        if self.victoria is None or cluster is None:
            return {m: [] for m in metrics}
        return self.victoria.history(node_id, metrics, seconds, cluster=cluster)

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        with self.view._lock:
            events = [e for e in self.view._events if e.node_id == node_id]
        return events[-limit:]

    async def lb_plan(self, request: Any) -> Any:
        raise RuntimeError(REFUSAL)

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Any]:
        raise RuntimeError(REFUSAL)

    async def lb_action(self, request: Any) -> Any:
        raise RuntimeError(REFUSAL)

    def close(self) -> None:
        self.link.close()
        if self.victoria is not None:
            self.victoria.close()
