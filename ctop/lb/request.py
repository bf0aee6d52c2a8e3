"""One load-balancer action as data, and the one place a verb becomes a controller call.

Every path that changes a balancer — keys in the UI, `ctop lb`, the control socket, automation —
builds an `ActionRequest` and hands it to `perform` (in the daemon, when one runs). Keeping the
request a plain frozen dataclass lets it cross the control socket unchanged (`to_plain` /
`from_plain`, every field, so fields added later ride along) and keeps the verb dispatch here.

Who asks is not part of the request: the daemon takes it from the socket (SO_PEERCRED), and
`perform` records it in the journal through `acting_as`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ctop.lb import drift
from ctop.lb.actions import ActionResult, LBController, Plan
from ctop.lb.base import LBError, ServerState
from ctop.lb.journal import Actor, acting_as
from ctop.lb.plainkeys import from_plain_keys, to_plain_keys
from ctop.lb.ramp import ramp_steps

# drain: no new connections; maint: out entirely; weight: set; step: add a delta;
# restore: back to the weight before the drain; advice: the advised weight (engine resolves it);
# reapply / accept: drift — put the journal's intent back, or take the live state as the truth
VERBS = ("drain", "maint", "weight", "step", "restore", "advice", "reapply", "accept")
DRIFT_VERBS = ("reapply", "accept")
NEEDS_VALUE = ("weight", "step")
MAX_RAMP_S = 3600.0
MAX_WHY = 200  # characters: a reason, not a document (it rides in every journal row and intent)

Expect = tuple[int | None, int | None, str]  # (weight before, weight after, state before)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    verb: str
    balancer: str  # "" = find the balancer that has `service` (ctop lb without --balancer)
    service: str
    server: str
    value: int | None = None  # the weight (weight, advice) or the delta (step)
    origin: str = "operator"  # operator (a UI) | cli | auto
    force: bool = False  # past the last-server / quorum guard
    dry_run: bool = False  # plan and what-if only; nothing changes
    ramp_s: float = 0.0  # restore: raise the weight in steps over this many seconds
    cut_sessions: bool = False  # maint on HAProxy: also `shutdown sessions server`
    expire_templates: bool = False  # IPVS drain: set net.ipv4.vs.expire_quiescent_template=1
    # The plan the operator confirmed (before, after, state before): if the server no longer
    # matches it, the action is refused rather than run on a state nobody saw.
    expect: Expect | None = None
    # A director pair ([nats] peers): change this director alone, knowingly, when the peer
    # cannot confirm (the intent is still recorded for it; ctop.nats.pair).
    local: bool = False
    # Why the operator acts (a ticket, "kernel update"): journaled, shown, shared with the peer.
    why: str | None = None

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
        if self.expect is not None:  # msgpack and JSON bring a list back
            if not isinstance(self.expect, list | tuple) or len(self.expect) != 3:
                raise ValueError("expect is (weight before, weight after, state before)")
            object.__setattr__(self, "expect", tuple(self.expect))
        object.__setattr__(self, "why", checked_why(self.why))

    @property
    def action(self) -> str:
        """The controller's name for the verb (advice sets a weight)."""
        return "weight" if self.verb == "advice" else self.verb

    def to_plain(self) -> dict[str, Any]:
        plain = asdict(self)
        if plain["why"] is None:  # an older daemon or peer knows no `why`: send it only when set
            del plain["why"]
        return to_plain_keys(plain)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> ActionRequest:
        """Raises ValueError (unknown or missing fields, a bad verb) — never anything else."""
        if not isinstance(plain, dict):
            raise ValueError("an action request is a map")
        plain = from_plain_keys(plain)
        names = {f.name for f in fields(cls)}
        unknown = set(plain) - names
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(sorted(map(str, unknown)))}")
        try:
            return cls(**plain)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def checked_why(why: object) -> str | None:
    """The reason as stored: None when empty; ValueError when too long or not printable
    (a control character would garble `ctop lb log` and the event line)."""
    if why is None:
        return None
    if not isinstance(why, str):
        raise ValueError(f"why must be text, got {type(why).__name__}")
    why = why.strip()
    if not why:
        return None
    if len(why) > MAX_WHY:
        raise ValueError(f"why is {len(why)} characters long; at most {MAX_WHY}")
    if not why.isprintable():
        bad = next(c for c in why if not c.isprintable())
        raise ValueError(f"why must be printable text (it has {bad!r})")
    return why


def expect_of(plan: Plan) -> Expect:
    """What a confirmed plan promised, for `ActionRequest.expect`."""
    return (plan.before, plan.after, str(plan.state_before or ""))


def resolve(lb: LBController, service: str, balancer: str | None) -> tuple[str, str]:
    """(balancer, service key) for what the user typed; LBError when not found or ambiguous.

    Besides the exact key, an IPVS service may be named without its protocol ("10.0.0.1:80")
    and case doesn't matter ("tcp 10.0.0.1:80").
    """
    names = [balancer] if balancer else list(lb.balancers)
    hits: list[tuple[str, str]] = []
    for name in names:
        for vs in lb.services(name):
            k, s = vs.key.lower(), service.lower()
            if k == s or k.endswith(" " + s):
                hits.append((name, vs.key))
    exact = [h for h in hits if h[1] == service]
    hits = exact or hits
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise LBError(f"no service {service!r} on {', '.join(names)}")
    raise LBError(f"{service!r} is ambiguous: {hits}; give --balancer")


def resolved(lb: LBController, req: ActionRequest) -> ActionRequest:
    """The request with its balancer filled in (ctop lb may leave it out); LBError if unknown."""
    if req.balancer and req.balancer in lb.balancers:
        return req
    balancer, service = resolve(lb, req.service, req.balancer or None)
    return replace(req, balancer=balancer, service=service)


