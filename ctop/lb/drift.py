"""Drift: the balancer no longer shows what ctop's journal says it was told (lb_intent).

A HAProxy reload without a state file, a hand edit through the runtime API or ipvsadm, or a
failover to a director that never got the change: each LB round compares the live table with
the recorded intent. The operator then re-applies the intent (`R`) or accepts the live state
(the intent is cleared); both go through the journaled action path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ctop.lb.actions import ActionResult, LBController, Plan, effective_weight, is_drained
from ctop.lb.base import LBError, RealServer, ServerState, VirtualService
from ctop.lb.journal import Intent

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Drift:
    key: Key
    text: str  # "journal: drained by cli (weight 3 saved); live: serving weight 1"


def _live(rs: RealServer) -> str:
    if rs.state == ServerState.MAINT:
        return "maint"
    return f"{'drained' if is_drained(rs) else str(rs.state)} weight {rs.weight}"


def drift_of(rs: RealServer, intent: Intent | None) -> str:
    """What differs between the intent and the live server; "" when they agree."""
    if intent is None:
        return ""
    out = is_drained(rs) or rs.state == ServerState.MAINT
    if intent.drained and not out:
        return (f"journal: drained by {intent.drained_by} (weight {intent.saved_weight} saved); "
                f"live: {_live(rs)}")
    if not intent.drained and intent.weight_set is not None and intent.weight_by is not None:
        if out and intent.weight_set > 0:
            return f"journal: weight {intent.weight_set} by {intent.weight_by}; live: {_live(rs)}"
        if not out and rs.weight != intent.weight_set:
            return f"journal: weight {intent.weight_set} by {intent.weight_by}; live: {_live(rs)}"
    return ""


def find_drift(services: Iterable[VirtualService], intents: Iterable[Intent]) -> dict[Key, Drift]:
    by_key = {(i.balancer, i.service, i.server): i for i in intents}
    found = {}
    for vs in services:
        for rs in vs.servers:
            key = (vs.balancer, vs.key, rs.key)
            text = drift_of(rs, by_key.get(key))
            if text:
                found[key] = Drift(key, text)
    return found


class DriftWatch:
    """Drift per round, and which of it is new (an event each time it appears or changes)."""

    def __init__(self) -> None:
        self.current: dict[Key, Drift] = {}

    def update(self, found: Mapping[Key, Drift]) -> tuple[list[Drift], list[Key]]:
        """(new or changed drift, keys whose drift is gone)."""
        new = [d for k, d in found.items() if self.current.get(k) != d]
        gone = [k for k in self.current if k not in found]
        self.current = dict(found)
        return new, gone


def _refused(lb: LBController, action: str, key: Key, message: str, origin: str,
             rs: RealServer | None = None) -> ActionResult:
    weight = effective_weight(rs) if rs is not None else None
    return ActionResult(False, message, action, *key, weight, weight,
                        state_before=rs.state if rs else None, origin=origin)


def reapply(lb: LBController, balancer: str, service: str, server: str,
            origin: str = "operator", note: str = "") -> ActionResult:
    """Put the journal's intent back on the balancer: the drain (or maint) with its saved
    weight kept for restore, or the weight an operator set. The intent keeps its owner (an
    automatic re-assertion does not make an operator's drain automation's)."""
    key = (balancer, service, server)
    try:
        _, rs = lb.find(*key)
    except LBError as exc:
        return _refused(lb, "reapply", key, exc.message, origin)
    intent = lb.journal.intent(*key) if lb.journal is not None else None
    if not drift_of(rs, intent):
        return _refused(lb, "reapply", key, "no drift: the balancer shows the journal's intent",
                        origin, rs)
    assert intent is not None and lb.journal is not None
    if intent.drained:
        last = lb.journal.actions(balancer=balancer, service=service, server=server, limit=20)
        maint = next((a.action == "maint" for a in last if a.action in ("drain", "maint")
                      and a.result == "ok"), False)
        result = (lb.maint if maint else lb.drain)(*key, origin=origin, note=note)
        if result.ok and intent.saved_weight:
            # the weight to restore is the one saved before the first drain, not the weight
            # the reset left behind
            lb.journal.mark_drained(*key, saved_weight=intent.saved_weight,
                                    origin=intent.drained_by or origin)
        return result
    result = lb.set_weight(*key, int(intent.weight_set or 0), origin=origin, note=note)
    if result.ok and intent.weight_by and intent.weight_by != origin:
        lb.journal.mark_weight(*key, weight=int(intent.weight_set or 0), origin=intent.weight_by)
    return result


def accept(lb: LBController, balancer: str, service: str, server: str,
           origin: str = "operator") -> ActionResult:
    """Take the live state as the truth: clear the intent, and say so in the journal."""
    key = (balancer, service, server)
    try:
        _, rs = lb.find(*key)
    except LBError as exc:
        return _refused(lb, "accept", key, exc.message, origin)
    if lb.readonly:
        return _refused(lb, "accept", key, "read-only mode: load-balancer actions are disabled",
                        origin, rs)
    intent = lb.journal.intent(*key) if lb.journal is not None else None
    text = drift_of(rs, intent)
    if not text or lb.journal is None:
        return _refused(lb, "accept", key, "no drift: nothing to accept", origin, rs)
    lb.journal.clear_drain(*key)
    lb.journal.release_weight(*key)
    weight = effective_weight(rs)
    jid = lb.journal.record(origin=origin, balancer=balancer, service=service, server=server,
                            action="accept", weight_before=weight, weight_after=weight,
                            result="ok")
    return ActionResult(True, f"live state accepted; journal intent cleared ({text})", "accept",
                        *key, weight, weight, rs.state, rs.state, applied=False,
                        origin=origin, journal_id=jid)


def plan(lb: LBController, verb: str, balancer: str, service: str, server: str,
         origin: str = "operator") -> Plan:
    """The confirmation dialog's plan for `reapply` or `accept` (no side effects)."""
    key = (balancer, service, server)
    base = Plan(verb, *key, None, None, None, None, True, False)
    try:
        _, rs = lb.find(*key)
    except LBError as exc:
        return replace(base, ok=False, message=exc.message)
    now = effective_weight(rs)
    base = replace(base, before=now, state_before=rs.state, configured_before=rs.weight)
    intent = lb.journal.intent(*key) if lb.journal is not None else None
    text = drift_of(rs, intent)
    if not text:
        return replace(base, after=now, state_after=rs.state, ok=False,
                       message="no drift: the balancer shows the journal's intent")
    if verb == "accept":
        return replace(base, after=now, state_after=rs.state,
                       message=f"{text}\nthe journal's intent is cleared; the balancer is not "
                       "changed")
    assert intent is not None
    if intent.drained:
        return replace(base, after=0, state_after=ServerState.DRAINED, message=text)
    return replace(base, after=int(intent.weight_set or 0), state_after=ServerState.SERVING,
                   message=text)
