"""Operator and automation actions on any balancer: validate, apply, read back, record.

Every action goes through a Plan first (what the confirmation dialog shows), then `_run`:
refuse when readonly or invalid, apply, read the table back, check the change really happened,
put the server back as it was if anything failed, and write one journal row with the result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from ctop.lb.base import (
    Balancer,
    Connection,
    LBError,
    RealServer,
    ServerState,
    VirtualService,
)
from ctop.lb.journal import HUMAN, Journal
from ctop.lb.limits import LBLimits
from ctop.lb.ramp import Ramp, ramp_steps
from ctop.lb.ratio import load_basis
from ctop.lb.whatif import ServerNow, predict, table

# (balancer, service) -> {server key: (cores, cpu percent)} from the agents' metrics; the engine
# provides it, so the what-if can predict CPU (None or {}: no node metrics, shares only)
NodeLoads = Callable[[str, str], "dict[str, tuple[float | None, float | None]] | None"]

_OUT = (ServerState.DRAINED, ServerState.QUIESCED, ServerState.MAINT)  # no new connections


def effective_weight(rs: RealServer) -> int:
    """The weight that counts for new connections: 0 while drained or in maintenance."""
    return 0 if rs.state in _OUT else rs.weight


def is_drained(rs: RealServer) -> bool:
    return rs.state in (ServerState.DRAINED, ServerState.QUIESCED) or rs.weight == 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What an action would do; `text()` is the confirmation dialog's body."""

    action: str  # "drain" | "maint" | "weight" | "step" | "restore"
    balancer: str
    service: str
    server: str
    before: int | None  # effective weight now (None: server not found)
    after: int | None  # effective weight the action aims for
    state_before: ServerState | None
    state_after: ServerState | None
    ok: bool  # False: the action is refused (message says why)
    noop: bool  # True: nothing to do (message says why)
    message: str = ""
    configured_before: int | None = None  # the balancer's own weight (HAProxy keeps it in drain)
    value: int | None = None  # the weight (action "weight") or delta (action "step") asked for
    # Why a human must force this (the last serving server, or below the service's quorum):
    # the consequence in words, e.g. "every request to web gets 503". "" = no guard.
    guard: str = ""

    def text(self) -> str:
        head = f"{self.balancer} {self.service} / {self.server}: {self.action}"
        if not self.ok or self.noop:
            return f"{head}: {self.message}"
        text = (
            f"{head}\n  before: weight {self.before} ({self.state_before})"
            f"\n  after:  weight {self.after} ({self.state_after})"
        )
        if self.guard:
            text += f"\n  refused without --force: {self.guard}"
        return text


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str
    action: str
    balancer: str
    service: str
    server: str
    before: int | None  # effective weight before
    after: int | None  # effective weight read back after (None when not read)
    state_before: ServerState | None = None
    state_after: ServerState | None = None
    applied: bool = False  # a command was sent to the balancer
    noop: bool = False
    origin: str = "operator"
    journal_id: int | None = None
    guard: str = ""  # the consequence that made a guard refuse (or that --force accepted)
    templates: int | None = None  # IPVS persistence templates still pointing at the server
    dry_run: bool = False  # nothing was changed: `message` is the plan and the what-if
    stale: bool = False  # refused: the server is no longer as the confirmed plan showed