def plan_of(lb: LBController, req: ActionRequest) -> Plan:
    """The controller's plan for the request (what the confirmation dialog shows). Blocking."""
    b, s, r, origin = req.balancer, req.service, req.server, req.origin
    if req.verb in DRIFT_VERBS:
        return drift.plan(lb, req.verb, b, s, r, origin)
    if req.verb == "drain":
        return lb.plan_drain(b, s, r, origin)
    if req.verb == "maint":
        return lb.plan_maint(b, s, r, origin)
    if req.verb == "restore":
        return lb.plan_restore(b, s, r, origin)
    if req.value is None:  # weight, step; advice before the service filled its weight in
        raise ValueError(f"{req.verb} needs a value")
    if req.verb == "step":
        return lb.plan_step(b, s, r, req.value, origin)
    return lb.plan_set_weight(b, s, r, req.value, origin)  # weight, advice


def perform(lb: LBController, req: ActionRequest, actor: Actor | None = None) -> ActionResult:
    """Run one request on the controller (blocking: call it from a worker thread).

    `advice` must carry its weight (the engine resolves it). With `expect`, the server must
    still be as the confirmed plan showed, else nothing runs and the result says what it is now.
    `actor` is who asked (recorded in the journal); None = this process's user.
    """
    if req.verb == "advice" and req.value is None:
        raise ValueError(f"{req.verb} needs a weight")
    if req.dry_run:  # the plan, the guard and the what-if; nothing changes
        return dry_run(lb, req)
    with acting_as(actor, why=req.why), lb.hold():
        if req.expect is not None:
            fresh = plan_of(lb, req)
            if expect_of(fresh) != tuple(req.expect):
                return _stale(fresh, req)
        b, s, r, origin = req.balancer, req.service, req.server, req.origin
        opts = {"origin": origin, "force": req.force}
        if req.verb == "drain":
            return lb.drain(b, s, r, expire_templates=req.expire_templates, **opts)
        if req.verb == "maint":
            return lb.maint(b, s, r, cut_sessions=req.cut_sessions, **opts)
        if req.verb == "restore":
            return lb.restore(b, s, r, ramp_s=req.ramp_s, **opts)
        if req.verb == "step":
            return lb.step_weight(b, s, r, int(req.value or 0), **opts)
        if req.verb in DRIFT_VERBS:
            act = drift.reapply if req.verb == "reapply" else drift.accept
            return act(lb, b, s, r, origin=origin)
        if req.value is None:  # weight / advice
            raise ValueError(f"{req.verb} needs a weight")
        return lb.set_weight(b, s, r, int(req.value), **opts)


def dry_run(lb: LBController, req: ActionRequest) -> ActionResult:
    """Plan, guard and what-if for a request; nothing changes. ok unless the target
    cannot be found or the request is invalid (a guard that would refuse is reported)."""
    plan = plan_of(lb, req)
    lines = [plan.text()]
    templates = None
    if plan.ok and not plan.noop:
        lines += lb.what_if(plan)
        if plan.after == 0:
            templates, note = lb.templates_before(plan)
            if note:
                lines.append(note)
        if plan.guard and req.force:
            lines.append(f"forced: {plan.guard}")
        if req.ramp_s and plan.action == "restore":
            steps = ramp_steps(plan.after or 0, req.ramp_s)
            lines.append(
                "ramp: " + ", ".join(f"weight {w} at {t:.0f} s" for t, w in steps)
                if steps
                else "ramp: nothing to ramp (weight 1)"
            )
    lines.append("dry run: nothing changed")
    found = plan.before is not None or plan.state_before is not None
    return ActionResult(
        ok=found, message="\n".join(lines), action=plan.action, balancer=plan.balancer,
        service=plan.service, server=plan.server, before=plan.before, after=plan.after,
        state_before=plan.state_before, state_after=plan.state_after, noop=plan.noop,
        origin=req.origin, guard=plan.guard, dry_run=True, templates=templates,
    )  # fmt: skip



def _stale(fresh: Plan, req: ActionRequest) -> ActionResult:
    before, _, state = req.expect or (None, None, "")
    now = f"weight {fresh.before} ({fresh.state_before})" if fresh.before is not None else (
        fresh.message or "gone")
    return ActionResult(
        ok=False,
        message=f"changed since the dialog opened (it showed weight {before} ({state}), now "
        f"{now}); nothing was changed",
        action=fresh.action, balancer=fresh.balancer, service=fresh.service, server=fresh.server,
        before=fresh.before, after=fresh.before, state_before=fresh.state_before,
        state_after=fresh.state_before, origin=req.origin, stale=True,
    )


# -- across the control socket ------------------------------------------------------------------


def result_to_plain(result: ActionResult) -> dict[str, Any]:
    # ServerState is a str: msgpack and JSON carry it as its value
    return to_plain_keys(asdict(result))


def result_from_plain(plain: dict[str, Any]) -> ActionResult:
    return ActionResult(**_states(ActionResult, plain))


def plan_to_plain(plan: Plan) -> dict[str, Any]:
    return to_plain_keys(asdict(plan))


def plan_from_plain(plain: dict[str, Any]) -> Plan:
    return Plan(**_states(Plan, plain))


def _states(cls: type, plain: dict[str, Any]) -> dict[str, Any]:
    """Known fields only (a newer daemon may send more), states back to ServerState."""
    names = {f.name for f in fields(cls)}
    out = {k: v for k, v in from_plain_keys(plain).items() if k in names}
    for k in ("state_before", "state_after"):
        if out.get(k):
            out[k] = ServerState(out[k])
    return out
