"""The node rules of ctop.alerts, judged only for the nodes whose view changed.

A node's view (ctop.snapshot.NodeView) is immutable, and the model keeps an unchanged node's
view object from one snapshot to the next, so what a node breaches can only change when its
view is a new object; time alone changes nothing a node rule reads except a held
`process_restarted` alert (ctop/procalerts.py), and such a node is judged every tick until its
hold passes. `for` durations and `repeat` are kept by ctop.alerts from the breaches' first
moments, not by judging again. So each tick costs one identity comparison per node (in C,
against the views judged last) and the changed nodes judged in bulk (NodeJudge.many: each rule
one C-level or generated pass over them, exact checks only for the nodes it picks).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import attrgetter, is_, is_not, itemgetter, methodcaller
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


def _has_fail(services: Sequence[Any]) -> bool:
    return "fail" in map(_STATUS, services)


_NODE_ID = attrgetter("node_id")
_LIVENESS = attrgetter("liveness")
_SERVICES = attrgetter("services")
_WATCHED = methodcaller("get", "watched")
_METRICS = attrgetter("metrics")

Judged = dict[str, list[tuple[int, str, Breach]]]  # node id -> (rule index, key, breach)


class NodeJudge:
    """The node rules, compiled once: what a list of nodes breaches now.

    Judged rule by rule over all the nodes given, each rule's test mapped over them in C
    (a view field against a limit, the services' statuses, the watched processes' presence);
    only the nodes a test picks get the rule's exact check and message. A node that breaches
    nothing (nearly all) costs one C-level step per rule."""

    def __init__(self, rules: Sequence[Rule], restarts: procalerts.Restarts) -> None:
        self.restarts = restarts
        self.by_state: dict[Liveness, list[tuple[int, Rule]]] = {}
        self.metrics: list[tuple[int, Rule, str | None, Callable[[NodeView], Any]]] = []
        self.services: list[tuple[int, Rule]] = []
        self.process: list[tuple[int, Rule]] = []
        self._picker: Callable[[list[NodeView]], list[NodeView]] | None = None
        for i, rule in enumerate(rules):
            if rule.kind == "liveness" and rule.liveness is not None:
                self.by_state.setdefault(rule.liveness, []).append((i, rule))
            elif rule.kind == "metric":
                attr = NODE_FIELDS.get(rule.metric)
                get = (attrgetter(attr) if attr else
                       lambda node, name=rule.metric: node.metrics.get(name))
                self.metrics.append((i, rule, attr, get))
            elif rule.kind == "service":
                self.services.append((i, rule))
            elif rule.kind in procalerts.KINDS:
                self.process.append((i, rule))

    def many(self, nodes: Sequence[NodeView], now: float) -> tuple[Judged, set[str]]:
        """What `nodes` breach, by node id (only nodes that breach something), and the nodes
        whose breaches may change with time alone (a held process restart)."""
        out: Judged = {}
        states = list(map(_LIVENESS, nodes))
        alive = list(compress(nodes, map(is_, states, repeat(_ALIVE))))
        if self.by_state:
            for v, state in zip(nodes, states, strict=True):
                for i, rule in self.by_state.get(state, ()):
                    nid = v.node_id
                    out.setdefault(nid, []).append((i, f"{rule.name}:{nid}", (
                        rule, nid, rule.severity, f"{nid} is {state}", None)))
        # dependency: no metric, service or process alerts for a node not alive
        suspects = self._suspects(alive)
        for i, rule, attr, get in self.metrics:
            for v in (suspects if attr else alive):
                value = get(v)
                if not isinstance(value, int | float):
                    continue
                if rule.crit is not None and OPS[rule.op](value, rule.crit):
                    level, limit = Severity.CRIT, rule.crit
                elif rule.warn is not None and OPS[rule.op](value, rule.warn):
                    level, limit = Severity.WARN, rule.warn
                else:
                    continue
                nid = v.node_id
                text = f"{rule.metric} on {nid} is {value:.1f} ({rule.op} {limit:g})"
                out.setdefault(nid, []).append((i, f"{rule.name}:{nid}",
                                                (rule, nid, level, text, value)))
        if self.services:
            for v in compress(alive, map(_has_fail, map(_SERVICES, alive))):
                nid = v.node_id
                for i, rule in self.services:
                    for s in v.services:
                        if s.status == "fail" and rule.service in ("*", s.name):
                            text = f"{s.name} on {nid} failing: {s.detail or 'no detail'}"
                            out.setdefault(nid, []).append((i, f"{rule.name}:{nid}:{s.name}", (
                                rule, nid, rule.severity, text, s.latency_ms)))
        held: set[str] = set()
        if self.process:
            for v in compress(alive, map(_WATCHED, map(_METRICS, alive))):
                nid = v.node_id
                for i, rule in self.process:
                    for subject, text, value in self._process(rule, v, now):
                        if rule.kind == "process_restarted":
                            held.add(nid)
                        out.setdefault(nid, []).append((i, f"{rule.name}:{nid}:{subject}", (
                            rule, nid, rule.severity, text, value)))
        return out, held

    def _suspects(self, alive: list[NodeView]) -> list[NodeView]:
        """The nodes whose view field passes a limit of a metric rule on one: a single pass,
        a list comprehension written out once per rule set (tuple indexes against constants,
        which CPython specializes); every rule's exact check follows for these only."""
        tests = [f"v[{NodeView._fields.index(attr)}] {rule.op} {float(limit)!r}"
                 for _, rule, attr, _ in self.metrics if attr
                 for limit in (rule.warn, rule.crit) if limit is not None]
        if not tests:
            return []
        if self._picker is None:
            made: dict[str, Any] = {}
            exec(f"def pick(alive):\n    return [v for v in alive if {' or '.join(tests)}]\n",
                 made)  # source made from parsed rules: field indexes, operators, floats
            self._picker = made["pick"]
        try:
            return self._picker(alive)  # type: ignore[no-any-return]
        except TypeError:  # not a number somewhere: each node checked as it is
            return alive

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
        views.update(zip(map(_NODE_ID, changed), changed, strict=True))
        gone: list[str] = []
        found = self._found
        if reordered:  # nodes may have left the snapshot: their alerts end
            present = set(map(_NODE_ID, nodes))
            for nid in [n for n in views if n not in present]:
                del views[nid]
                self._held.discard(nid)
            for nid in [n for n in found if n not in present]:
                gone += [k for k, _ in found.pop(nid)]
        ids = set(map(_NODE_ID, changed))
        if self._held:  # judged again: their breaches may end with time alone
            again = self._held - ids
            changed += [views[nid] for nid in again]
            ids |= again
        judged, held = self.judge.many(changed, now)
        self._held = (self._held - ids) | held
        added: list[tuple[str, Breach]] = []
        for nid in sorted(judged.keys() | (found.keys() & ids)):
            hits = judged.get(nid)
            if hits is None:
                new: Found = ()
            else:
                if len(hits) > 1:
                    hits.sort(key=_RULE_ORDER)  # stable: a rule's own breaches keep order
                new = tuple([(k, b) for _, k, b in hits])
            old = found.get(nid, ())
            if new == old:
                continue
            if new:
                found[nid] = new
            else:
                del found[nid]
            before, after = dict(old), dict(new)
            gone += [k for k in before if k not in after]
            added += [(k, b) for k, b in new if before.get(k) != b]
        return added, gone
