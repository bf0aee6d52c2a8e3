"""The node rules of ctop.alerts, judged only for the nodes whose view changed.

A node's view (ctop.snapshot.NodeView) is immutable, and the model keeps an unchanged node's
view object from one snapshot to the next, so what a node breaches can only change when its
view is a new object; time alone changes nothing a node rule reads except a held
`process_restarted` alert (ctop/procalerts.py), and such a node is judged every tick until its
hold passes. `for` durations and `repeat` are kept by ctop.alerts from the breaches' first
moments, not by judging again. So each tick costs one identity comparison per node (in C,
against the views judged last) and a judgement per changed node, with the rules compiled once
into accessors (no rule lookups per node).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from itertools import compress
from operator import is_not, itemgetter
from typing import TYPE_CHECKING, Any

from agentd.metrics import METRICS
from ctop import procalerts
from ctop.snapshot import Liveness, NodeView, Severity

if TYPE_CHECKING:
    from ctop.alerts import Rule

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
# NodeView attributes of the metrics a view shows (agentd/metrics.py); anything else is looked
# up in the raw report. Rules may name the registry's alertable metrics.
NODE_FIELDS = {m.name: m.view for m in METRICS if m.view}

# (rule, node id ("" for the cluster), level, message, value)
Breach = tuple["Rule", str, Severity, str, "float | None"]
Found = tuple[tuple[str, Breach], ...]  # one node's (key, breach), in rule order

_STATUS = itemgetter(1)  # of a ServiceView
_ALIVE = Liveness.ALIVE


def metric_getter(metric: str) -> Callable[[NodeView], Any]:
    """NodeView -> the metric's value: the view's field if it shows it, else the raw report's."""
    attr = NODE_FIELDS.get(metric)
    if attr:
        return itemgetter(NodeView._fields.index(attr))  # a tuple index, not a property
    return lambda node: node.metrics.get(metric)


class NodeJudge:
    """The node rules, compiled once: what one node breaches now."""

    def __init__(self, rules: Sequence[Rule], restarts: procalerts.Restarts) -> None:
        self.restarts = restarts
        self.by_state: dict[Liveness, list[tuple[int, Rule]]] = {}
        self.metrics: list[tuple[int, Rule, Callable[[NodeView], Any],
                                 Callable[[float, float], bool]]] = []
        self.services: list[tuple[int, Rule]] = []
        self.process: list[tuple[int, Rule]] = []
        for i, rule in enumerate(rules):
            if rule.kind == "liveness" and rule.liveness is not None:
                self.by_state.setdefault(rule.liveness, []).append((i, rule))
            elif rule.kind == "metric":
                self.metrics.append((i, rule, metric_getter(rule.metric), OPS[rule.op]))
            elif rule.kind == "service":
                self.services.append((i, rule))
            elif rule.kind in procalerts.KINDS:
                self.process.append((i, rule))

    def __call__(self, node: NodeView, now: float) -> tuple[Found, bool]:
        """(the node's breaches, whether they may change with time alone)."""
        nid, liveness = node.node_id, node.liveness
        found: list[tuple[int, str, Breach]] = [
            (i, f"{rule.name}:{nid}", (rule, nid, rule.severity, f"{nid} is {liveness}", None))
            for i, rule in self.by_state.get(liveness, ())
        ]
        if liveness is not _ALIVE:  # dependency: no metric or service alerts for a node not alive
            return tuple((k, b) for _, k, b in found), False
        for i, rule, get, cmp in self.metrics:
            value = get(node)
            if not isinstance(value, int | float):
                continue
            if rule.crit is not None and cmp(value, rule.crit):
                level, limit = Severity.CRIT, rule.crit
            elif rule.warn is not None and cmp(value, rule.warn):
                level, limit = Severity.WARN, rule.warn
            else:
                continue
            text = f"{rule.metric} on {nid} is {value:.1f} ({rule.op} {limit:g})"
            found.append((i, f"{rule.name}:{nid}", (rule, nid, level, text, value)))
        if self.services and "fail" in map(_STATUS, node.services):
            for i, rule in self.services:
                for s in node.services:
                    if s.status == "fail" and rule.service in ("*", s.name):
                        text = f"{s.name} on {nid} failing: {s.detail or 'no detail'}"
                        found.append((i, f"{rule.name}:{nid}:{s.name}",
                                      (rule, nid, rule.severity, text, s.latency_ms)))
        held = False
        if self.process and node.metrics.get("watched"):
            for i, rule in self.process:
                for subject, text, value in self._process(rule, node, now):
                    held = held or rule.kind == "process_restarted"
                    found.append((i, f"{rule.name}:{nid}:{subject}",
                                  (rule, nid, rule.severity, text, value)))
        if len(found) > 1:
            found.sort(key=_RULE_ORDER)  # stable: a rule's own breaches keep their order
        return tuple((k, b) for _, k, b in found), held

    def _process(self, rule: Rule, node: NodeView, now: float) -> list[procalerts.Breach]:
        if rule.kind == "process_missing":
            return procalerts.missing(node, rule.process)
        if rule.kind == "process_count":
            return procalerts.count(node, rule.process)
        return self.restarts.breaches(node, rule.process, now, rule.hold)


