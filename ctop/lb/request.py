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
MAX_RAMP_S = 3600.0


@dataclass(frozen=True, slots=True)
class ActionRequest:
    verb: str
    backend: str
    service: str
    server: str
    value: int | None = None  # the weight (weight, advice) or the delta (step)
    origin: str = "operator"  # operator (a UI) | cli | auto
    force: bool = False  # past the last-server / quorum guard
    dry_run: bool = False  # plan and what-if only; nothing changes
    ramp_s: float = 0.0  # restore: raise the weight in steps over this many seconds
    cut_sessions: bool = False  # maint on HAProxy: also `shutdown sessions server`
    expire_templates: bool = False  # IPVS drain: set net.ipv4.vs.expire_quiescent_template=1

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"unknown action {self.verb!r} (one of {', '.join(VERBS)})")
        if self.verb in NEEDS_VALUE and self.value is None:
            raise ValueError(f"{self.verb} needs a value")
        if not isinstance(self.ramp_s, int | float) or not 0 <= self.ramp_s <= MAX_RAMP_S:
            raise ValueError(f"ramp must be 0..{MAX_RAMP_S:g} seconds, got {self.ramp_s!r}")
        if self.ramp_s and self.verb != "restore":
            raise ValueError("only restore ramps")
        if self.cut_sessions and self.verb != "maint":
            raise ValueError("only maint cuts sessions")

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
    if req.verb == "advice" and req.value is None:
        raise ValueError(f"{req.verb} needs a weight")
    if req.dry_run:
        return lb.dry_run(req)
    opts = {"origin": origin, "force": req.force}
    if req.verb == "drain":
        return lb.drain(b, s, r, expire_templates=req.expire_templates, **opts)
    if req.verb == "maint":
        return lb.maint(b, s, r, cut_sessions=req.cut_sessions, **opts)
    if req.verb == "restore":
        return lb.restore(b, s, r, ramp_s=req.ramp_s, **opts)
    if req.verb == "step":
        return lb.step_weight(b, s, r, int(req.value or 0), **opts)
    return lb.set_weight(b, s, r, int(req.value or 0), **opts)
