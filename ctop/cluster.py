"""The cluster model: node registry, liveness, and the per-tick snapshot.

Messages and beacons from the collector update mutable per-node state; `tick()` judges
liveness on each node's own announced pattern (its beacon gap, or its report interval for an
agent without beacons) and `snapshot()` freezes everything into a `ctop.snapshot.Snapshot`.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter, countOf, itemgetter
from typing import Any

from agentd.beacon import Beacon
from agentd.metrics import LIST, METRICS
from agentd.protocol import (
    UNSENT,
    Join,
    Leave,
    Message,
    ProbeInfo,
    RawReport,
    Rejected,
    Report,
)
from ctop.config import LivenessConfig
from ctop.ingest.decode import decode_report
from ctop.snapshot import (
    Aggregate,
    EventView,
    GroupView,
    Liveness,
    NodeView,
    ServiceView,
    Snapshot,
)

CPU_HISTORY = 60  # reports kept in memory per node for sparklines
LOSS_WINDOW = 128  # sequence numbers kept per node to measure datagram loss
# Report intervals without a beacon after which a beaconing node is judged on its reports
# again (its beacons stopped getting through while its reports still do).
BEACON_LAPSE = 5.0
# Metrics an agent leaves out of a report while they have not changed (agentd/slowfacts.py):
# the node keeps its last value.
CARRIED = ("top_procs", "tcp_states", "watched", "arp")
_NO_EVENTS: tuple[EventView, ...] = ()  # what nearly every message causes (no list per call)


@dataclass(slots=True)
class NodeState:
    node_id: str
    boot: int
    interval: float
    first_seen: float
    last_seen: float
    hostname: str = ""
    group: str = ""
    addresses: tuple[str, ...] = ()
    cores: int = 0
    mem_total: int = 0
    version: str = ""
    probes: tuple[ProbeInfo, ...] = ()  # from the join: what each service check checks
    liveness: Liveness = Liveness.ALIVE
    # The announced pattern: longest gap between the agent's datagrams from its beacons (0 =
    # no beacons: judged on `interval`), and the silences that make it suspect and dead.
    gap: float = 0.0
    last_beacon: float = 0.0
    suspect_s: float = float("inf")
    dead_s: float = float("inf")
    metrics: Mapping[str, Any] = field(default_factory=dict)
    # As the wire delivered them: the views show these very tuples (ServiceView is
    # ServiceStatus), so a report's services cost the snapshot nothing.
    services: tuple[ServiceView, ...] = ()
    cpu_history: deque[float] = field(default_factory=lambda: deque(maxlen=CPU_HISTORY))
    restarts: int = 0
    source: str = ""  # address the datagrams come from
    seqs: deque[int] = field(default_factory=lambda: deque(maxlen=LOSS_WINDOW))
    # The newest report's body, not yet checked (RawReport from the deferred receiver):
    # snapshot() checks and folds it in, so of the reports a node sends between two ticks
    # only the newest pays for the metric checks and conversion.
    pending: RawReport | None = None
    view: NodeView | None = None  # this node in the last snapshot
    changed: bool = True  # anything view() reads changed since `view` was made
    config: str = ""  # its pushed configuration, as ctop/grouppush.py describes it
    # When tick() next looks at it (its entry in ClusterModel._wheel; inf: none): never later
    # than its silence could change its state, so tick() looks at due nodes only.
    due: float = float("inf")


class ClusterModel:
    def set_config(self, node_id: str, config: str) -> None:
        """The node's pushed configuration as the UI shows it (ctop/grouppush.py)."""
        node = self.nodes.get(node_id)
        if node is not None and node.config != config:
            node.config = config
            node.changed = True

    def __init__(self, name: str = "cluster", liveness: LivenessConfig | None = None) -> None:
        self.name = name
        self.liveness = liveness or LivenessConfig()
        self.nodes: dict[str, NodeState] = {}
        self.received = 0
        # Report bodies refused when folded in (deferred checks), by reason; each is also
        # taken back out of `received` and passed to on_reject(rejected, source).
        self.rejected: Counter[str] = Counter()
        self.on_reject: Callable[[Rejected, str], None] | None = None
        # Nodes in snapshot order, their group ranges and id index, kept while no node
        # joins, leaves the registry or changes group: no sort of 10,000 nodes per tick.
        self._sorted: list[NodeState] | None = None
        self._ranges: list[tuple[str, int, int]] = []
        self._index: Mapping[str, int] = {}
        # (when queued, node) for each node whose pending body waits to be checked, oldest
        # first: fold_some() works through them while the socket is idle, and through those
        # queued long enough ago while it is busy, so the tick's fold() finds little left.
        self._to_fold: deque[tuple[float, NodeState]] = deque()
        # The nodes tick() looks at, by due moment: a timing wheel of slots of `check_every`
        # (slot number -> [(when, node)]) and a heap of the slot numbers in use. A node's entry
        # is never later than the moment its silence makes it suspect, dead or forgotten (its
        # `due`): messages only move that moment later, so an entry found early is filed again.
        # One list append per node per silence window, no per-node heap: at 60,000 nodes that
        # each report every second, a heap of nodes cost as much as looking at every node.
        self._wheel: dict[int, list[tuple[float, NodeState]]] = {}
        self._slots: list[int] = []
        self._slot_s = max(0.01, self.liveness.check_every)
        self._last_tick = 0.0  # `now` of the last tick(): a later one earlier is a clock step
        # Nodes with a failed probe result taken in since the engine last looked: it publishes
        # them between ticks, so automation counts a deciding result within moments.
        self.failures: set[str] = set()

    # -- ingest ---------------------------------------------------------------------------

    def apply(self, msg: Message, now: float, source: str = "") -> Sequence[EventView]:
        """Fold one verified message into the model; return the events it caused."""
        self.received += 1
        h = msg.header
        node = self.nodes.get(h.node)
        kind = type(msg)
        if (
            (kind is RawReport or kind is Report) and node is not None and node.boot == h.boot
            and node.liveness is Liveness.ALIVE
        ):
            # The steady state, nearly every message: a known, alive node reports again.
            # Kept flat and allocation-free; it runs 10,000+ times a second. Liveness, loss
            # and the interval are per message; the body only matters as the newest one.
            node.last_seen = now
            node.seqs.append(h.seq)
            node.changed = True
            if source:
                node.source = source
            if msg.interval != node.interval:
                node.interval = msg.interval
                self._limits(node)
            if node.gap and now - node.last_beacon > BEACON_LAPSE * node.interval:
                node.gap = 0.0  # beacons stopped coming: back to the report timing
                self._limits(node)
            if kind is RawReport:
                if node.pending is None:
                    self._to_fold.append((now, node))
                node.pending = msg  # replaces an unchecked older one: never looked at
                return _NO_EVENTS
            node.pending = None
            self._take(node, msg)  # type: ignore[arg-type]
            return _NO_EVENTS
        if kind is RawReport:
            # Registration, restart, or back from suspect/dead: rare, so checked right away,
            # and a bad body changes nothing, as with Verifier.verify.
            decoded = decode_report(msg)  # type: ignore[arg-type]
            if type(decoded) is Rejected:
                self._refuse(decoded, source or (node.source if node else ""))
                return []
            msg = decoded  # type: ignore[assignment]
        events: list[EventView] = []
        interval = msg.interval if type(msg) is Report or type(msg) is Join else 1.0
        if node is None:
            node = NodeState(h.node, h.boot, interval, now, now, hostname=h.node, source=source)
            self._limits(node)
            self.nodes[h.node] = node
            self._sorted = None
            events.append(EventView(now, "join", h.node, f"{h.node} joined from {source}"))
        elif node.boot != h.boot:
            node.boot = h.boot
            node.gap = 0.0  # the new boot announces its own pattern
            self._limits(node)
            node.restarts += 1
            node.cpu_history.clear()
            node.seqs.clear()
            events.append(EventView(now, "restart", h.node, f"{h.node} restarted (new boot)"))
        node.last_seen = now
        node.seqs.append(h.seq)
        node.source = source or node.source
        node.changed = True
        if isinstance(msg, Report):
            node.interval = msg.interval
            self._limits(node)
            node.pending = None
            self._take(node, msg)
        elif isinstance(msg, Join):
            node.hostname = msg.hostname
            if msg.group != node.group:
                node.group = msg.group
                self._sorted = None
            node.addresses = msg.addresses
            node.cores = msg.cores
            node.mem_total = msg.mem_total
            node.version = msg.version
            node.interval = msg.interval
            self._limits(node)
            node.probes = msg.probes
        if isinstance(msg, Leave):
            if node.liveness is not Liveness.LEFT:
                events.append(self._set(node, Liveness.LEFT, now, msg.reason or "left"))
        elif node.liveness is not Liveness.ALIVE:
            events.append(self._set(node, Liveness.ALIVE, now, "reporting again"))
        return events

    def _take(self, node: NodeState, msg: Report) -> None:
        """A checked report's content (not its liveness facts) into the node."""
        group = msg.group
        if group and group != node.group:
            node.group = group
            self._sorted = None
        m = msg.metrics
        old = node.metrics
        for name in CARRIED:  # left out while unchanged: keep the last value
            if name not in m and name in old:
                m[name] = old[name]  # type: ignore[index]
        node.metrics = m  # built by the verifier for this message alone: no copy needed
        services = msg.services
        if services is UNSENT and msg.indexed is not None:  # named from the node's join
            services = msg.indexed.named(tuple([p.name for p in node.probes])) or UNSENT
        if services is not UNSENT:
            node.services = services
            for svc in services:
                if svc.status == "fail":
                    self.failures.add(node.node_id)
                    break
        node.cpu_history.append(m.get("cpu_percent", 0.0))
        if not node.mem_total:
            node.mem_total = int(m.get("mem_total", 0))

    def beacon(self, b: Beacon, now: float) -> list[EventView]:
        """A verified liveness beacon: the node is there (nothing else changes)."""
        node = self.nodes.get(b.node)
        if node is None or node.boot != b.boot:
            return []
        if node.seqs and b.seq <= node.seqs[-1]:
            # Already seen or older: a replay. The receiver's BeaconVerifier refuses these
            # in-process; receiver workers each check only what reached them, so a beacon
            # replayed from another source port (another worker) could otherwise keep a
            # crashed node alive and count twice in its loss.
            return []
        node.last_seen = node.last_beacon = now
        node.seqs.append(b.seq)
        if b.gap != node.gap:
            node.gap = b.gap
            self._limits(node)
        if node.liveness is Liveness.ALIVE or node.liveness is Liveness.LEFT:
            return []
        return [self._set(node, Liveness.ALIVE, now, "beaconing again")]

    def _limits(self, node: NodeState) -> None:
        """The silences after which `node` is suspect and dead, from its announced pattern."""
        live = self.liveness
        if node.gap:
            node.suspect_s = node.gap * live.beacon_suspect_after
            node.dead_s = node.gap * live.beacon_dead_after
        else:
            node.suspect_s = node.interval * live.suspect_after
            node.dead_s = node.interval * live.dead_after
        self._watch(node)

    def _watch(self, node: NodeState) -> None:
        """Make sure tick() looks at `node` no later than its silence could change its state
        (a shorter limit, a new state): an earlier entry on the heap, if it has none as early."""
        state = node.liveness
        if state is Liveness.ALIVE:
            when = node.last_seen + node.suspect_s
        elif state is Liveness.SUSPECT:
            when = node.last_seen + node.dead_s
        elif state is Liveness.LEFT:
            when = node.last_seen + self.liveness.forget_left_after
        else:  # dead: only a message changes that, and it makes the node alive (_set)
            return
        if when < node.due:
            node.due = when
            slot = int(when // self._slot_s)
            bucket = self._wheel.get(slot)
            if bucket is None:
                bucket = self._wheel[slot] = []
                heapq.heappush(self._slots, slot)
            bucket.append((when, node))

    def _refuse(self, rejected: Rejected, source: str) -> None:
        self.received -= 1
        self.rejected[str(rejected.reason)] += 1
        if self.on_reject is not None:
            self.on_reject(rejected, source)

    def fold_some(self, budget: int, queued_before: float | None = None) -> int:
        """Fold up to `budget` pending bodies, oldest first; called while the socket is idle,
        and while it is busy with `queued_before`: only bodies of nodes queued before then
        (a node reporting faster is still checked once per that age, its newest body).
        Returns how many were checked."""
        queue, take, done = self._to_fold, self._take, 0
        while queue and done < budget:
            if queued_before is not None and queue[0][0] >= queued_before:
                break
            node = queue.popleft()[1]
            raw = node.pending
            if raw is None:  # folded already, or superseded by a checked report
                continue
            node.pending = None
            done += 1
            msg = decode_report(raw)
            if type(msg) is Rejected:
                self._refuse(msg, node.source)
            else:
                take(node, msg)  # type: ignore[arg-type]
        return done

    def fold(self) -> None:
        """Check and take in each node's pending report body (the newest it sent since the
        last fold). A body that fails is counted as rejected (`bad_field`) and the node keeps
        its previous metrics; its liveness, loss and `last_seen` stand, as the report was
        genuine, fresh and in order. snapshot() calls this first."""
        # Every node with a pending body is in the queue (apply() files it with its first):
        # the queue, not all the nodes, is what to go through.
        queue, self._to_fold = self._to_fold, deque()
        take, nodes = self._take, self.nodes
        for _, node in queue:
            raw = node.pending
            if raw is None or nodes.get(node.node_id) is not node:
                continue  # folded already, superseded by a checked report, or forgotten
            node.pending = None
            msg = decode_report(raw)
            if type(msg) is Rejected:
                self._refuse(msg, node.source)
            else:
                take(node, msg)  # type: ignore[arg-type]

    def _set(self, node: NodeState, state: Liveness, now: float, why: str) -> EventView:
        before = node.liveness
        node.liveness = state
        node.changed = True
        if state is Liveness.LEFT:
            node.suspect_s = 0.0  # tick() looks at it each time, to forget it in time
        elif before is Liveness.LEFT:
            self._limits(node)
        self._watch(node)
        kind = "leave" if state is Liveness.LEFT else "state"
        return EventView(now, kind, node.node_id, f"{node.node_id} {before} → {state} ({why})")

    # -- liveness -------------------------------------------------------------------------

    def _refile(self) -> None:
        """File every node again from its last_seen. Needed when the clock steps back: a
        message only files its node when that is earlier than its entry, and an alive node's
        entry was filed by the old clock, so a node that died after the step would be judged
        as late as the step was long."""
        self._wheel.clear()
        self._slots.clear()
        for node in self.nodes.values():
            node.due = float("inf")
            self._watch(node)

    def tick(self, now: float) -> list[EventView]:
        """Judge liveness on silence, each node on its own announced pattern (see _limits).
        Runs ten times a second: it looks only at the nodes filed in the wheel's slots that
        began by `now` (see _watch), not at every node."""
        if now < self._last_tick - self._slot_s:
            self._refile()  # the wall clock stepped back (NTP): entries are filed too late
        self._last_tick = now
        forget_after = self.liveness.forget_left_after
        events = []
        gone = []
        wheel, slots, again, inf = self._wheel, self._slots, [], float("inf")
        slot_s = self._slot_s
        last = now // slot_s  # the slot `now` is in: it and all before it are looked at
        while slots and slots[0] <= last:
            for when, node in wheel.pop(heapq.heappop(slots)):
                if when != node.due:
                    continue  # superseded by an earlier entry, or forgotten (due: inf)
                node.due = inf
                again.append(node)  # filed again after this pass (maybe in this slot)
                silent = now - node.last_seen
                if silent < node.suspect_s:
                    continue  # it spoke since it was filed, or its moment is later in the slot
                if node.liveness is Liveness.LEFT:
                    if silent >= forget_after:
                        gone.append(node.node_id)
                    continue
                state = Liveness.DEAD if silent >= node.dead_s else Liveness.SUSPECT
                if state is not node.liveness:
                    events.append(self._set(node, state, now, f"silent for {silent:.1f} s"))
        alive = Liveness.ALIVE
        for node in again:  # (_set above may have filed it already)
            if node.liveness is alive and node.due == inf:
                # Nearly all: an alive node that spoke since it was filed. _watch, inlined:
                # at 60,000 nodes reporting each second 24,000 of these a second.
                when = node.due = node.last_seen + node.suspect_s
                slot = int(when // slot_s)
                bucket = wheel.get(slot)
                if bucket is None:
                    bucket = wheel[slot] = []
                    heapq.heappush(slots, slot)
                bucket.append((when, node))
            else:
                self._watch(node)
        for node_id in gone:  # said goodbye long enough ago: dropped (its history stays)
            self.forget(node_id)
            events.append(EventView(now, "forget", node_id, f"{node_id} dropped after leaving"))
        return events

    def forget(self, node_id: str) -> bool:
        self._sorted = None
        node = self.nodes.pop(node_id, None)
        if node is None:
            return False
        node.due = float("inf")  # its entries in the wheel are void (tick() skips them)
        return True

    # -- snapshot -------------------------------------------------------------------------

    def patched(self, snap: Snapshot, node_ids: Iterable[str], now: float) -> Snapshot:
        """`snap` with the views of `node_ids` (whose liveness changed) made again and the
        state counts of the totals and groups moved with them: what a change of state costs
        between two ticks is O(changed nodes), not a snapshot of the whole cluster. Sums and
        averages, and nodes that are not in `snap` yet, wait for the next snapshot()."""
        nodes = list(snap.nodes)
        index = snap._index
        moved: Counter[tuple[str | None, Liveness]] = Counter()  # (group or None, state)
        for node_id in node_ids:
            i = index.get(node_id)
            n = self.nodes.get(node_id)
            if i is None or n is None or nodes[i].node_id != node_id:
                continue
            old = nodes[i]
            new = nodes[i] = n.view = _view(n)
            if old.liveness is not new.liveness and old.group == new.group:
                for where in (None, old.group):
                    moved[(where, old.liveness)] -= 1
                    moved[(where, new.liveness)] += 1
        if not moved:
            return replace(snap, ts=now, nodes=tuple(nodes))

        def counts(agg: Aggregate, where: str | None) -> Aggregate:
            return replace(agg, **{
                str(state): getattr(agg, str(state)) + moved[(where, state)]
                for state in Liveness if moved[(where, state)]
            })

        return replace(
            snap, ts=now, nodes=tuple(nodes), totals=counts(snap.totals, None),
            groups=tuple(GroupView(g.name, counts(g.totals, g.name)) for g in snap.groups),
        )

    def snapshot(self, now: float, tick: int, **extra: Any) -> Snapshot:
        self.fold()
        nodes = self._sorted
        if nodes is None:
            nodes = self._sorted = sorted(self.nodes.values(), key=_order)
            self._ranges = _group_ranges(nodes)
            self._index = Snapshot.index_of(tuple(nodes))  # reads node_id only
        # A node's view is made again only when something it shows changed (a report, its
        # state, its configuration): the others keep the very same NodeView object, so what
        # reads snapshots can skip them by identity. A new node has `changed` set.
        view = _view
        for n in nodes:
            if n.changed:
                n.view = view(n)
                n.changed = False
        views = tuple(map(_VIEW_OF, nodes))
        sums = [_sums(views[a:b]) for _, a, b in self._ranges]
        return Snapshot(
            ts=now,
            tick=tick,
            cluster=self.name,
            nodes=views,
            groups=tuple(GroupView(g, _of_sums(t))
                         for (g, _, _), t in zip(self._ranges, sums, strict=True)),
            totals=_of_sums(_added(sums)),  # one pass over the nodes, not two
            received=self.received,
            _index=self._index,
            **extra,
        )


def _order(n: NodeState) -> tuple[str, str]:
    return n.group, n.node_id


def _group_ranges(nodes: list[NodeState]) -> list[tuple[str, int, int]]:
    """(group, start, end) of each group's run in `nodes`, which are sorted by group."""
    out: list[tuple[str, int, int]] = []
    start = 0
    for i in range(1, len(nodes) + 1):
        if i == len(nodes) or nodes[i].group != nodes[start].group:
            out.append((nodes[start].group, start, i))
            start = i
    return out


# _view() builds a NodeView with one tuple.__new__, every field by position and written out
# once at import (no list, no loop, no call per metric: it runs for every changed node on
# every tick, 60,000 a second in a large cluster). Each field's expression, in NodeView's
# order: `n` is the NodeState, `m` its metrics, `s` its sequence numbers.
_STATE_FIELDS = {
    "node_id": "n.node_id",
    "hostname": "n.hostname or n.node_id",
    "group": "n.group",
    "liveness": "n.liveness",
    "last_seen": "n.last_seen",
    "boot": "n.boot",
    "interval": "n.interval",
    "addresses": "n.addresses",
    "cores": "n.cores or len(m.get('cpu_cores', ()))",
    "mem_total": "n.mem_total",
    "version": "n.version",
    "cpu_history": "tuple(n.cpu_history)",
    "services": "n.services",  # as decoded: ServiceView is ServiceStatus, immutable, shared
    "restarts": "n.restarts",
    "metrics": "m",
    # Every message carries the next sequence number, so the gaps are the lost datagrams.
    "loss": "1.0 - len(s) / (s[-1] - s[0] + 1) if len(s) >= 8 else 0.0",
    "source": "n.source",
    "probes": "n.probes",
    "config": "n.config",
}
# The NodeView fields that show a metric (the registry's `view`, agentd/metrics.py): each the
# metric's latest value (a list's first element), or the field's default until the node sent
# it; int fields (an int default) cast, as a count is shown.
_VIEWED = {m.view: m for m in METRICS if m.view}
if set(_STATE_FIELDS) & set(_VIEWED) or set(_STATE_FIELDS) | set(_VIEWED) != set(
        NodeView._fields):
    raise ImportError("ctop.snapshot.NodeView changed its fields: update ctop.cluster's "
                      "_STATE_FIELDS (or the registry's views)")


def _metric(field_name: str, sent: bool) -> str:
    """The expression of a viewed metric's field; `sent`: the metric is in `m` (a subscript,
    no call), else m.get with the field's default."""
    metric = _VIEWED[field_name]
    default = NodeView._field_defaults[field_name]
    if sent:
        got = f"m[{metric.name!r}]" + ("[0]" if metric.kind == LIST else "")
    else:
        got = f"m.get({metric.name!r}, {default!r})"
        if metric.kind == LIST:
            got = f"({got} or ({default!r},))[0]"
    return f"int({got})" if type(default) is int else got


def _view_source() -> str:
    """_view's source: the view of a node whose report has every viewed metric (nearly
    all: agents send them all), and with the defaults when one is missing or empty."""
    def fields(sent: bool) -> str:
        return ",\n        ".join(
            _STATE_FIELDS[f] if f in _STATE_FIELDS else _metric(f, sent)
            for f in NodeView._fields)

    return (
        "def _view(n):\n"
        "    m = n.metrics\n"
        "    s = n.seqs\n"
        "    try:\n"
        f"        return _new(NodeView, (\n        {fields(True)},\n    ))\n"
        "    except (KeyError, IndexError, TypeError):  # one not sent, an empty list\n"
        f"        return _new(NodeView, (\n        {fields(False)},\n    ))\n"
    )


_made: dict[str, Any] = {"_new": tuple.__new__, "NodeView": NodeView}
exec(_view_source(), _made)  # source made above from NodeView and the registry, not input
_view: Callable[[NodeState], NodeView] = _made["_view"]
_VIEW_OF = attrgetter("view")

_LIVENESS = itemgetter(NodeView._fields.index("liveness"))
# The fields _sums reads, by position (literal indexes below: no attribute or global lookup
# per node); fail at import, not with wrong sums, if NodeView's fields move.
if tuple(NodeView._fields.index(f) for f in (
        "liveness", "cpu", "mem", "load1", "net_rx_bps", "net_tx_bps", "conns",
        )) != (3, 11, 12, 14, 15, 16, 17):
    raise ImportError("ctop.snapshot.NodeView moved its fields: update ctop.cluster._sums")


# What an Aggregate is made of, kept as sums so that the totals are the groups' added up:
# (nodes, alive, suspect, dead, left, cpu sum, cpu max, mem sum, mem max, rx, tx, conns, load sum)
_Sums = tuple[int, int, int, int, int, float, float, float, float, float, float, int, float]


def _sums(views: list[NodeView] | tuple[NodeView, ...]) -> _Sums:
    # Runs over every node once a tick (per group). The states counted in C; the sums in one
    # loop with literal indexes: at 60,000 nodes about two thirds of the former column-wise
    # zip(*map(attrgetter)) with sum()/max(), which made a tuple per node and per column.
    alive = countOf(map(_LIVENESS, views), Liveness.ALIVE)
    if alive == len(views):
        live, suspect, dead, left = views, 0, 0, 0
    else:  # (countOf passes in C: a Counter hashes each state, ~3x their cost)
        suspect = countOf(map(_LIVENESS, views), Liveness.SUSPECT)
        dead = countOf(map(_LIVENESS, views), Liveness.DEAD)
        left = countOf(map(_LIVENESS, views), Liveness.LEFT)
        live = views if alive + suspect == len(views) else [
            v for v in views if v[3] is Liveness.ALIVE or v[3] is Liveness.SUSPECT]
    cpu = cpu_max = mem = mem_max = rx = tx = load = 0.0
    conns = 0
    for v in live:
        c = v[11]
        m = v[12]
        cpu += c
        mem += m
        if c > cpu_max:
            cpu_max = c
        if m > mem_max:
            mem_max = m
        load += v[14]
        rx += v[15]
        tx += v[16]
        conns += v[17]
    return (len(views), alive, suspect, dead, left, cpu, cpu_max, mem, mem_max, rx, tx, conns,
            load)


def _added(parts: list[_Sums]) -> _Sums:
    """The sums of the union of disjoint sets of nodes (the totals from the groups')."""
    if not parts:
        return (0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
    c = list(zip(*parts, strict=True))
    return (sum(c[0]), sum(c[1]), sum(c[2]), sum(c[3]), sum(c[4]), sum(c[5], 0.0), max(c[6]),
            sum(c[7], 0.0), max(c[8]), sum(c[9], 0.0), sum(c[10], 0.0), sum(c[11]),
            sum(c[12], 0.0))


def _of_sums(t: _Sums) -> Aggregate:
    nodes, alive, suspect, dead, left, cpu, cpu_max, mem, mem_max, rx, tx, conns, load = t
    n = alive + suspect
    return Aggregate(
        nodes=nodes, alive=alive, suspect=suspect, dead=dead, left=left,
        cpu_avg=cpu / n if n else 0.0, cpu_max=cpu_max,
        mem_avg=mem / n if n else 0.0, mem_max=mem_max,
        net_rx_bps=rx, net_tx_bps=tx, conns=conns,
        load_avg=load / n if n else 0.0,
    )


def aggregate(views: Iterable[NodeView]) -> Aggregate:
    """Resource use across `views` (alive and suspect nodes; counts of every state)."""
    return _of_sums(_sums(views if isinstance(views, list | tuple) else list(views)))