_RULE_ORDER = itemgetter(0)


class NodeBreaches:
    """Every node's breaches as of the view they were judged on."""

    def __init__(self, judge: NodeJudge) -> None:
        self.judge = judge
        self.views: dict[str, NodeView] = {}  # node id -> the view judged last
        self._found: dict[str, Found] = {}  # only nodes that breach something
        self._held: set[str] = set()  # nodes to judge again each tick (time-based breaches)
        self._last: Sequence[NodeView] = ()  # the nodes of the last update, in their order

    def retarget(self, judge: NodeJudge) -> None:
        """New rules: every node is judged again at the next update, against what it
        breached under the old ones."""
        self.judge = judge
        self.views.clear()
        self._last = ()

    def update(
        self, nodes: Sequence[NodeView], now: float
    ) -> tuple[list[tuple[str, Breach]], list[str]]:
        """Judge the nodes whose view changed (and those held by time); return the breaches
        new or changed since the last update, and the keys of those that ended."""
        last, views = self._last, self.views
        if len(last) == len(nodes):
            # unchanged views are the very objects at the same places: found in C
            at = list(compress(range(len(nodes)), map(is_not, nodes, last)))
            changed = [nodes[i] for i in at]
            reordered = any(nodes[i].node_id != last[i].node_id for i in at)
        else:
            changed = [v for v in nodes if views.get(v.node_id) is not v]
            reordered = True
        self._last = nodes if isinstance(nodes, tuple) else tuple(nodes)  # a list may change
        added: list[tuple[str, Breach]] = []
        gone: list[str] = []
        for v in changed:
            views[v.node_id] = v
            self._judge(v, now, added, gone)
        if reordered:  # nodes may have left the snapshot: their alerts end
            present = {v.node_id for v in nodes}
            for nid in [n for n in views if n not in present]:
                del views[nid]
                self._held.discard(nid)
            for nid in [n for n in self._found if n not in present]:
                gone += [k for k, _ in self._found.pop(nid)]
        if self._held:
            fresh = {v.node_id for v in changed}
            for nid in [n for n in self._held if n not in fresh]:
                self._judge(views[nid], now, added, gone)
        return added, gone

    def _judge(self, v: NodeView, now: float, added: list[tuple[str, Breach]],
               gone: list[str]) -> None:
        nid = v.node_id
        new, held = self.judge(v, now)
        if held:
            self._held.add(nid)
        else:
            self._held.discard(nid)
        old = self._found.get(nid, ())
        if new == old:
            return
        if new:
            self._found[nid] = new
        else:
            del self._found[nid]
        before = dict(old)
        after = dict(new)
        gone += [k for k in before if k not in after]
        added += [(k, b) for k, b in new if before.get(k) != b]
