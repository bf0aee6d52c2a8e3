"""Load-balancer action requests: what the confirmation dialog shows, before anything runs.

Data code (no Textual). The dialog shows its source's plan (`from_plan`): the engine's, the
daemon's or a fixed source's, all made by `ctop.lb.request.plan_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    balancer: str
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
        p.balancer,
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
