"""Load-balancer action requests: what the confirmation dialog shows, before anything runs.

Data code (no Textual). With a local LBController the plan is the controller's own (it reads the
balancer); without one (remote source) it is built from the snapshot's view of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctop.model import RealServerView

if TYPE_CHECKING:
    from ctop.lb.actions import LBController, Plan

TITLES = {
    "drain": "Drain",
    "maint": "Maintenance",
    "weight": "Set weight",
    "step": "Step weight",
    "restore": "Restore",
    "advice": "Apply advised weight",
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
    verb: str,
    backend: str,
    service: str,
    rs: RealServerView,
    value: int | None,
    lb: LBController | None,
) -> Request:
    """Blocking when `lb` is given (it reads the balancer): call from a thread."""
    if lb is not None:
        action = "weight" if verb == "advice" else verb
        try:
            p = lb.describe(action, backend, service, rs.key, value)
        except ValueError as exc:
            return Request(
                verb,
                backend,
                service,
                rs.key,
                value,
                rs.weight,
                None,
                rs.state,
                "",
                ok=False,
                message=str(exc),
            )
        return Request(
            verb,
            backend,
            service,
            rs.key,
            value,
            p.before,
            p.after,
            str(p.state_before or ""),
            str(p.state_after or ""),
            p.ok,
            p.noop,
            p.message,
        )
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
