"""One load-balancer action as data, and the one place a verb becomes a controller call.

Every path that changes a balancer — keys in the UI, `ctop lb`, the control socket, automation —
builds an `ActionRequest` and hands it to `perform` (in the daemon, when one runs). Keeping the
request a plain frozen dataclass lets it cross the control socket unchanged (`to_plain` /
`from_plain`) and keeps the verb dispatch in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctop.lb.actions import ActionResult, LBController

# drain: no new connections; maint: out entirely; weight: set; step: add a delta;
# restore: back to the weight before the drain; advice: the advised weight (engine resolves it)
VERBS = ("drain", "maint", "weight", "step", "restore", "advice")
NEEDS_VALUE = ("weight", "step")


@dataclass(frozen=True, slots=True)
class ActionRequest:
    verb: str
    backend: str
    service: str
    server: str
    value: int | None = None  # the weight (weight, advice) or the delta (step)
    origin: str = "operator"  # operator (a UI) | cli | auto

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"unknown action {self.verb!r} (one of {', '.join(VERBS)})")
        if self.verb in NEEDS_VALUE and self.value is None:
            raise ValueError(f"{self.verb} needs a value")

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> ActionRequest:
        """Raises ValueError (unknown or missing fields, a bad verb) — never anything else."""
        if not isinstance(plain, dict):
            raise ValueError("an action request is a map")
        names = {f.name for f in fields(cls)}
        unknown = set(plain) - names
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(sorted(map(str, unknown)))}")
        try:
            return cls(**plain)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def perform(lb: LBController, req: ActionRequest) -> ActionResult:
    """Run one request on the controller (blocking: call it from a worker thread).

    `advice` must have been resolved to a weight by the caller (the engine knows the advice).
    """
    b, s, r, origin = req.backend, req.service, req.server, req.origin
    if req.verb == "drain":
        return lb.drain(b, s, r, origin=origin)
    if req.verb == "maint":
        return lb.maint(b, s, r, origin=origin)
    if req.verb == "restore":
        return lb.restore(b, s, r, origin=origin)
    if req.verb == "step":
        return lb.step_weight(b, s, r, int(req.value or 0), origin=origin)
    if req.value is None:  # weight / advice
        raise ValueError(f"{req.verb} needs a weight")
    return lb.set_weight(b, s, r, int(req.value), origin=origin)
