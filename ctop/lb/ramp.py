"""Restore with a ramp: the weight goes back to the saved one in steps over a time.

IPVS has no slow start, so a restored server at full weight gets its whole share of new
connections at once (with lc/wlc: all of them, since it has none). A ramp of N steps sets
ceil(W*k/N) at k = 1..N, evenly spread over the ramp; at most 10 steps, at most one a second.

The first step runs with the restore itself; the rest run in a thread of the controller that
did it (the daemon, or `ctop lb` which waits for it). Each step is journaled (action "ramp",
result "ok (ramp of #ID k/N)"). A step is skipped and the ramp ends when the server is no
longer as the previous step left it (another action, here or in another process), or when an
action on that server through the same controller cancels it.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ctop.lb.base import ServerState

if TYPE_CHECKING:
    from ctop.lb.actions import LBController, Plan

MAX_STEPS = 10


def ramp_steps(target: int, ramp_s: float) -> list[tuple[float, int]]:
    """(seconds after the start, weight) for each step; [] when there is nothing to ramp."""
    if ramp_s <= 0 or target <= 1:
        return []
    n = min(target, MAX_STEPS, max(2, int(ramp_s) + 1))
    return [(ramp_s * (k - 1) / (n - 1), math.ceil(target * k / n)) for k in range(1, n + 1)]


class Ramp:
    def __init__(
        self,
        lb: LBController,
        plan: Plan,
        steps: list[tuple[float, int]],
        origin: str,
        first_id: int | None,
    ) -> None:
        self.lb, self.plan, self.steps, self.origin = lb, plan, steps, origin
        self.first_id = first_id
        self.key = (plan.balancer, plan.service, plan.server)
        self.weight = steps[0][1]  # what the last step set
        self.done = 0  # steps applied
        self.outcome = ""  # why it ended ("" while running)
        self._cancel = threading.Event()
        # the steps are journaled as whoever asked for the restore (the daemon's caller)
        ctx = contextvars.copy_context()
        self._thread = threading.Thread(
            target=lambda: ctx.run(self._run), name=f"ramp {plan.server}", daemon=True
        )
        self._start = time.monotonic()

    def start(self) -> None:
        self.done = 1
        self._thread.start()

    def cancel(self, why: str) -> None:
        if not self._cancel.is_set():
            self.outcome = f"cancelled by {why}"
            self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        n = len(self.steps)
        for k, (at, weight) in enumerate(self.steps[1:], 2):
            if self._cancel.wait(max(0.0, self._start + at - time.monotonic())):
                return
            if not self._step(k, n, weight):
                break
        else:
            self.outcome = f"done: weight {self.weight}"
        if self.lb.ramps.get(self.key) is self:
            self.lb.ramps.pop(self.key, None)

    def _step(self, k: int, n: int, weight: int) -> bool:
        lb, (balancer, service, server) = self.lb, self.key
        with lb._lock:
            if self._cancel.is_set():
                return False
            plan = lb.plan_set_weight(balancer, service, server, weight, self.origin, action="ramp")
            if plan.state_before is None:  # the server is gone
                self.outcome = f"stopped: {plan.message}"
                return False
            # the plan's own read: the server must be as the last step left it
            if plan.configured_before != self.weight or plan.state_before != ServerState.SERVING:
                self.outcome = (
                    f"stopped: the server changed outside the ramp (weight "
                    f"{plan.configured_before}, {plan.state_before}; the ramp had set "
                    f"{self.weight})"
                )
                return False
            ref = f"#{self.first_id}" if self.first_id else "restore"
            result = lb._run(replace(plan, guard=""), self.origin, note=f"ramp of {ref} {k}/{n}")
        if lb.on_ramp_step is not None:
            lb.on_ramp_step(result)
        if not result.ok:
            self.outcome = f"stopped: {result.message}"
            return False
        self.weight, self.done = weight, k
        return True
