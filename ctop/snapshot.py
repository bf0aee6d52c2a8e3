"""Immutable snapshots of the cluster: what the engine publishes and every view renders.

The engine (ctop.engine) builds one `Snapshot` per tick. The UI, `ctop status --json` and the
Prometheus exporter only read snapshots; none of them computes cluster facts of its own.
Nothing here imports Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from agentd.protocol import ServiceStatus
from ctop.pair.view import PairView

EMPTY: Mapping[str, Any] = MappingProxyType({})


class Liveness(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # missed a few intervals
    DEAD = "dead"  # missed many intervals
    LEFT = "left"  # said goodbye (leave message)
    # seen through NATS, and its collector went silent (ctop.nats.view): not known to be dead,
    # so nothing may act on it as dead
    UNKNOWN = "unknown"


class Severity(StrEnum):
    WARN = "warn"
    CRIT = "crit"


# One service check result of a node: the very tuple the agent's report was decoded into
# (agentd.protocol.ServiceStatus: name, status, latency_ms, detail, seq), shared by the report,
# the node's view and every snapshot after it rather than copied into a class of its own per
# service per tick (7 copies a node, 60,000 nodes a second: bench/ingest_cpu.py). A tuple: packs
# as a msgpack array as it is. `seq` is the probe's own result number (None: an older agent):
# load-balancer automation counts each result once however often it looks (ctop.lb.health).
ServiceView = ServiceStatus


class NodeView(NamedTuple):
    """One node as the operator sees it: latest metrics plus facts from its join.

    A NamedTuple rather than a frozen dataclass: the engine builds one per changed node per
    tick (10,000 a second in a large cluster) and a frozen dataclass of this many fields costs
    ten times a tuple to construct (bench/ingest.py; figures in docs/performance.md).
    """

    node_id: str
    hostname: str
    group: str
    liveness: Liveness
    last_seen: float  # director's clock, Unix seconds
    boot: int
    interval: float
    addresses: tuple[str, ...] = ()
    cores: int = 0
    mem_total: int = 0
    version: str = ""
    cpu: float = 0.0  # percent
    mem: float = 0.0  # percent
    swap: float = 0.0  # percent
    load1: float = 0.0
    net_rx_bps: float = 0.0
    net_tx_bps: float = 0.0
    conns: int = 0  # TCP established
    procs: int = 0
    threads: int = 0
    users: int = 0
    disk_root: float = 0.0  # percent
    cpu_history: tuple[float, ...] = ()  # oldest first, one per report, bounded
    services: tuple[ServiceView, ...] = ()
    # (Its share of the cluster's connections is the snapshot's: Snapshot.load_share. As a
    # field it moved whenever any node's connections did, so no view outlived a tick.)
    restarts: int = 0  # boots seen after the first
    metrics: Mapping[str, Any] = EMPTY  # latest report
    loss: float = 0.0  # share of the node's last datagrams that never arrived (sequence gaps)
    # For the load-balancer service (ctop.lb.service), which maps real servers to nodes and
    # picks the checks that judge them from snapshots alone:
    source: str = ""  # the address the node's datagrams come from
    probes: tuple[Any, ...] = ()  # agentd.protocol.ProbeInfo of its join: each check's type, port
    # The configuration pushed to its group (ctop/grouppush.py): "" = its group has none,
    # else "VERSION current", "VERSION NOT CURRENT" or "old agent NOT CURRENT".
    config: str = ""


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Resource use across a set of nodes (alive and suspect nodes only)."""

    nodes: int = 0
    alive: int = 0
    suspect: int = 0
    dead: int = 0
    left: int = 0
    cpu_avg: float = 0.0
    cpu_max: float = 0.0
    mem_avg: float = 0.0
    mem_max: float = 0.0
    net_rx_bps: float = 0.0  # sums
    net_tx_bps: float = 0.0
    conns: int = 0
    load_avg: float = 0.0

    @property
    def unknown(self) -> int:
        """Nodes counted but neither alive, suspect, dead nor left: a NATS view's nodes of a
        lost collector (ctop.nats.view). Derived, not a field: the wire keeps its form."""
        return max(0, self.nodes - self.alive - self.suspect - self.dead - self.left)


@dataclass(frozen=True, slots=True)
class GroupView:
    name: str
    totals: Aggregate


