"""What the guards and the what-if compare against, taken from the director's alert rules.

- quorum: a service's `serving_below` (the lb_service rule, keepalived's quorum). An operator
  action that would leave fewer real servers serving is refused unless forced; with no rule the
  quorum is 1 (never drain the last serving server).
- CPU thresholds: the `cpu_percent` metric rule's warn/crit ("cpu-high" by default), which the
  what-if flags a predicted CPU against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctop.alerts import Rule


@dataclass(frozen=True, slots=True)
class Quorum:
    serving: int  # at least this many real servers must keep serving
    rule: str  # the alert rule it comes from ("" = the built-in last-server guard)


@dataclass(frozen=True, slots=True)
class LBLimits:
    quorums: tuple[tuple[str, int, str], ...] = ()  # (service key or "*", serving_below, rule)
    cpu_warn: float | None = None  # percent
    cpu_crit: float | None = None

    def quorum(self, service: str) -> Quorum:
        best = Quorum(1, "")
        for svc, below, rule in self.quorums:
            if svc not in ("*", service):
                continue
            if below > best.serving or (below == best.serving and not best.rule):
                best = Quorum(below, rule)
        return best


def limits_from_rules(rules: Iterable[Rule]) -> LBLimits:
    quorums: list[tuple[str, int, str]] = []
    warn = crit = None
    for r in rules:
        if r.kind == "lb" and r.serving_below is not None:
            quorums.append((r.service, r.serving_below, r.name))
        elif r.kind == "metric" and r.metric == "cpu_percent" and r.op in (">", ">="):
            # the lowest threshold of several cpu rules is the one that fires first
            if r.warn is not None and (warn is None or r.warn < warn):
                warn = r.warn
            if r.crit is not None and (crit is None or r.crit < crit):
                crit = r.crit
    return LBLimits(tuple(quorums), warn, crit)
