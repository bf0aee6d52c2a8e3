"""Load-balancer action requests: what the confirmation dialog shows, before anything runs.

Data code (no Textual). The dialog shows its source's plan (`from_plan`: the engine's or the
daemon's reading of the balancer); a source that cannot plan gets `plan`, an estimate from the
snapshot's view of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctop.snapshot import RealServerView

if TYPE_CHECKING:
    from ctop.lb.actions import Plan

TITLES = {
    "drain": "Drain",
    "maint": "Maintenance",
    "weight": "Set weight",
    "step": "Step weight",
    "restore": "Restore",
    "advice": "Apply advised weight",
    "reapply": "Re-apply the journal's intent",
    "accept": "Accept the live state",
}


@dataclass(frozen=True, slots=True)
class Request:
    verb: str  # drain | maint | weight | step | restore | advice
    backend: str
    service: str
    server: str
    value: int | None  # weight (weight, advice) or delta (step)
    before: int | None
    after: int | None
    state_before: str
    state_after: str
    ok: bool = True
    noop: bool = False
    message: str = ""

    @property
    def title(self) -> str:
        return TITLES.get(self.verb, self.verb)

    @property
    def expect(self) -> tuple[int | None, int | None, str]:
        """What the operator confirms (ActionRequest.expect): run only if it still holds."""
        return (self.before, self.after, self.state_before)


def from_plan(verb: str, value: int | None, p: Plan) -> Request:
    """The dialog's request from the controller's (or the daemon's) plan."""
    return Request(
        verb,
        p.backend,
        p.service,
        p.server,
        value,
        p.before,
        p.after,
        str(p.state_before or ""),
        str(p.state_after or ""),
        p.ok,
        p.noop,
        p.message,
    )


def plan(
    verb: str, backend: str, service: str, rs: RealServerView, value: int | None
) -> Request:
    """The snapshot's estimate of the plan, for a source without a balancer to ask."""
    if verb in ("reapply", "accept"):
        return _drift_request(verb, backend, service, rs)
    before = 0 if rs.state in ("drained", "quiesced", "maint") else rs.weight
    if verb == "drain":
        after, state = 0, "drained"
    elif verb == "maint":
        after, state = 0, "maint"
    elif verb == "restore":
        after, state = rs.weight or None, "serving"
    elif verb == "step":
        after, state = max(0, before + (value or 0)), "serving"
    else:
        after, state = value, "serving" if value else "drained"
    return Request(verb, backend, service, rs.key, value, before, after, rs.state, state)


def _drift_request(verb: str, backend: str, service: str, rs: RealServerView) -> Request:
    """Drift (ctop.lb.drift): re-apply puts the journal's intent back on the balancer; accept
    clears the intent and changes nothing on the balancer."""
    before = 0 if rs.state in ("drained", "quiesced", "maint") else rs.weight
    if not rs.drift:
        return Request(verb, backend, service, rs.key, None, before, before, rs.state, rs.state,
                       ok=False, message="no drift: the balancer shows the journal's intent")
    if verb == "accept":
        return Request(verb, backend, service, rs.key, None, before, before, rs.state, rs.state,
                       message=f"{rs.drift}\nthe journal's intent is cleared; the balancer "
                       "is not changed")
    # without the journal the weight it holds is unknown (ctop.lb.drift.plan knows it)
    return Request(verb, backend, service, rs.key, None, before, None, rs.state,
                   "as the journal says", message=rs.drift)
