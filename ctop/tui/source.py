"""Where the UI gets its data: the `EngineLike` protocol, and a fixed `StaticSource`.

The app only talks to an EngineLike, so the same UI runs on the real `ctop.engine.Engine`, on the
running `ctop serve` (`ctop.control.RemoteSource`), and on fixed snapshots in tests and
screenshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ctop.lb.request import ActionRequest, perform, plan_of
from ctop.snapshot import EventView, Snapshot

if TYPE_CHECKING:
    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.base import Connection

History = dict[str, list[tuple[float, float]]]


class EngineLike(Protocol):
    readonly: bool
    lb: LBController | None

    def snapshot(self) -> Snapshot: ...

    def history(self, node_id: str, metrics: Sequence[str], seconds: float) -> History: ...

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]: ...

    def watch(self, node_id: str | None) -> None:
        """The node whose raw metrics the UI shows (node detail), or None. A source that
        fetches snapshots from elsewhere brings only that node's metrics along."""

    async def lb_plan(self, request: ActionRequest) -> Plan | None:
        """What the request would do now (None: this source can't say; the UI shows its own
        estimate from the snapshot). Raises when there is no load balancer."""

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        """Run the change; with `request.expect` only if the server is still as planned."""

    async def lb_connections(self, backend: str, service: str, server: str) -> list[Connection]:
        """One real server's connections, read now (the `c` view). Raises when unreadable."""


class StaticSource:
    """Fixed snapshots (advanced by `advance()`), fixed history, and an optional real LB.

    `lb_action` runs the real LBController in a thread like the engine does, so pilot tests
    reach a real balancer; without a controller it refuses like an engine without LB would.
    """

    def __init__(
        self,
        snapshots: Snapshot | Sequence[Snapshot],
        *,
        history: Callable[[str, Sequence[str], float], History] | None = None,
        lb: LBController | None = None,
        readonly: bool = False,
    ) -> None:
        self._snaps = [snapshots] if isinstance(snapshots, Snapshot) else list(snapshots)
        self._i = 0
        self._history = history
        self.lb = lb
        self.readonly = readonly
        self.actions: list[tuple[str, str, str, str, int | None]] = []  # what lb_action was asked

    def snapshot(self) -> Snapshot:
        return self._snaps[self._i]

    def advance(self) -> Snapshot:
        self._i = min(self._i + 1, len(self._snaps) - 1)
        return self._snaps[self._i]

    def history(self, node_id: str, metrics: Sequence[str], seconds: float) -> History:
        if self._history is None:
            return {m: [] for m in metrics}
        return self._history(node_id, metrics, seconds)

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        events = [e for e in self.snapshot().events if e.node_id == node_id]
        return events[-limit:]

    def watch(self, node_id: str | None) -> None:
        pass  # every node's metrics are in the snapshots already

    async def lb_plan(self, request: ActionRequest) -> Plan | None:
        if self.lb is None:
            return None
        return await asyncio.to_thread(plan_of, self.lb, request)

    async def lb_connections(self, backend: str, service: str, server: str) -> list[Connection]:
        if self.lb is None:
            raise RuntimeError("no load balancer configured")
        return await asyncio.to_thread(self.lb.connections, backend, service, server)

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        from ctop.lb.actions import ActionResult

        r = request
        if not r.dry_run:  # the dialog's what-if is not an action
            self.actions.append((r.verb, r.backend, r.service, r.server, r.value))
        lb = self.lb
        if lb is None or self.readonly:
            why = "read-only mode" if self.readonly else "no load balancer configured"
            return ActionResult(False, why, r.action, r.backend, r.service, r.server, None, None)
        return await asyncio.to_thread(perform, lb, request)