class LBController:
    def __init__(
        self,
        balancers: dict[str, Balancer],
        journal: Journal | None,
        readonly: bool = False,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.balancers = balancers
        self.journal = journal
        self.readonly = readonly
        # One action at a time, before/after must be exact; reentrant so a caller can hold it
        # across a check and the action (ctop.lb.lock.SharedLock also serialises processes).
        self._lock = lock if lock is not None else threading.RLock()
        self.limits = LBLimits()  # quorum and CPU thresholds (from the alert rules)
        self.node_loads: NodeLoads | None = None  # CPU per server, for the what-if
        self.ramps: dict[tuple[str, str, str], Ramp] = {}  # restores in progress
        self.on_ramp_step: Callable[[ActionResult], None] | None = None  # progress (CLI)
        # The table's other owners (ctop.lb.owners): before a change, a non-empty answer
        # refuses it (the owner would undo it); after a change was read back, they keep it
        # where the owner reads it on reload; a non-empty answer is appended to the message.
        self.before_change: list[Callable[[Plan], str]] = []
        self.after_change: list[Callable[[Plan], str]] = []

    def hold(self) -> AbstractContextManager[object]:
        """The action lock: hold it to check a plan and act on it with nothing in between."""
        return self._lock

    # -- reading -----------------------------------------------------------------------------

    def services(self, balancer: str | None = None) -> list[VirtualService]:
        """The table of every (or one) balancer, with automation's drains shown as QUIESCED."""
        names = [balancer] if balancer else list(self.balancers)
        result: list[VirtualService] = []
        for name in names:
            result.extend(self._annotate(name, self._balancer(name).services()))
        return result

    def _annotate(self, name: str, services: list[VirtualService]) -> list[VirtualService]:
        if self.journal is None:
            return services
        auto = {(i.service, i.server) for i in self.journal.intents(name) if i.drained_by == "auto"}
        if not auto:
            return services
        out = []
        for vs in services:
            servers = tuple(
                replace(rs, state=ServerState.QUIESCED)
                if (vs.key, rs.key) in auto and rs.state == ServerState.DRAINED
                else rs
                for rs in vs.servers
            )
            out.append(replace(vs, servers=servers))
        return out

    def find(self, balancer: str, service: str, server: str) -> tuple[VirtualService, RealServer]:
        """Raises LBError naming what is missing."""
        for vs in self._annotate(balancer, self._balancer(balancer).services()):
            if vs.key == service:
                for rs in vs.servers:
                    if rs.key == server:
                        return vs, rs
                known = ", ".join(rs.key for rs in vs.servers) or "none"
                raise LBError(
                    f"no real server {server!r} in {balancer} service {service!r} "
                    f"(servers: {known})"
                )
        raise LBError(f"no service {service!r} on {balancer}")

    def _balancer(self, name: str) -> Balancer:
        try:
            return self.balancers[name]
        except KeyError:
            known = ", ".join(self.balancers) or "none configured"
            raise LBError(f"no balancer {name!r} (balancers: {known})") from None

    # -- plans (no side effects) -------------------------------------------------------------

    def plan_drain(
        self, balancer: str, service: str, server: str, origin: str = "operator"
    ) -> Plan:
        def build(rs: RealServer, base: Plan) -> Plan:
            if is_drained(rs):
                return replace(
                    base,
                    after=0,
                    state_after=rs.state,
                    noop=True,
                    message=f"already drained (weight {effective_weight(rs)}, {rs.state})",
                )
            return replace(base, after=0, state_after=_drained_state(origin))

        return self._plan("drain", balancer, service, server, origin, build)

    def plan_maint(
        self, balancer: str, service: str, server: str, origin: str = "operator"
    ) -> Plan:
        """Maintenance: out entirely (HAProxy `state maint`). Effective weight 0 like a drain,
        so restore and the journal treat it as one; a balancer without it refuses here."""

        def build(rs: RealServer, base: Plan) -> Plan:
            refusal = _maint_refusal(self._balancer(balancer))
            if refusal:
                return replace(base, ok=False, message=refusal)
            if rs.state == ServerState.MAINT:
                return replace(
                    base,
                    after=0,
                    state_after=rs.state,
                    noop=True,
                    message=f"already in maintenance (weight {rs.weight})",
                )
            return replace(base, after=0, state_after=ServerState.MAINT)

        return self._plan("maint", balancer, service, server, origin, build)

    def plan_set_weight(
        self,
        balancer: str,
        service: str,
        server: str,
        weight: int,
        origin: str = "operator",
        *,
        action: str = "weight",
    ) -> Plan:
        def build(rs: RealServer, base: Plan) -> Plan:
            top = self._balancer(balancer).max_weight
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= top:
                return replace(
                    base, ok=False,
                    message=f"weight {weight!r} out of range 0..{top} for {balancer}",
                )
            if origin == "auto":
                refusal = self._human_guard(balancer, service, server)
                if not refusal and weight > 0 and is_drained(rs):
                    refusal = "drained; only restore brings it back, automation's weights don't"
                if refusal:
                    return replace(base, ok=False, message=refusal)
            now = effective_weight(rs)
            if weight == now and (weight == 0 or rs.state not in _OUT):
                return replace(
                    base,
                    after=weight,
                    state_after=rs.state,
                    noop=True,
                    message=f"already at weight {weight}",
                )
            if weight == 0:
                state_after = _drained_state(origin)
            elif rs.state == ServerState.MAINT:
                state_after = ServerState.MAINT
            else:
                state_after = ServerState.SERVING if rs.state != ServerState.DOWN else rs.state
            return replace(base, after=weight, state_after=state_after)

        return replace(self._plan(action, balancer, service, server, origin, build), value=weight)

    def plan_step(
        self, balancer: str, service: str, server: str, delta: int, origin: str = "operator"
    ) -> Plan:
        try:
            _, rs = self.find(balancer, service, server)
        except LBError as exc:
            return Plan(
                "step",
                balancer,
                service,
                server,
                None,
                None,
                None,
                None,
                False,
                False,
                exc.message,
                value=delta,
            )
        top = self._balancer(balancer).max_weight
        target = max(0, min(top, effective_weight(rs) + delta))
        plan = self.plan_set_weight(balancer, service, server, target, origin, action="step")
        plan = replace(plan, value=delta)
        if plan.noop:
            return replace(plan, message=f"already at weight {target} (range 0..{top})")
        return plan

    def plan_restore(
        self, balancer: str, service: str, server: str, origin: str = "operator"
    ) -> Plan:
        def build(rs: RealServer, base: Plan) -> Plan:
            intent = self.journal.intent(balancer, service, server) if self.journal else None
            if origin == "auto" and intent is not None and intent.human_drain:
                return replace(
                    base,
                    ok=False,
                    message=f"drained by {intent.drained_by} ({intent.drained_user}); "
                    "automation does not undo it",
                )
            saved = intent.saved_weight if intent is not None and intent.drained else None
            in_rotation = not is_drained(rs) and rs.state != ServerState.MAINT
            if in_rotation and (saved is None or saved == rs.weight):
                return replace(
                    base,
                    after=rs.weight,
                    state_after=rs.state,
                    noop=True,
                    message=f"not drained (weight {rs.weight})",
                )
            if saved is None:
                if rs.weight > 0:  # HAProxy keeps the weight through a drain
                    saved = rs.weight
                else:
                    return replace(
                        base,
                        ok=False,
                        message="no remembered weight to restore (drained outside "
                        "ctop?); set one with 'weight'",
                    )
            state_after = ServerState.DOWN if rs.state == ServerState.DOWN else ServerState.SERVING
            return replace(base, after=saved, state_after=state_after)

        return self._plan("restore", balancer, service, server, origin, build)

    def _plan(
        self,
        action: str,
        balancer: str,
        service: str,
        server: str,
        origin: str,
        build: Callable[[RealServer, Plan], Plan],
    ) -> Plan:
        base = Plan(action, balancer, service, server, None, None, None, None, True, False)
        try:
            vs, rs = self.find(balancer, service, server)
        except LBError as exc:
            return replace(base, ok=False, message=exc.message)
        base = replace(
            base, before=effective_weight(rs), state_before=rs.state, configured_before=rs.weight
        )
        plan = build(rs, base)
        if plan.ok and not plan.noop and origin in HUMAN:
            plan = replace(plan, guard=self._guard(vs, rs, plan))
        return plan

    def _guard(self, vs: VirtualService, rs: RealServer, plan: Plan) -> str:
        """The consequence of taking a serving server out when too few would be left ("" when
        enough stay). Automation has its own rule (it never quiesces the last server)."""
        if plan.after != 0 or not _serving(rs):
            return ""
        left = sum(_serving(o) for o in vs.servers if o.key != rs.key)
        quorum = self.limits.quorum(vs.key)
        if left >= quorum.serving:
            return ""
        if left == 0:
            if vs.balancer == "ipvs":
                what = f"every new connection to {vs.key} fails"
            elif vs.protocol == "HTTP":
                what = f"every request to {vs.key} gets 503"
            else:
                what = f"every new connection to {vs.key} is closed at once"
            return f"{rs.key} is the last serving server of {vs.key}: {what}"
        rule = f"alert rule {quorum.rule!r}" if quorum.rule else "the last-server guard"
        return (
            f"{vs.key} would have {left} serving server{'s' if left != 1 else ''}, below its "
            f"quorum of {quorum.serving} ({rule}: serving_below = {quorum.serving})"
        )

    def _human_guard(self, balancer: str, service: str, server: str) -> str:
        intent = self.journal.intent(balancer, service, server) if self.journal else None
        if intent is None:
            return ""
        if intent.human_drain:
            return f"drained by {intent.drained_by}; automation leaves it alone"
        if intent.human_weight:
            return (
                f"weight {intent.weight_set} set by {intent.weight_by}; automation leaves it alone"
            )
        return ""

    # -- actions -----------------------------------------------------------------------------

    def drain(
        self,
        balancer: str,
        service: str,
        server: str,
        origin: str = "operator",
        *,
        force: bool = False,
        expire_templates: bool = False,
        note: str = "",
    ) -> ActionResult:
        self._cancel_ramp(balancer, service, server)
        with self._lock:
            plan = self.plan_drain(balancer, service, server, origin)
            if plan.noop and origin in HUMAN and self.journal is not None and not self.readonly:
                intent = self.journal.intent(balancer, service, server)
                if intent is not None and intent.drained_by == "auto":
                    return self._take_over(plan, intent.saved_weight, origin)
            if expire_templates and plan.ok and not self.readonly:
                be = self._balancer(balancer)
                setter = getattr(be, "set_expire_quiescent_template", None)
                if setter is None:
                    return self._result(
                        plan, origin, ok=False, record=False,
                        message=f"{be.name} has no persistence templates to expire",
                    )  # fmt: skip
                try:
                    setter(True)
                except LBError as exc:
                    return self._result(plan, origin, ok=False, message=exc.message)
            return self._run(plan, origin, force=force, note=note)

    def _take_over(self, plan: Plan, saved: int | None, origin: str) -> ActionResult:
        """An operator drains a server automation had quiesced: it is now the operator's."""
        assert self.journal is not None
        key = (plan.balancer, plan.service, plan.server)
        self.journal.mark_drained(*key, saved_weight=saved or 0, origin=origin)
        plan = replace(plan, noop=False, state_after=ServerState.DRAINED)
        return self._result(
            plan,
            origin,
            ok=True,
            message="was quiesced by automation; now held drained by "
            f"{origin} (automation will not restore it)",
            saved=saved,
        )

    def maint(
        self,
        balancer: str,
        service: str,
        server: str,
        origin: str = "operator",
        *,
        force: bool = False,
        cut_sessions: bool = False,
        note: str = "",
    ) -> ActionResult:
        self._cancel_ramp(balancer, service, server)
        with self._lock:
            plan = self.plan_maint(balancer, service, server, origin)
            if cut_sessions and plan.ok:
                be = self._balancer(balancer)
                if not callable(getattr(be, "cut_sessions", None)):
                    return self._result(
                        plan, origin, ok=False, record=False,
                        message=f"{be.name} cannot cut sessions",
                    )  # fmt: skip
                if plan.noop:  # already in maintenance: cutting is what is left to do
                    plan = replace(plan, noop=False)
            return self._run(plan, origin, force=force, cut_sessions=cut_sessions, note=note)

    def set_weight(
        self,
        balancer: str,
        service: str,
        server: str,
        weight: int,
        origin: str = "operator",
        *,
        force: bool = False,
        note: str = "",
    ) -> ActionResult:
        self._cancel_ramp(balancer, service, server)
        with self._lock:
            plan = self.plan_set_weight(balancer, service, server, weight, origin)
            return self._run(plan, origin, force=force, note=note)

    def step_weight(
        self,
        balancer: str,
        service: str,
        server: str,
        delta: int,
        origin: str = "operator",
        *,
        force: bool = False,
    ) -> ActionResult:
        self._cancel_ramp(balancer, service, server)
        with self._lock:
            plan = self.plan_step(balancer, service, server, delta, origin)
            return self._run(plan, origin, force=force)

    def restore(
        self,
        balancer: str,
        service: str,
        server: str,
        origin: str = "operator",
        *,
        force: bool = False,
        ramp_s: float = 0.0,
    ) -> ActionResult:
        """Back to the saved weight; with `ramp_s`, in steps (IPVS has no slow start): the
        first step now, the rest in a thread (`ramps`), which any later action on the server
        cancels."""
        self._cancel_ramp(balancer, service, server)
        with self._lock:
            plan = self.plan_restore(balancer, service, server, origin)
            if plan.noop and plan.ok and not self.readonly:
                plan = self._forget_stale_drain(plan, origin)
            steps = ramp_steps(plan.after or 0, ramp_s) if plan.ok and not plan.noop else []
            if len(steps) < 2 or self.readonly:
                return self._run(plan, origin, force=force)
            first = replace(plan, after=steps[0][1])
            how = f"ramp 1/{len(steps)} to weight {plan.after} over {ramp_s:g} s"
            res = self._run(first, origin, force=force, note=how)
            if not res.ok:
                return res
            ramp = Ramp(self, plan, steps, origin, res.journal_id)
            self.ramps[(balancer, service, server)] = ramp
            ramp.start()
            return replace(res, message=f"{res.message}; {how}")

    def _forget_stale_drain(self, plan: Plan, origin: str) -> Plan:
        """The server serves, but the journal still says drained (the balancer was reset
        outside ctop): clear the record so it no longer claims a drain, and journal that."""
        intent = self.journal.intent(plan.balancer, plan.service, plan.server) if self.journal \
            else None
        if self.journal is None or intent is None or not intent.drained:
            return plan
        self.journal.clear_drain(plan.balancer, plan.service, plan.server)
        plan = replace(plan, message=f"{plan.message}; stale drain record by "
                       f"{intent.drained_by} ({intent.drained_user}) cleared")
        self._result(plan, origin, ok=True, message=plan.message)  # one journal row
        return plan

    def _cancel_ramp(self, balancer: str, service: str, server: str) -> None:
        ramp = self.ramps.pop((balancer, service, server), None)
        if ramp is not None:
            ramp.cancel("another action on the server")

    def wait_ramps(self, timeout: float | None = None) -> None:
        """Block until every ramp of this controller ended (the CLI without a daemon)."""
        for ramp in list(self.ramps.values()):
            ramp.join(timeout)

    # -- what-if and dry run -------------------------------------------------------------------

    def what_if(self, plan: Plan) -> list[str]:
        """The what-if table for a plan (shares by weight; CPU when node metrics are known)."""
        try:
            vs, _ = self.find(plan.balancer, plan.service, plan.server)
        except LBError:
            return []
        basis = load_basis(vs)
        loads = (self.node_loads(vs.balancer, vs.key) if self.node_loads else None) or {}
        rows = []
        for rs in vs.servers:
            now = _serving_weight(rs)
            after = (plan.after or 0) if rs.key == plan.server else now
            if rs.key == plan.server and rs.state == ServerState.DOWN:
                after = 0
            cores, cpu = loads.get(rs.key, (None, None))
            load = rs.conns_per_s if basis == "rate" else float(rs.active_conns)
            rows.append(ServerNow(rs.key, now, after, load, cores, cpu))
        lim = self.limits
        preds = predict(rows, cpu_warn=lim.cpu_warn, cpu_crit=lim.cpu_crit)
        why = ""
        if not any(p.cpu is not None for p in preds):
            why = (
                "no node metrics for these servers"
                if self.node_loads is not None
                else "no node metrics without a running ctop serve"
            )
        head = f"what if ({'new conn/s' if basis == 'rate' else 'active connections'}):"
        return [head, *table(preds, basis=basis, cpu_warn=lim.cpu_warn,
                             cpu_crit=lim.cpu_crit, no_metrics=why)]  # fmt: skip

    def templates_before(self, plan: Plan) -> tuple[int | None, str]:
        """On a persistent service: the templates pointing at the server now, and what a drain
        leaves them doing."""
        try:
            vs, _ = self.find(plan.balancer, plan.service, plan.server)
        except LBError:
            return None, ""
        if not vs.persistent_s:
            return None, ""
        n, note = self._templates_note(self._balancer(plan.balancer), vs, plan.server)
        return n, note.removeprefix("; ").replace(" still point", " point", 1)

    def connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        """The server's connections (IPVS: with persistence templates) for the `c` view.
        Raises LBError."""
        self.find(balancer, service, server)
        conns = getattr(self._balancer(balancer), "connections", None)
        if not callable(conns):
            raise LBError(f"{balancer} cannot list connections")
        return list(conns(service, server))

    # -- draining until empty ------------------------------------------------------------------

    def drain_status(self, balancer: str, service: str, server: str) -> tuple[int, int | None]:
        """(active connections, persistence templates or None when the service has none) of
        one server, read now. Raises LBError."""
        vs, rs = self.find(balancer, service, server)
        templates = None
        if vs.persistent_s:
            conns = getattr(self._balancer(balancer), "connections", None)
            if callable(conns):
                templates = sum(c.template for c in conns(service, server))
        return rs.active_conns, templates

    def _run(
        self,
        plan: Plan,
        origin: str,
        *,
        force: bool = False,
        cut_sessions: bool = False,
        note: str = "",
    ) -> ActionResult:
        if self.readonly:
            return self._result(
                plan,
                origin,
                ok=False,
                record=False,
                message="read-only mode: load-balancer actions are disabled",
            )
        if plan.noop:
            return self._result(plan, origin, ok=True, message=plan.message, record=False)
        if not plan.ok:
            return self._result(plan, origin, ok=False, message=plan.message)
        if plan.guard and not force:
            return self._result(
                plan, origin, ok=False, message=f"refused: {plan.guard} (--force to do it anyway)"
            )
        refusal = next((r for hook in self.before_change if (r := hook(plan))), "")
        if refusal:
            return self._result(plan, origin, ok=False, message=refusal)
        be = self._balancer(plan.balancer)
        vs, before = self.find(plan.balancer, plan.service, plan.server)
        try:
            if not (cut_sessions and before.state == ServerState.MAINT):
                self._apply(be, plan, before)
        except LBError as exc:
            back = self._put_back(be, plan, before)
            return self._result(plan, origin, ok=False, message=exc.message + back, applied=True)
        try:
            _, after = self.find(plan.balancer, plan.service, plan.server)
        except LBError as exc:
            return self._result(
                plan,
                origin,
                ok=False,
                applied=True,
                message=f"applied, but reading back failed: {exc.message}",
            )
        problem = _check(plan, after)
        if problem:
            back = self._put_back(be, plan, before)
            return self._result(
                plan, origin, ok=False, applied=True, rs_after=after, message=problem + back
            )
        saved = self._remember(plan, before, origin)
        message, templates = _done(plan, after), None
        message += "".join(hook(plan) for hook in self.after_change)
        if cut_sessions:
            try:
                be.cut_sessions(plan.service, plan.server)  # type: ignore[attr-defined]
                message += "; its sessions were cut"
            except LBError as exc:
                message += f"; cutting its sessions failed: {exc.message}"
        if plan.after == 0 and vs.persistent_s:
            templates, extra = self._templates_note(be, vs, plan.server)
            message += extra
        if plan.guard:
            message += f" (forced: {plan.guard})"
        result = "ok" + (f" ({note})" if note else "") + (" forced" if plan.guard else "")
        if cut_sessions:
            result += " +cut sessions"
        return self._result(
            plan, origin, ok=True, applied=True, rs_after=after, message=message, saved=saved,
            templates=templates, result_text=result,
        )  # fmt: skip

    def _templates_note(self, be: Balancer, vs: VirtualService, server: str) -> tuple[int, str]:
        """How many persistence templates still send clients to a drained server, and what to
        do about it (IPVS keeps using them while expire_quiescent_template is 0)."""
        conns = getattr(be, "connections", None)
        if not callable(conns):
            return 0, ""
        try:
            n = sum(c.template for c in conns(vs.key, server))
        except LBError as exc:
            return 0, f"; persistence templates unknown: {exc.message}"
        expire = getattr(be, "expire_quiescent_template", lambda: None)()
        many = f"{n} persistence template{'s' if n != 1 else ''}"
        verb = "point" if n != 1 else "points"
        if expire:
            return n, (
                f"; {many} {verb} at it: they expire at each client's next connection "
                "(net.ipv4.vs.expire_quiescent_template = 1)"
            )
        return n, (
            f"; {many} still {verb} at it: clients "
            f"holding one keep coming to this server until it expires ({vs.persistent_s} s "
            "after their last connection), because net.ipv4.vs.expire_quiescent_template = "
            f"{'0' if expire is False else 'unknown'}. To send them elsewhere at once: sysctl "
            "-w net.ipv4.vs.expire_quiescent_template=1 (or drain with --expire-templates)"
        )

    def _apply(self, be: Balancer, plan: Plan, rs: RealServer) -> None:
        svc, srv = plan.service, plan.server
        after = plan.after or 0
        if plan.action == "drain":
            be.drain(svc, srv)
        elif plan.action == "maint":
            be.maint(svc, srv)
        elif plan.action == "restore":
            be.ready(svc, srv, after)
        elif after > 0 and rs.state in (ServerState.DRAINED, ServerState.QUIESCED):
            be.ready(svc, srv, after)  # a weight on a drained server puts it back in rotation
        else:
            be.set_weight(svc, srv, after)

    def _put_back(self, be: Balancer, plan: Plan, before: RealServer) -> str:
        """Return the server to `before` after a failure; the note says how that went."""
        svc, srv = plan.service, plan.server
        try:
            _, now = self.find(plan.balancer, svc, srv)
            if _out_how(now) == _out_how(before):
                return ""
            if before.state == ServerState.MAINT:  # a failed restore or weight: back into maint
                if now.state != ServerState.MAINT:  # first, so it takes no traffic meanwhile
                    be.maint(svc, srv)
                if now.weight != before.weight:
                    be.set_weight(svc, srv, before.weight)
                return " (put back as it was)"
            if now.state == ServerState.MAINT:  # a failed maint got that far: leave maint first
                be.ready(svc, srv, before.weight)
                _, now = self.find(plan.balancer, svc, srv)
                if _out_how(now) == _out_how(before):
                    return " (put back as it was)"
            if is_drained(before) and before.weight == 0:
                be.set_weight(plan.service, plan.server, 0)
            elif is_drained(before):
                if now.weight != before.weight:
                    be.set_weight(plan.service, plan.server, before.weight)
                be.drain(plan.service, plan.server)
            elif is_drained(now):
                be.ready(plan.service, plan.server, before.weight)
            else:
                be.set_weight(plan.service, plan.server, before.weight)
        except LBError as exc:
            return f" (putting it back failed too: {exc.message})"
        return " (put back as it was)"

    def _remember(self, plan: Plan, before: RealServer, origin: str) -> int | None:
        """Record the intent; returns the weight a restore goes back to (drain, maint)."""
        if self.journal is None or plan.action == "ramp":  # a ramp step keeps the restore's
            return None
        j, key = self.journal, (plan.balancer, plan.service, plan.server)
        if plan.after == 0:  # drain, maint or weight 0: remember what restore goes back to
            saved = before.weight or plan.before or 0
            intent = j.intent(*key)
            # Already out (drained, now maint): the weight before the first step is the one
            # to restore; on IPVS or after a weight 0 the balancer's own weight is 0 by now.
            out = is_drained(before) or before.state == ServerState.MAINT
            if out and intent is not None and intent.drained and intent.saved_weight:
                saved = intent.saved_weight
            j.mark_drained(*key, saved_weight=saved, origin=origin)
            return saved
        if plan.action == "restore":
            j.clear_drain(*key)
        else:
            j.clear_drain(*key)
            j.mark_weight(*key, weight=plan.after or 0, origin=origin)
        return None

    def _result(
        self,
        plan: Plan,
        origin: str,
        *,
        ok: bool,
        message: str,
        applied: bool = False,
        record: bool = True,
        rs_after: RealServer | None = None,
        saved: int | None = None,
        templates: int | None = None,
        result_text: str = "",
    ) -> ActionResult:
        after = effective_weight(rs_after) if rs_after is not None else None
        if after is None and plan.noop:
            after = plan.before  # nothing changed
        jid = None
        if record and self.journal is not None:
            jid = self.journal.record(
                origin=origin,
                balancer=plan.balancer,
                service=plan.service,
                server=plan.server,
                action=plan.action,
                weight_before=plan.before,
                weight_after=after if after is not None else (plan.after if ok else plan.before),
                result=(result_text or "ok") if ok else message,
                saved_weight=saved,
            )
        return ActionResult(
            ok=ok,
            message=message,
            action=plan.action,
            balancer=plan.balancer,
            service=plan.service,
            server=plan.server,
            before=plan.before,
            after=after,
            state_before=plan.state_before,
            state_after=rs_after.state if rs_after is not None else None,
            applied=applied,
            noop=plan.noop,
            origin=origin,
            journal_id=jid,
            guard=plan.guard,
            templates=templates,
        )


def _serving(rs: RealServer) -> bool:
    """Takes new connections now: in rotation, up, with a weight."""
    return rs.state == ServerState.SERVING and rs.weight > 0


def _serving_weight(rs: RealServer) -> int:
    return rs.weight if _serving(rs) else 0


def _drained_state(origin: str) -> ServerState:
    return ServerState.QUIESCED if origin == "auto" else ServerState.DRAINED


def _maint_refusal(be: Balancer) -> str:
    """Why `be` can't take a server into maintenance ("" when it can)."""
    if not callable(getattr(be, "maint", None)):  # a balancer written before maint existed
        return f"{be.name} has no maintenance state; drain it instead"
    return getattr(be, "no_maint", "")


def _out_how(rs: RealServer) -> tuple[int, bool, bool]:
    """What _put_back must restore: the weight, drained or not, in maintenance or not."""
    return rs.weight, is_drained(rs), rs.state == ServerState.MAINT


def _check(plan: Plan, rs: RealServer) -> str:
    """Why the read-back doesn't match the plan ("" when it does)."""
    got = effective_weight(rs)
    if plan.state_after == ServerState.MAINT and rs.state != ServerState.MAINT:
        return f"read back shows weight {got} ({rs.state}), expected maint"
    if plan.after == 0:
        if not is_drained(rs) and rs.state != ServerState.MAINT:
            return f"read back shows weight {got} ({rs.state}), expected drained"
        return ""
    if rs.weight != plan.after:
        return f"read back shows weight {rs.weight}, expected {plan.after}"
    if plan.state_after == ServerState.SERVING and rs.state in _OUT:
        return f"read back shows {rs.state}, expected serving"
    return ""


def _done(plan: Plan, rs: RealServer) -> str:
    return (
        f"{plan.balancer} {plan.service}/{plan.server}: {plan.action} done, weight "
        f"{plan.before} → {effective_weight(rs)} ({rs.state})"
    )


# Origins a human acts under; automation checks these before touching a server.
HUMAN_ORIGINS = HUMAN
