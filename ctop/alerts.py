"""Alert rules and their evaluation each tick (the hooks that tell the outside world about
the notifications: ctop.hooks).

Rules come from `[[alert]]` tables in ctop.toml:

    [[alert]]                      # a metric threshold with a duration
    name = "cpu-high"
    when = "cpu_percent > 90 for 30s"
    crit = 98                      # optional critical level, same comparison
    repeat = "10m"                 # notify again while firing (mon's alertevery)

    [[alert]]                      # a service check failing
    name = "http-down"
    service = "http"               # or "*" for every service
    for = "5s"

    [[alert]]                      # liveness
    name = "node-dead"
    liveness = "dead"              # suspect | dead | left
    severity = "crit"

    [[alert]]                      # a load-balancer service (keepalived's quorum)
    name = "web-capacity"
    lb_service = "web"             # a service key (HAProxy backend, "TCP 10.0.0.1:80") or "*"
    serving_below = 3              # fewer real servers serving than this
    imbalance_above = 0.4          # and/or: load shares this far from the weights (0..1)
    for = "30s"

    [[alert]]                      # a watched process (agentd.toml `watch`): ctop/procalerts.py
    name = "nginx-gone"
    process_missing = "nginx"      # or process_count / process_restarted (+ hold = "10m")

    [[alert]]                      # DR/TUN real servers' VIP and ARP sysctls: ctop/arpcheck.py
    name = "lvs-arp"
    arp_check = true

Dependencies: metric and service alerts are not raised (and resolve) for a node that is not
alive, so a dead node produces one alert, not one per service.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentd.metrics import ALERTABLE
from ctop import arpcheck, procalerts
from ctop.alert_nodes import NODE_FIELDS, OPS, Breach, NodeBreaches, NodeJudge
from ctop.parse import TableError, parse_duration
from ctop.snapshot import AlertView, EventView, LBServiceView, Liveness, NodeView, Severity

log = logging.getLogger(__name__)

_WHEN = re.compile(r"^\s*([\w:.-]+)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*(?:for\s+(\S+))?\s*$")


class RuleError(TableError):
    """An [[alert]] table is wrong; `key` names the key."""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # "metric" | "service" | "liveness" | "lb" | "arp" | procalerts.KINDS
    metric: str = ""
    op: str = ">"
    warn: float | None = None
    crit: float | None = None
    duration: float = 0.0
    service: str = ""
    liveness: Liveness | None = None
    severity: Severity = Severity.WARN  # for service, liveness and lb rules
    repeat: float = 0.0  # seconds; 0 = notify once
    serving_below: int | None = None  # lb: fewer real servers serving than this
    imbalance_above: float | None = None  # lb: imbalance index above this
    drift: bool = False  # lb: a real server differs from the journal's intent
    process: str = ""  # process_*: a watch label or "*" (ctop/procalerts.py)
    hold: float = 0.0  # process_restarted: seconds it fires after a restart

    def value(self, node: NodeView) -> float | None:
        attr = NODE_FIELDS.get(self.metric)
        v = getattr(node, attr) if attr else node.metrics.get(self.metric)
        return v if isinstance(v, int | float) else None

    def level(self, value: float) -> Severity | None:
        cmp = OPS[self.op]
        if self.crit is not None and cmp(value, self.crit):
            return Severity.CRIT
        if self.warn is not None and cmp(value, self.warn):
            return Severity.WARN
        return None


DEFAULT_RULES: tuple[Mapping[str, Any], ...] = (
    {"name": "node-suspect", "liveness": "suspect", "severity": "warn"},
    {"name": "node-dead", "liveness": "dead", "severity": "crit", "repeat": "30m"},
    {"name": "node-left", "liveness": "left", "severity": "warn"},
    {"name": "service-failing", "service": "*", "for": "3s", "severity": "crit"},
    {"name": "cpu-high", "when": "cpu_percent > 90 for 30s", "crit": 98},
    {"name": "memory-high", "when": "mem_percent > 90 for 30s", "crit": 97},
    {"name": "disk-full", "when": "disk_root_percent > 85 for 60s", "crit": 95},
    # a virtual service nobody serves is an outage, whatever its nodes say
    {"name": "lb-no-server", "lb_service": "*", "serving_below": 1, "severity": "crit"},
    # the balancer lost a change ctop made (reload, hand edit, failover): re-apply or accept
    {"name": "lb-drift", "lb_service": "*", "drift": True, "severity": "warn"},
    # watched processes (agentd.toml `watch`) and DR/TUN real servers' ARP setup
    {"name": "process-missing", "process_missing": "*", "severity": "crit"},
    {"name": "process-count", "process_count": "*", "for": "10s", "severity": "warn"},
    {"name": "process-restarted", "process_restarted": "*", "severity": "warn"},
    {"name": "lvs-arp", "arp_check": True, "severity": "crit"},
)


def _bad(key: str, problem: str) -> RuleError:
    return RuleError(f"key '{key}': {problem}", key)


def _duration_of(table: Mapping[str, Any], key: str) -> float:
    try:
        return parse_duration(table.get(key, 0))
    except ValueError as e:
        raise _bad(key, str(e)) from None


def parse_rule(table: Mapping[str, Any]) -> Rule:
    """One [[alert]] table -> Rule. Raises RuleError naming the offending key."""
    known = {"name", "when", "metric", "op", "warn", "crit", "for", "service", "liveness",
             "severity", "repeat", "lb_service", "serving_below", "imbalance_above", "drift",
             *EXTRA_KEYS}
    for key in table:
        if key not in known:
            raise _bad(key, f"unknown key (known: {', '.join(sorted(known))})")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("name", "every alert needs a name")
    duration = _duration_of(table, "for")
    repeat = _duration_of(table, "repeat")
    severity = table.get("severity", "warn")
    if severity not in ("warn", "crit"):
        raise _bad("severity", f"expected warn or crit, got {severity!r}")
    if "liveness" in table:
        try:
            state = Liveness(table["liveness"])
        except ValueError:
            raise _bad("liveness", "expected suspect, dead or left") from None
        return Rule(name, "liveness", liveness=state, severity=Severity(severity), repeat=repeat)
    if "lb_service" in table:
        return _lb_rule(table, name, duration, Severity(severity), repeat)
    extra = _extra_rule(table, name, duration, Severity(severity), repeat)
    if extra is not None:
        return extra
    if "service" in table:
        if not isinstance(table["service"], str):
            raise _bad("service", "expected a service name or \"*\"")
        return Rule(name, "service", service=table["service"], duration=duration,
                    severity=Severity(severity), repeat=repeat)
    metric, op, warn = table.get("metric"), table.get("op", ">"), table.get("warn")
    if "when" in table:
        m = _WHEN.match(str(table["when"]))
        if not m:
            raise _bad("when", f"expected 'METRIC > NUMBER for DURATION', got {table['when']!r}")
        metric, op, warn = m.group(1), m.group(2), float(m.group(3))
        if m.group(4):
            try:
                duration = parse_duration(m.group(4))
            except ValueError as e:
                raise _bad("when", str(e)) from None
    if not isinstance(metric, str) or not metric:
        raise RuleError("needs 'when', 'service' or 'liveness' (or 'metric' with 'warn')")
    if metric not in ALERTABLE:
        raise _bad("when" if "when" in table else "metric",
                   f"unknown metric {metric!r} (known: {', '.join(ALERTABLE)})")
    if op not in OPS:
        raise _bad("op", f"expected one of {' '.join(OPS)}, got {op!r}")
    crit = table.get("crit")
    for key, v in (("warn", warn), ("crit", crit)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise _bad(key, f"expected a number, got {v!r}")
    if warn is None and crit is None:
        raise RuleError("a metric rule needs a 'warn' or 'crit' level")
    return Rule(name, "metric", metric=metric, op=op, warn=warn, crit=crit,
                duration=duration, repeat=repeat)


def _lb_rule(
    table: Mapping[str, Any], name: str, duration: float, severity: Severity, repeat: float
) -> Rule:
    service, below, above = (table["lb_service"], table.get("serving_below"),
                             table.get("imbalance_above"))
    if not isinstance(service, str) or not service:
        raise _bad("lb_service", "expected a service key or \"*\"")
    drift = table.get("drift", False)
    if not isinstance(drift, bool):
        raise _bad("drift", f"expected true or false, got {drift!r}")
    if below is None and above is None and not drift:
        raise RuleError("an lb_service rule needs 'serving_below', 'imbalance_above' "
                        "and/or 'drift = true'")
    if below is not None and (isinstance(below, bool) or not isinstance(below, int)
                              or below < 1):
        raise _bad("serving_below", f"expected a whole number >= 1, got {below!r}")
    if above is not None and (isinstance(above, bool) or not isinstance(above, int | float)
                              or not 0 <= above < 1):
        raise _bad("imbalance_above", f"expected a number in 0..1, got {above!r}")
    return Rule(name, "lb", service=service, duration=duration, severity=severity,
                repeat=repeat, serving_below=below,
                imbalance_above=None if above is None else float(above), drift=drift)


# Rule kinds of their own modules (watched processes, DR/TUN ARP sanity): their table keys, one
# parser and one evaluation each, registered here so other kinds merge beside them.
EXTRA_KEYS = (*procalerts.KINDS, "hold", "arp_check")


def _extra_rule(
    table: Mapping[str, Any], name: str, duration: float, severity: Severity, repeat: float
) -> Rule | None:
    kinds = [k for k in procalerts.KINDS if k in table]
    if len(kinds) > 1:
        raise _bad(kinds[1], f"one rule, one kind: {kinds[0]} is already given")
    if "hold" in table and kinds != ["process_restarted"]:
        raise _bad("hold", "only a process_restarted rule has a hold time")
    if kinds:
        kind = kinds[0]
        label = table[kind]
        if not isinstance(label, str) or not label:
            raise _bad(kind, 'expected a watched process (its label in agentd.toml `watch`) '
                       'or "*"')
        hold = _duration_of(table, "hold") if "hold" in table else procalerts.DEFAULT_HOLD
        if kind == "process_restarted" and hold <= 0:
            raise _bad("hold", "expected a duration > 0, e.g. \"10m\"")
        return Rule(name, kind, process=label, duration=duration, severity=severity,
                    repeat=repeat, hold=hold if kind == "process_restarted" else 0.0)
    if "arp_check" in table:
        if table["arp_check"] is not True:
            raise _bad("arp_check", f"expected true, got {table['arp_check']!r}")
        return Rule(name, "arp", duration=duration, severity=severity, repeat=repeat)
    return None


def parse_rules(tables: Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    """[[alert]] tables -> rules; none (or an empty list): DEFAULT_RULES."""
    rules = []
    for i, table in enumerate(tables or DEFAULT_RULES):
        try:
            rules.append(parse_rule(table))
        except RuleError as e:
            raise RuleError(f"[[alert]] #{i + 1} ({table.get('name', '?')}): {e}",
                            e.key) from None
    return rules


@dataclass(frozen=True, slots=True)
class Notification:
    """What hooks receive: a firing, repeated or resolved alert."""

    state: str  # "firing" | "repeat" | "resolved"
    alert: AlertView
    cluster: str
    ts: float


@dataclass(slots=True)
class _Active:
    view: AlertView
    notified: float


@dataclass
class AlertEngine:
    """Judges the rules each tick and keeps which alerts fire.

    Node rules are judged only for nodes whose view changed (ctop.alert_nodes); the cluster's
    rules (load-balancer services, ARP checks) every tick. What then changes with time alone is
    kept in two heaps: breaches waiting out their `for` duration (by the moment they are due)
    and firing alerts with a `repeat` (by their next notification), so a tick costs the
    changed nodes and the due entries, not every breach."""

    rules: list[Rule]
    cluster: str = "cluster"
    _active: dict[str, _Active] = field(default_factory=dict)
    _pending: dict[str, float] = field(default_factory=dict)  # key -> first breach
    _restarts: procalerts.Restarts = field(default_factory=procalerts.Restarts)
    _breaches: dict[str, Breach] = field(default_factory=dict, init=False)  # breaching now
    _cluster: dict[str, Breach] = field(default_factory=dict, init=False)  # of those: lb, arp
    _nodes: NodeBreaches | None = field(default=None, init=False)
    _rules_judged: list[Rule] = field(default_factory=list, init=False)
    _due: list[tuple[float, float, str]] = field(default_factory=list, init=False)
    _repeats: list[tuple[float, float, str]] = field(default_factory=list, init=False)
    _firing: tuple[AlertView, ...] | None = field(default=None, init=False)

    def _node_breaches(self) -> NodeBreaches:
        if self._nodes is None or self._rules_judged != self.rules:
            self._rules_judged = list(self.rules)
            judge = NodeJudge(self.rules, self._restarts)
            if self._nodes is None:
                self._nodes = NodeBreaches(judge)
            else:
                self._nodes.retarget(judge)
        return self._nodes

    def evaluate(
        self, nodes: Iterable[NodeView], now: float, lb: Iterable[LBServiceView] = ()
    ) -> tuple[list[EventView], list[Notification]]:
        """Judge the rules on the nodes and load-balancer services; return the events and
        notifications of this tick."""
        nodes = nodes if isinstance(nodes, tuple | list) else tuple(nodes)
        judged = self._node_breaches()
        added, gone = judged.update(nodes, now)
        cluster: dict[str, Breach] = {}
        arp_rules = [r for r in self.rules if r.kind == "arp"]
        if arp_rules:
            lb = tuple(lb)
            views = judged.views

            def alive(node_id: str) -> NodeView | None:
                v = views.get(node_id)
                return v if v is not None and v.liveness is Liveness.ALIVE else None

            found = arpcheck.findings_in(alive, lb)
            for rule in arp_rules:
                for f in found:
                    cluster[f"{rule.name}:{f.node_id}:{f.address}"] = (
                        rule, f.node_id, rule.severity, f.message, None)
        lb_rules = [r for r in self.rules if r.kind == "lb"]
        for svc in lb if lb_rules else ():
            for rule in lb_rules:
                if rule.service in ("*", svc.key):
                    cluster.update(_lb_breaches(rule, svc))
        old = self._cluster
        if cluster != old:
            gone += [k for k in old if k not in cluster]
            added += [(k, b) for k, b in cluster.items() if old.get(k) != b]
            self._cluster = cluster
        return self._settle(added, gone, now)

    def _settle(
        self, added: list[tuple[str, Breach]], gone: list[str], now: float
    ) -> tuple[list[EventView], list[Notification]]:
        """Fire, escalate, repeat and resolve: for the breaches that changed, those whose `for`
        duration ran out and the firing alerts whose `repeat` is due."""
        events: list[EventView] = []
        notes: list[Notification] = []
        breaches, pending = self._breaches, self._pending
        for key in gone:
            breaches.pop(key, None)
            pending.pop(key, None)
        for key, breach in added:
            before = breaches.get(key)
            breaches[key] = breach
            rule = breach[0]
            first = pending.get(key)
            if first is None:
                first = pending[key] = now
                if rule.duration > 0:
                    heapq.heappush(self._due, (now + rule.duration, now, key))
            elif before is not None and before[0] is not rule and rule.duration > 0:
                heapq.heappush(self._due, (first + rule.duration, first, key))  # new rules
            self._consider(key, breach, first, now, events, notes)
        for due, first, key in _taken(self._due, now):
            if pending.get(key) != first or key in self._active:
                continue  # ended since, or fired already (its changes come as breaches)
            breach = breaches[key]
            if now - first < breach[0].duration:  # rounding, or a longer `for` reloaded
                heapq.heappush(self._due, (max(due, first + breach[0].duration), first, key))
                continue
            self._consider(key, breach, first, now, events, notes)
        for at, notified, key in _taken(self._repeats, now):
            active = self._active.get(key)
            breach = breaches.get(key)
            if active is None or breach is None or active.notified != notified:
                continue  # resolved (now or before), escalated or repeated since
            rule = breach[0]
            if now - notified < rule.repeat:
                heapq.heappush(self._repeats, (at, notified, key))
                continue
            active.notified = now
            notes.append(Notification("repeat", active.view, self.cluster, now))
            heapq.heappush(self._repeats, (now + rule.repeat, now, key))
        for key in gone:
            active = self._active.pop(key, None)
            if active is not None:
                self._firing = None
                gone_view = active.view
                events.append(EventView(now, "resolved", gone_view.node_id,
                                        f"resolved: {gone_view.message}"))
                notes.append(Notification("resolved", gone_view, self.cluster, now))
        return events, notes

    def _consider(self, key: str, breach: Breach, first: float, now: float,
                  events: list[EventView], notes: list[Notification]) -> None:
        """One breach judged against its `for` duration and the alert already firing."""
        rule, node_id, level, text, value = breach
        if now - first < rule.duration:
            return
        active = self._active.get(key)
        view = AlertView(key, rule.name, node_id, level, text,
                         active.view.since if active else now, value)
        self._firing = None
        if active is None or active.view.severity is not level:
            self._active[key] = _Active(view, now)
            events.append(EventView(now, "alert", node_id, f"[{level}] {text}"))
            notes.append(Notification("firing", view, self.cluster, now))
            if rule.repeat:
                heapq.heappush(self._repeats, (now + rule.repeat, now, key))
        else:
            active.view = view
            if rule.repeat and now - active.notified >= rule.repeat:
                active.notified = now
                notes.append(Notification("repeat", view, self.cluster, now))
                heapq.heappush(self._repeats, (now + rule.repeat, now, key))

    def firing(self) -> tuple[AlertView, ...]:
        if self._firing is None:
            views = [a.view for a in self._active.values()]
            views.sort(key=lambda v: (v.severity is not Severity.CRIT, v.since, v.key))
            self._firing = tuple(views)
        return self._firing


def _taken(heap: list[tuple[float, float, str]], now: float) -> list[tuple[float, float, str]]:
    """The entries due by `now`, taken off the heap (put back ones go to a later tick)."""
    out = []
    while heap and heap[0][0] <= now:
        out.append(heapq.heappop(heap))
    return out


def _lb_breaches(
    rule: Rule, svc: LBServiceView
) -> dict[str, tuple[Rule, str, Severity, str, float | None]]:
    out = {}
    where = f"{svc.balancer} {svc.key}"
    if rule.serving_below is not None:
        serving = sum(rs.state == "serving" for rs in svc.servers)
        if serving < rule.serving_below:
            text = (f"{where}: {serving} of {len(svc.servers)} real servers serving "
                    f"(< {rule.serving_below})")
            out[f"{rule.name}:{where}:serving"] = (rule, "", rule.severity, text, float(serving))
    if rule.imbalance_above is not None and svc.imbalance > rule.imbalance_above:
        text = f"{where}: imbalance {svc.imbalance:.2f} (> {rule.imbalance_above:g})"
        out[f"{rule.name}:{where}:imbalance"] = (rule, "", rule.severity, text, svc.imbalance)
    if rule.drift:
        for rs in svc.servers:
            if rs.drift:
                out[f"{rule.name}:{where}:{rs.key}:drift"] = (
                    rule, rs.node_id, rule.severity, f"{where} {rs.key} drift: {rs.drift}", None)
    return out