@dataclass(frozen=True, slots=True)
class AlertView:
    key: str  # rule name + subject, stable while the alert fires
    rule: str
    node_id: str  # "" for cluster-wide alerts
    severity: Severity
    message: str
    since: float
    value: float | None = None
    # Why no hook runs for it (ctop.mute): "" | "silenced" (a silence, a maintenance window) |
    # "held" (its node is in maintenance: an operator drained it). Shown dimmed, still firing.
    muted: str = ""
    muted_by: str = ""  # the silence's author, the operator who drained, "window"
    muted_until: float = 0.0  # when it ends (0: when the node is restored)
    muted_note: str = ""  # the silence's reason, "in maintenance since …", the window


@dataclass(frozen=True, slots=True)
class EventView:
    ts: float
    kind: str  # join | leave | restart | state | alert | resolved | action
    node_id: str
    message: str


@dataclass(frozen=True, slots=True)
class RealServerView:
    """An LVS/HAProxy real server with its node and its share of the load."""

    key: str
    address: str
    port: int
    weight: int
    state: str  # ServerState value: serving | drained | quiesced | maint | down
    active_conns: int
    inactive_conns: int
    conns_per_s: float
    node_id: str = ""  # the agent node that announced this address, if any
    conn_share: float = 0.0  # share of the service's load, by its basis (0..1)
    weight_share: float = 0.0  # share of the service's weight (0..1)
    ratio: float | None = None  # conn_share / weight_share; 1.0 = balanced; None if weight 0
    advised_weight: int | None = None
    forward: str = ""
    health: str = ""  # what judges it for auto-quiesce and how it fares ("" = automation off)
    drift: str = ""  # how the balancer differs from the journal's intent ("" = it does not)


@dataclass(frozen=True, slots=True)
class LBServiceView:
    key: str  # "TCP 10.0.0.1:80" or a HAProxy backend name
    balancer: str  # "ipvs" | "haproxy"
    protocol: str
    scheduler: str
    servers: tuple[RealServerView, ...]
    imbalance: float = 0.0  # 0 = perfectly balanced against weights
    basis: str = "conns"  # what the shares count: "conns" (active) or "rate" (new per second)
    # server key -> the last LB rounds' (conn_share, weight_share), oldest first: the LB pane's
    # sparkline. Per service, not per server: one new view a round, not one per server.
    share_history: Mapping[str, tuple[tuple[float, float], ...]] = field(
        default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class Snapshot:
    ts: float
    tick: int
    cluster: str
    nodes: tuple[NodeView, ...]  # sorted by (group, node_id)
    groups: tuple[GroupView, ...]
    totals: Aggregate
    alerts: tuple[AlertView, ...] = ()  # firing, most severe and oldest first
    events: tuple[EventView, ...] = ()  # most recent last, bounded
    lb: tuple[LBServiceView, ...] = ()
    lb_note: str = ""  # e.g. "no load balancer configured: monitoring only"
    lb_error: str = ""  # last error reading the balancers
    imbalance: float = 0.0  # cluster imbalance index across LB services (0 = balanced)
    drops: Mapping[str, int] = field(default_factory=lambda: EMPTY)  # receiver rejects by reason
    received: int = 0  # valid messages since start
    readonly: bool = False
    # "" while history is written, else "history failing since … (reason)" (ctop.store)
    history_error: str = ""
    history_failing_since: float = 0.0  # Unix seconds, 0 while history is written
    # receiver rejects by reason -> the sources sending most of them, [[address, count], ...]
    drop_sources: Mapping[str, tuple[tuple[str, int], ...]] = field(
        default_factory=lambda: EMPTY)
    past: bool = False  # read from the history database (ctop --at, T): a moment gone by
    pair: PairView | None = None  # the director pair's VRRP roles ([pair]; None: not set)
    _index: Mapping[str, int] = field(default_factory=lambda: EMPTY, repr=False, compare=False)

    def node(self, node_id: str) -> NodeView | None:
        i = self._index.get(node_id)
        return None if i is None else self.nodes[i]

    def load_share(self, view: NodeView) -> float:
        """`view`'s share of the connections of this snapshot's alive and suspect nodes
        (0..1; 0 for a node in any other state): its `conns` over `totals.conns`."""
        total = self.totals.conns
        if not total or (view.liveness is not Liveness.ALIVE
                         and view.liveness is not Liveness.SUSPECT):
            return 0.0
        return view.conns / total

    @staticmethod
    def index_of(nodes: tuple[NodeView, ...]) -> Mapping[str, int]:
        return MappingProxyType({n.node_id: i for i, n in enumerate(nodes)})
