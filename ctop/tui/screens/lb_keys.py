"""The load-balancer action keys, shared by the main and node detail screens.

Each screen says which real server is selected (`lb_target`); the app runs the dialog flow.
In read-only mode the keys are hidden from the footer and refused.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from ctop.tui.widgets.lb_pane import Target

ACTIONS = {"lb_drain", "lb_maint", "lb_weight", "lb_step", "lb_restore", "lb_advice",
           "lb_reapply", "lb_accept"}


class LBKeys:
    LB_BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "lb_drain", "Drain", tooltip="drain: no new connections, open ones finish"),
        Binding("m", "lb_maint", "Maint",
                tooltip="maintenance: no traffic at all, not even sticky (HAProxy)"),
        Binding("w", "lb_weight", "Weight", tooltip="set the weight"),
        Binding("plus", "lb_step(1)", "+1", key_display="+", tooltip="weight up / down by 1"),
        Binding("minus", "lb_step(-1)", "-1", key_display="-"),
        Binding("r", "lb_restore", "Restore",
                tooltip="restore the weight from before the drain or maintenance"),
        Binding("A", "lb_advice", "Advised", tooltip="apply the advised weight (ADV column)"),
        # drift (a ≠ on the row): the journal's intent back on the balancer, or the live state
        Binding("R", "lb_reapply", "Re-apply", show=False,
                tooltip="drift (≠): re-apply the journal's drain or weight"),
        Binding("L", "lb_accept", "Accept live", show=False,
                tooltip="drift (≠): accept the live state, change nothing"),
        # a read, so also in read-only mode; kept out of the footer (listed in `?`)
        Binding("c", "lb_connections", "Connections", show=False,
                tooltip="the server's connections (also read-only)"),
    ]

    def lb_target(self) -> Target | None:
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # read-only: False hides the key from the footer and refuses it; in the past (T,
        # ctop --at) there are no connections to read either
        if action == "lb_connections":
            return getattr(self.app, "past", None) is None
        return not (action in ACTIONS and self.app.readonly)  # type: ignore[attr-defined]

    def _request(self, verb: str, value: int | None = None) -> None:
        target = self.lb_target()
        if target is None:
            self.app.notify(
                "select a real server first (tab to the load-balancer pane)",  # type: ignore[attr-defined]
                severity="warning",
            )
            return
        self.app.lb_request(verb, target, value)  # type: ignore[attr-defined]

    def action_lb_drain(self) -> None:
        self._request("drain")

    def action_lb_maint(self) -> None:
        self._request("maint")

    def action_lb_weight(self) -> None:
        self._request("weight")

    def action_lb_step(self, delta: int) -> None:
        self._request("step", delta)

    def action_lb_restore(self) -> None:
        self._request("restore")

    def action_lb_advice(self) -> None:
        self._request("advice")

    def action_lb_reapply(self) -> None:
        self._request("reapply")

    def action_lb_accept(self) -> None:
        self._request("accept")

    def action_lb_connections(self) -> None:
        from ctop.tui.screens.connections import ConnectionsScreen

        target = self.lb_target()
        if target is None:
            self.app.notify(  # type: ignore[attr-defined]
                "select a real server first (tab to the load-balancer pane)", severity="warning"
            )
            return
        self.app.push_screen(ConnectionsScreen(target))  # type: ignore[attr-defined]
