"""Per group: a node whose cost per connection is far from its group's median.

Cost per connection is the advice model's (ctop/lb/advice.py): cores in use per active
connection (or per new connection/s, the service's basis). A node that burns 3x the CPU of its
peers per connection is sick (a bad disk, a runaway, a noisy neighbour), even when the load
balancer, feeding it a third of the connections, keeps its CPU looking normal. Only the load
balancer's view of each server's load can show this.

Nodes are compared within a cohort: the same group serving the same virtual service (so the
connections are alike). Nodes in no service are not judged: without the load balancer's load
share a node's TCP connections say too little about the work it is given.
The score is a robust z of log(cost) (a cost twice the median is as far as half of it), with a
floor on the spread so a cohort of identical nodes does not fire on small differences.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from ctop.anomaly.baseline import MAD_TO_SIGMA, baseline_of
from ctop.anomaly.config import AnomalyConfig
from ctop.lb.advice import AdvicePolicy, cost_per_connection
from ctop.snapshot import LBServiceView, Liveness, NodeView

LOG_SPREAD_FLOOR = 0.1  # MAD floor of ln(cost): ~10 % differences are never far


@dataclass(frozen=True, slots=True)
class CostOutlier:
    node_id: str
    group: str
    cohort: str  # the virtual service compared within
    cost: float  # cores per connection
    median_cost: float
    cpu: float
    median_cpu: float
    score: float

    def describe(self) -> str:
        return (f"{self.node_id} costs {self.cost / self.median_cost:.1f}x its group "
                f"{self.group}'s median CPU per connection ({self.cohort}); its CPU "
                f"{self.cpu:.0f}% (group median {self.median_cpu:.0f}%)")


def node_loads(lb: Iterable[LBServiceView]) -> dict[str, tuple[str, float]]:
    """node id -> (service key, its load in the service's basis), the first service that
    names it."""
    out: dict[str, tuple[str, float]] = {}
    for svc in lb:
        rate = svc.basis == "rate"
        for rs in svc.servers:
            if rs.node_id and rs.state == "serving" and rs.node_id not in out:
                out[rs.node_id] = (svc.key, rs.conns_per_s if rate else float(rs.active_conns))
    return out


def cost_outliers(nodes: Iterable[NodeView], lb: Iterable[LBServiceView],
                  cfg: AnomalyConfig, policy: AdvicePolicy | None = None) -> list[CostOutlier]:
    pol = policy or AdvicePolicy()
    loads = node_loads(lb)
    cohorts: dict[tuple[str, str], list[tuple[NodeView, float]]] = defaultdict(list)
    for node in nodes:
        if node.liveness is not Liveness.ALIVE or node.cores <= 0:
            continue
        served = loads.get(node.node_id)
        if served is None:
            continue
        cohort, load = served
        cost = cost_per_connection(node.cores, 1.0 - node.cpu / 100.0, load, pol)
        if cost is not None:
            cohorts[(node.group, cohort)].append((node, cost))
    out: list[CostOutlier] = []
    for (group, cohort), members in cohorts.items():
        if len(members) < cfg.min_group:
            continue
        logs = [math.log(c) for _, c in members]
        base = baseline_of(logs)
        spread = MAD_TO_SIGMA * max(base.mad, LOG_SPREAD_FLOOR)
        cpu_median = baseline_of([n.cpu for n, _ in members]).median
        for (node, cost), lc in zip(members, logs, strict=True):
            z = abs(lc - base.median) / spread
            if z >= cfg.cost_threshold:
                out.append(CostOutlier(node.node_id, group, cohort, cost,
                                       math.exp(base.median), node.cpu, cpu_median, z))
    return out
