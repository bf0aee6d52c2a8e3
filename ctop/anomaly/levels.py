"""Escalation: node anomaly -> group -> service, each a level of alert.

- node (warn): a metric far from the node's baseline for this hour of the week, or a cost
  per connection far from its group's (rules anomaly-node, anomaly-cost);
- group (crit): at least group_fraction of a group's live nodes anomalous at once
  (anomaly-group): a deploy, a bad upstream, a shared dependency;
- service (crit): a virtual service with anomalous real servers whose healthy serving servers
  (serving and not anomalous) are fewer than serving_below (anomaly-service): the load
  balancer keeps feeding sick servers and has too few good ones left.

AnomalyAlerts keeps which of them fire, like ctop.alerts.AlertEngine does for the rules: an
event and a hook notification when one starts or ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ctop.alerts import Notification
from ctop.anomaly.baseline import NodeAnomaly
from ctop.anomaly.config import AnomalyConfig
from ctop.anomaly.groups import CostOutlier
from ctop.snapshot import AlertView, EventView, LBServiceView, Liveness, NodeView, Severity

NODE, COST, GROUP, SERVICE = "anomaly-node", "anomaly-cost", "anomaly-group", "anomaly-service"
RULES = (NODE, COST, GROUP, SERVICE)
# The node table's anomaly column: the highest level touching a node ("group" above both).
LEVEL_LABEL = {NODE: "node", COST: "cost"}


@dataclass(frozen=True, slots=True)
class Breach:
    rule: str
    node_id: str  # "" for a group or a service
    severity: Severity
    message: str
    value: float | None


def escalate(anomalies: Sequence[NodeAnomaly], outliers: Sequence[CostOutlier],
             nodes: Iterable[NodeView], lb: Iterable[LBServiceView],
             cfg: AnomalyConfig) -> dict[str, Breach]:
    out: dict[str, Breach] = {}
    for a in anomalies:
        out[f"{NODE}:{a.node_id}:{a.metric}"] = Breach(
            NODE, a.node_id, Severity.WARN, a.describe(), a.score)
    for o in outliers:
        out[f"{COST}:{o.node_id}"] = Breach(COST, o.node_id, Severity.WARN, o.describe(),
                                            o.score)
    sick = {a.node_id for a in anomalies} | {o.node_id for o in outliers}
    live: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for n in nodes:
        if n.liveness is Liveness.ALIVE:
            live[n.group] += 1
            bad[n.group] += n.node_id in sick
    for group, count in bad.items():
        size = live[group]
        if count and size >= cfg.min_group and count / size >= cfg.group_fraction:
            out[f"{GROUP}:{group}"] = Breach(
                GROUP, "", Severity.CRIT,
                f"group {group}: {count} of {size} nodes anomalous at once "
                f"(>= {cfg.group_fraction:.0%})", count / size)
    for svc in lb:
        serving = [rs for rs in svc.servers if rs.state == "serving"]
        sick_serving = [rs for rs in serving if rs.node_id in sick]
        healthy = len(serving) - len(sick_serving)
        if sick_serving and healthy < cfg.serving_below:
            names = ", ".join(rs.node_id for rs in sick_serving)
            where = f"{svc.balancer} {svc.key}"
            out[f"{SERVICE}:{where}"] = Breach(
                SERVICE, "", Severity.CRIT,
                f"{where}: {healthy} healthy real server(s) serving (< {cfg.serving_below}); "
                f"anomalous: {names}", float(healthy))
    return out


@dataclass
class AnomalyAlerts:
    cluster: str = "cluster"
    _active: dict[str, AlertView] = field(default_factory=dict)

    def update(self, breaches: dict[str, Breach],
               now: float) -> tuple[list[EventView], list[Notification]]:
        events: list[EventView] = []
        notes: list[Notification] = []
        for key, b in breaches.items():
            old = self._active.get(key)
            view = AlertView(key, b.rule, b.node_id, b.severity, b.message,
                             old.since if old else now, b.value)
            self._active[key] = view
            if old is None:
                events.append(EventView(now, "alert", b.node_id, f"[{b.severity}] {b.message}"))
                notes.append(Notification("firing", view, self.cluster, now))
        for key in [k for k in self._active if k not in breaches]:
            gone = self._active.pop(key)
            events.append(EventView(now, "resolved", gone.node_id, f"resolved: {gone.message}"))
            notes.append(Notification("resolved", gone, self.cluster, now))
        return events, notes

    def firing(self) -> tuple[AlertView, ...]:
        return tuple(sorted(self._active.values(),
                            key=lambda v: (v.severity is not Severity.CRIT, v.since, v.key)))


def node_levels(alerts: Iterable[AlertView], nodes: Iterable[NodeView]) -> dict[str, str]:
    """node id -> the anomaly column's label: its own anomaly, or its group's alert."""
    out: dict[str, str] = {}
    groups: set[str] = set()
    for a in alerts:
        if a.rule == GROUP:
            groups.add(a.key.split(":", 1)[1])
        elif a.rule in (NODE, COST) and a.node_id and out.get(a.node_id) != "node":
            out[a.node_id] = LEVEL_LABEL[a.rule]
    if groups:
        for n in nodes:
            if n.group in groups:
                out[n.node_id] = "group"
    return out
