"""A balancer as a snapshot shows it: reads its LB views, refuses every change.

A source without a real balancer behind it (fixed snapshots in tests and screenshots) plans
with it, so its confirmation dialogs come from the same planner (`ctop.lb.request.plan_of`)
as the engine's and the daemon's, and its actions fail with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from ctop.lb.base import LBError, RealServer, ServerState, VirtualService
from ctop.snapshot import Snapshot

NOT_CONNECTED = "no load balancer configured"
MAX_WEIGHT = {"ipvs": 2**31 - 1}  # else HAProxy's 256


class SnapshotBalancer:
    """The balancer named `name` in the LB views of `snapshot()`."""

    no_maint = ""

    def __init__(self, name: str, snapshot: Callable[[], Snapshot]) -> None:
        self.name = name
        self.max_weight = MAX_WEIGHT.get(name, 256)
        self._snapshot = snapshot

    def services(self) -> list[VirtualService]:
        return [
            VirtualService(
                key=view.key, balancer=self.name, protocol=view.protocol, address="", port=0,
                scheduler=view.scheduler,
                servers=tuple(RealServer(
                    key=rs.key, address=rs.address, port=rs.port, weight=rs.weight,
                    state=ServerState(rs.state), active_conns=rs.active_conns,
                    inactive_conns=rs.inactive_conns, conns_per_s=rs.conns_per_s,
                    forward=rs.forward) for rs in view.servers))
            for view in self._snapshot().lb if view.balancer == self.name
        ]

    def _refuse(self) -> None:
        raise LBError(f"{NOT_CONNECTED}: {self.name} is only a snapshot's view")

    def set_weight(self, service_key: str, server_key: str, weight: int) -> None:
        self._refuse()

    def drain(self, service_key: str, server_key: str) -> None:
        self._refuse()

    def maint(self, service_key: str, server_key: str) -> None:
        self._refuse()

    def ready(self, service_key: str, server_key: str, weight: int) -> None:
        self._refuse()
