"""The cluster model: node registry, liveness, and the per-tick snapshot.

Messages from the collector update mutable per-node state; `tick()` judges liveness on each
node's own interval and `snapshot()` freezes everything into a `ctop.model.Snapshot`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentd.wire import Join, Leave, Message, Report
from ctop.config import LivenessConfig
from ctop.model import (
    Aggregate,
    EventView,
    GroupView,
    Liveness,
    NodeView,
    ServiceView,
    Snapshot,
)

CPU_HISTORY = 60  # reports kept in memory per node for sparklines


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
    liveness: Liveness = Liveness.ALIVE
    metrics: dict[str, Any] = field(default_factory=dict)
    services: tuple[ServiceView, ...] = ()
    cpu_history: deque[float] = field(default_factory=lambda: deque(maxlen=CPU_HISTORY))
    restarts: int = 0
    source: str = ""  # address the datagrams come from


class ClusterModel:
    def __init__(self, name: str = "cluster", liveness: LivenessConfig | None = None) -> None:
        self.name = name
        self.liveness = liveness or LivenessConfig()
        self.nodes: dict[str, NodeState] = {}
        self.received = 0

    # -- ingest ---------------------------------------------------------------------------

    def apply(self, msg: Message, now: float, source: str = "") -> list[EventView]:
        """Fold one verified message into the model; return the events it caused."""
        self.received += 1
        h = msg.header
        node = self.nodes.get(h.node)
        events: list[EventView] = []
        interval = msg.interval if isinstance(msg, Report | Join) else 1.0
        if node is None:
            node = NodeState(h.node, h.boot, interval, now, now, hostname=h.node, source=source)
            self.nodes[h.node] = node
            events.append(EventView(now, "join", h.node, f"{h.node} joined from {source}"))
        elif node.boot != h.boot:
            node.boot = h.boot
            node.restarts += 1
            node.cpu_history.clear()
            events.append(EventView(now, "restart", h.node, f"{h.node} restarted (new boot)"))
        node.last_seen = now
        node.source = source or node.source
        if isinstance(msg, Report):
            node.interval = msg.interval
            if msg.group:
                node.group = msg.group
            node.metrics = dict(msg.metrics)
            node.services = tuple(
                ServiceView(s.name, s.status, s.latency_ms, s.detail) for s in msg.services
            )
            node.cpu_history.append(msg.metrics.get("cpu_percent", 0.0))
            if not node.mem_total:
                node.mem_total = int(msg.metrics.get("mem_total", 0))
        elif isinstance(msg, Join):
            node.hostname = msg.hostname
            node.group = msg.group
            node.addresses = msg.addresses
            node.cores = msg.cores
            node.mem_total = msg.mem_total
            node.version = msg.version
            node.interval = msg.interval
        if isinstance(msg, Leave):
            if node.liveness is not Liveness.LEFT:
                events.append(self._set(node, Liveness.LEFT, now, msg.reason or "left"))
        elif node.liveness is not Liveness.ALIVE:
            events.append(self._set(node, Liveness.ALIVE, now, "reporting again"))
        return events

    def _set(self, node: NodeState, state: Liveness, now: float, why: str) -> EventView:
        before = node.liveness
        node.liveness = state
        kind = "leave" if state is Liveness.LEFT else "state"
        return EventView(now, kind, node.node_id, f"{node.node_id} {before} → {state} ({why})")

    # -- liveness -------------------------------------------------------------------------

    def tick(self, now: float) -> list[EventView]:
        """Judge liveness on missed intervals, each node on its own interval."""
        suspect, dead = self.liveness.suspect_after, self.liveness.dead_after
        events = []
        for node in self.nodes.values():
            if node.liveness is Liveness.LEFT:
                continue
            missed = (now - node.last_seen) / node.interval
            state = Liveness.DEAD if missed >= dead else (
                Liveness.SUSPECT if missed >= suspect else Liveness.ALIVE)
            if state is not node.liveness and state is not Liveness.ALIVE:
                silent = now - node.last_seen
                events.append(self._set(node, state, now, f"silent for {silent:.1f} s"))
        return events

    def forget(self, node_id: str) -> bool:
        return self.nodes.pop(node_id, None) is not None

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self, now: float, tick: int, **extra: Any) -> Snapshot:
        nodes = sorted(self.nodes.values(), key=lambda n: (n.group, n.node_id))
        total_conns = sum(
            int(n.metrics.get("tcp_established", 0)) for n in nodes if _counts(n.liveness)
        )
        views = tuple(_view(n, total_conns) for n in nodes)
        groups: dict[str, list[NodeView]] = {}
        for v in views:
            groups.setdefault(v.group, []).append(v)
        return Snapshot(
            ts=now,
            tick=tick,
            cluster=self.name,
            nodes=views,
            groups=tuple(GroupView(g, aggregate(vs)) for g, vs in groups.items()),
            totals=aggregate(views),
            received=self.received,
            _index=Snapshot.index_of(views),
            **extra,
        )


def _counts(state: Liveness) -> bool:
    """Alive and suspect nodes count towards resource use; dead and left ones do not."""
    return state is Liveness.ALIVE or state is Liveness.SUSPECT


def _view(n: NodeState, total_conns: int) -> NodeView:
    m = n.metrics
    conns = int(m.get("tcp_established", 0))
    load = m.get("load") or (0.0,)
    return NodeView(
        node_id=n.node_id,
        hostname=n.hostname or n.node_id,
        group=n.group,
        liveness=n.liveness,
        last_seen=n.last_seen,
        boot=n.boot,
        interval=n.interval,
        addresses=n.addresses,
        cores=n.cores or len(m.get("cpu_cores", ())),
        mem_total=n.mem_total,
        version=n.version,
        cpu=m.get("cpu_percent", 0.0),
        mem=m.get("mem_percent", 0.0),
        swap=m.get("swap_percent", 0.0),
        load1=load[0],
        net_rx_bps=m.get("net_rx_bps", 0),
        net_tx_bps=m.get("net_tx_bps", 0),
        conns=conns,
        procs=int(m.get("procs", 0)),
        threads=int(m.get("threads", 0)),
        users=int(m.get("users", 0)),
        disk_root=m.get("disk_root_percent", 0.0),
        cpu_history=tuple(n.cpu_history),
        services=n.services,
        load_share=conns / total_conns if total_conns and _counts(n.liveness) else 0.0,
        restarts=n.restarts,
        metrics=m,
    )


def aggregate(views: Iterable[NodeView]) -> Aggregate:
    counts = dict.fromkeys(Liveness, 0)
    n = 0
    cpu_sum = cpu_max = mem_sum = mem_max = rx = tx = load = 0.0
    conns = 0
    for v in views:
        counts[v.liveness] += 1
        if not _counts(v.liveness):
            continue
        n += 1
        cpu_sum += v.cpu
        mem_sum += v.mem
        cpu_max = max(cpu_max, v.cpu)
        mem_max = max(mem_max, v.mem)
        rx += v.net_rx_bps
        tx += v.net_tx_bps
        conns += v.conns
        load += v.load1
    return Aggregate(
        nodes=sum(counts.values()),
        alive=counts[Liveness.ALIVE],
        suspect=counts[Liveness.SUSPECT],
        dead=counts[Liveness.DEAD],
        left=counts[Liveness.LEFT],
        cpu_avg=cpu_sum / n if n else 0.0,
        cpu_max=cpu_max,
        mem_avg=mem_sum / n if n else 0.0,
        mem_max=mem_max,
        net_rx_bps=rx,
        net_tx_bps=tx,
        conns=conns,
        load_avg=load / n if n else 0.0,
    )
