"""The director's load-balancer service: monitoring and automation rounds, and actions.

The engine hands it snapshots; it never sees the mutable cluster model. A round (in a worker
thread, so a slow `ipvsadm` or HAProxy socket never stalls ingest) reads the tables, counts
the probe results that judge each real server, lets automation act, reports drift and builds
the LB views the next snapshot carries (ctop.lb.monitor). Actions — a UI's key, `ctop lb`
through the control socket — run one at a time per balancer; a round holds every balancer's
lock, so a change never lands in the middle of one. What happened reaches the engine as
events (`on_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ctop.lb.actions import ActionResult, LBController, Plan
from ctop.lb.base import Connection, LBError
from ctop.lb.config import LBConfig
from ctop.lb.drainwatch import EmptyWatch
from ctop.lb.monitor import LBMonitor
from ctop.lb.request import ActionRequest, perform, plan_of, resolved
from ctop.snapshot import EventView, LBServiceView, Liveness, Snapshot

if TYPE_CHECKING:
    from ctop.lb.automation import AutoQuiescer
    from ctop.lb.journal import Actor
    from ctop.nats.pair import PairSync

log = logging.getLogger(__name__)

URGENT_POLL = 0.1  # seconds between looks for a failed probe result automation must count
OWNERS_EVERY = 10  # rounds between looks at who else owns the tables (ctop.lb.owners)

READONLY_REFUSAL = ("read-only: this ctop refuses load-balancer changes (--readonly, "
                    "readonly = true or [lb] readonly = true)")

# the dry run's line when the peer director cannot confirm (the dialog offers 'o' on it)
PAIR_REFUSAL_PREFIX = "pair: "

EventSink = Callable[[Sequence[EventView]], None]
ViewsHook = Callable[[tuple[LBServiceView, ...]], tuple[LBServiceView, ...]]


class LBService:
    """Rounds on snapshots and actions on the balancers of one director."""

    def __init__(
        self,
        controller: LBController,
        snapshot: Callable[[], Snapshot],
        cfg: LBConfig | None = None,
        *,
        quiescer: AutoQuiescer | None = None,
        readonly: bool = False,
        on_events: EventSink = lambda events: None,
        history: ViewsHook | None = None,
    ) -> None:
        self.controller = controller
        self.snapshot = snapshot  # the newest snapshot, whenever a round starts
        self.readonly = readonly
        self.on_events = on_events
        # each round's views into the history; returns them with their recent shares
        self.history = history
        self.monitor = LBMonitor(controller, cfg, quiescer)
        self.error = ""  # the last round's failure ("" = it read the balancers)
        self.views: tuple[LBServiceView, ...] = ()
        self.imbalance = 0.0
        self._empty = EmptyWatch()
        # One change at a time per balancer: an action holds its balancer's lock, a round
        # holds them all (ctop.lb.lock serialises other processes).
        self._locks: dict[str, threading.Lock] = {}
        # a director pair (ctop.nats.pair): shares human changes with the peer, gets its
        # changes; set by the engine when [nats] is configured
        self.pair: PairSync | None = None
        # who else owns the tables (keepalived, ldirectord, a state file): the LB note
        self.describe_owners: Callable[[], str] | None = None
        self.owners_note = ""
        controller.node_loads = self.node_loads  # the what-if's CPU per server
        controller.on_ramp_step = lambda r: self._note_action(r, "restore ramp")

    def close(self) -> None:
        self.monitor.close()

    # -- rounds -------------------------------------------------------------------------------

    async def run(self, every: float) -> None:
        """Rounds until cancelled: every `every` seconds, or at once when a failed probe
        result is waiting to be counted."""
        while True:
            await self.refresh(log_failure=True)
            await self._wait(every)

    async def refresh(self, *, log_failure: bool = False) -> None:
        """One round now on the newest snapshot, off the loop; a failure is kept in `error`
        (and logged once, by the loop)."""
        try:
            await asyncio.to_thread(self.round, self.snapshot())
            self.error = ""
        except Exception as e:
            message = getattr(e, "message", None) or str(e) or type(e).__name__
            if log_failure and message != self.error:
                log.warning("reading the load balancers failed: %s", message)
            self.error = message

    async def _wait(self, seconds: float) -> None:
        """`seconds`, or less when a failed probe result is waiting to be counted
        (automation then acts within moments of the deciding result)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(URGENT_POLL, left))
            # (not while the balancer cannot be read: that would retry every 0.1 s)
            if not self.error and self.monitor.urgent(self.snapshot()):
                return

    def round(self, snap: Snapshot) -> None:
        """Worker thread: one monitor round (tables, health, automation, drift, advice)."""
        if self.describe_owners is not None and self.monitor.rounds % OWNERS_EVERY == 0:
            self.owners_note = self.describe_owners()  # (/proc and configs: not every round)
        with self._holding(list(self.controller.balancers)):
            outcome = self.monitor.round(snap, self.readonly)
        for result, why in outcome.actions:
            self._note_action(result, why)
        if outcome.events:
            self.on_events(outcome.events)
        views = outcome.views if self.history is None else self.history(outcome.views)
        self.views, self.imbalance = views, outcome.imbalance
        if self.pair is not None:  # publish our table, compare with the peer's
            self.pair.round(views)
        empty = self._empty.observe(outcome.services)  # "a drained server is empty"
        if empty:
            self.on_events([EventView(time.time(), "action", "", text) for text in empty])

    @contextlib.contextmanager
    def _holding(self, balancers: Sequence[str]) -> Iterator[None]:
        """Worker thread: hold these balancers' locks (always taken in name order)."""
        locks = [self._locks.setdefault(b, threading.Lock()) for b in sorted(balancers)]
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            yield

    def node_loads(
        self, balancer: str, service: str
    ) -> dict[str, tuple[float | None, float | None]]:
        """{server: (cores, CPU %)} of one service's real servers from their agents, for the
        what-if (worker thread): the nodes the snapshot's LB view maps them to."""
        snap = self.snapshot()
        out: dict[str, tuple[float | None, float | None]] = {}
        for view in snap.lb:
            if (view.balancer, view.key) != (balancer, service):
                continue
            for rs in view.servers:
                node = snap.node(rs.node_id) if rs.node_id else None
                if node is None or node.liveness is not Liveness.ALIVE or not node.metrics:
                    continue
                out[rs.key] = (node.cores or None, node.metrics.get("cpu_percent"))
        return out

    # -- actions ------------------------------------------------------------------------------

    async def plan(self, request: ActionRequest) -> Plan:
        """What `request` would do now (the confirmation dialog's body)."""
        lb = self.controller

        def run() -> Plan:
            req = resolved(lb, request)
            with self._holding([req.balancer]):
                return plan_of(lb, req)

        return await asyncio.to_thread(run)

    async def act(self, request: ActionRequest, actor: Actor | None = None) -> ActionResult:
        """Run one change: one at a time per balancer, recorded in the journal as `actor`,
        published as an event, the LB views read again. A dry run changes nothing and tells
        nobody."""
        if request.verb == "advice" and request.value is None and not self.readonly:
            # the weight the operator confirmed in the dialog, else the current advice
            request = replace(request, value=self._advised(request.service, request.server))

        def run(request: ActionRequest = request) -> ActionResult:
            return self._perform(request, actor)

        pair = self.pair
        if pair is not None and pair.shares(request) and not self.readonly:
            result = await asyncio.to_thread(pair.act, request, actor, run)
        else:
            result = await asyncio.to_thread(run)
        if result.dry_run:  # the what-if: nothing happened, nothing to tell the others
            return self._pair_note(result, request)
        self._note_action(result, actor=actor, reason=request.why)
        await self.refresh()  # the views show the outcome now, not after the next round
        return result

    def _pair_note(self, result: ActionResult, request: ActionRequest) -> ActionResult:
        """A dry run (the dialog's what-if) says when the peer could not confirm now, so the
        dialog can offer to act on this director only."""
        pair = self.pair
        if pair is None or not pair.shares(replace(request, dry_run=False)) or request.local:
            return result
        problem = pair.problem()
        if not problem:
            return result
        return replace(result, message=f"{result.message}\n{PAIR_REFUSAL_PREFIX}{problem}: "
                       "refused unless on this director only (the peer applies it when back)")

    def _perform(self, request: ActionRequest, actor: Actor | None) -> ActionResult:
        """Worker thread: resolve, refuse when read-only, perform under the balancer's lock."""
        lb = self.controller
        try:
            req = resolved(lb, request)
        except LBError as exc:
            return ActionResult(False, exc.message, request.action, request.balancer,
                                request.service, request.server, None, None,
                                origin=request.origin)
        if self.readonly and not req.dry_run:  # a dry run changes nothing
            return ActionResult(False, READONLY_REFUSAL, req.action, req.balancer,
                                req.service, req.server, None, None, origin=req.origin)
        with self._holding([req.balancer]):
            return perform(lb, req, actor)

    def apply_peer(self, request: ActionRequest, actor: Actor) -> ActionResult:
        """The pair's applier thread: a peer director's intent on our balancer, journaled
        as `actor` (user@director) and shown as an event."""
        result = self._perform(request, actor)
        self._note_action(result, "from the peer director", actor=actor, reason=request.why)
        return result

    async def connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        """One real server's connections, read now (the `c` view, an attached UI's too)."""
        return await asyncio.to_thread(self.controller.connections, balancer, service, server)

    def _advised(self, service: str, server: str) -> int:
        for view in self.views:
            for s in view.servers:
                if view.key == service and s.key == server and s.advised_weight is not None:
                    return s.advised_weight
        raise ValueError(f"no weight advice for {server} in {service}")

    def _note_action(self, result: ActionResult, why: str = "", actor: Actor | None = None,
                     reason: str | None = None) -> None:
        who = f"{actor.text} " if actor is not None else ""
        text = (f"{who}{result.origin} {result.action} {result.balancer} {result.service} "
                f"{result.server}: {result.before} → {result.after} "
                f"{'ok' if result.ok else 'FAILED: ' + result.message}")
        if why:
            text += f" ({why})"
        if reason:  # the operator's own words (--why, the dialog)
            text += f" — why: {reason}"
        node = ""
        for view in self.views:
            for s in view.servers:
                if view.key == result.service and s.key == result.server:
                    node = s.node_id
        self.on_events([EventView(time.time(), "action", node, text)])
