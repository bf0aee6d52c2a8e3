"""The drift guard: put operator intents back when the live table lost them (`[lb] reassert`).

A reload of HAProxy without a state file, keepalived or ldirectord rewriting the IPVS table,
a failover: the round's drift check (ctop.lb.drift) finds every intent the live table no
longer honours. With `[lb] reassert = true` each newly found drift is re-applied at once,
through the journaled action path (result "ok (reassert after drift)") in the name of the
intent's owner (origin `operator` or `cli`, as the drain or weight was made: it is their
intent put back, under the same guards, and automation may not touch a human's weight).
A drift is re-asserted once when it appears: when the balancer keeps refusing, the drift
stays shown (and alerted) instead of being retried every round.
"""

from __future__ import annotations

from collections.abc import Iterable

from ctop.lb.actions import ActionResult, LBController
from ctop.lb.drift import Key, reapply

REASON = "reassert after drift"


def reassert(lb: LBController, drifted: Iterable[Key]) -> list[tuple[ActionResult, str]]:
    """Re-apply each drifted intent; (result, why) for the events."""
    out = []
    for key in drifted:
        intent = lb.journal.intent(*key) if lb.journal is not None else None
        if intent is None:
            continue
        owner = (intent.drained_by if intent.drained else intent.weight_by) or "auto"
        out.append((reapply(lb, *key, origin=owner, note=REASON), REASON))
    return out
