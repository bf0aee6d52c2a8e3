"""Where the UI gets its data: the `EngineLike` protocol, and a fixed `StaticSource`.

The app only talks to an EngineLike, so the same UI runs on the real `ctop.engine.Engine`, on a
daemon's snapshots (`ctop.tui.remote.RemoteSource`), and on fixed snapshots in tests and
screenshots. Every load-balancer plan and action goes through a `ctop.lb.service.LBService`
(the engine's, the daemon's, or StaticSource's own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ctop.alerts import parse_rules
from ctop.lb.actions import LBController
from ctop.lb.limits import limits_from_rules
from ctop.lb.request import ActionRequest
from ctop.lb.service import LBService
from ctop.lb.snapshot_balancer import SnapshotBalancer
from ctop.silences import Silence, checked
from ctop.snapshot import EventView, Snapshot

if TYPE_CHECKING:
    from ctop.lb.actions import ActionResult, Plan
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

    async def lb_plan(self, request: ActionRequest) -> Plan:
        """What the request would do now. Raises when there is no load balancer."""

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        """Run the change; with `request.expect` only if the server is still as planned."""

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        """One real server's connections, read now (the `c` view). Raises when unreadable."""


class StaticSource:
    """Fixed snapshots (advanced by `advance()`), fixed history, and an optional real LB.

    Plans and actions run on a load-balancer service like the engine's: on the real
    LBController when one is given (pilot tests reach a real balancer), else on the
    snapshot's own LB view, which plans but refuses every change.
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
        self.silenced: list[Silence] = []  # what silence was asked
        if lb is None:
            names = dict.fromkeys(v.balancer for s in self._snaps for v in s.lb)
            lb = LBController({n: SnapshotBalancer(n, self.snapshot) for n in names}, None)
            lb.limits = limits_from_rules(parse_rules(None))  # the default rules' CPU thresholds
        self._lb = LBService(lb, self.snapshot, readonly=readonly)

    def snapshot(self) -> Snapshot:
        return self._snaps[self._i]

    def set_snapshot(self, snap: Snapshot) -> None:
        """Show `snap` from now on: a test's tick, made by hand."""
        self._snaps[self._i] = snap

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

    async def lb_plan(self, request: ActionRequest) -> Plan:
        return await self._lb.plan(request)

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        return await self._lb.connections(balancer, service, server)

    async def silence(self, *, node: str = "", group: str = "", rule: str = "",
                      duration: str | float, reason: str) -> Silence:
        """Recorded in `silenced` (no engine here to keep it)."""
        node, group, rule, seconds, reason = checked(node, group, rule, duration, reason)
        now = self.snapshot().ts
        s = Silence(len(self.silenced) + 1, node, group, rule, "test", reason, now,
                    now + seconds)
        self.silenced.append(s)
        return s

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        r = request
        if not r.dry_run:  # the dialog's what-if is not an action
            self.actions.append((r.verb, r.balancer, r.service, r.server, r.value))
        return await self._lb.act(request)
