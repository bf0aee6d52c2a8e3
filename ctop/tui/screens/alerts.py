"""Alerts screen (`a`): the alerts pane full size; `S` silences the selected alert."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from ctop.snapshot import Snapshot
from ctop.tui.widgets.alerts_pane import AlertsPane
from ctop.tui.widgets.key_bar import KeyBar


class AlertsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,a", "app.pop_screen", "Back", tooltip="back"),
        Binding("S", "silence", "Silence",
                tooltip="silence the selected alert's rule on its node (up/down select)"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("Alerts and events", id="title")
        yield AlertsPane(palette=self.app.palette, limit=1000, id="alerts-full")  # type: ignore[attr-defined]
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(AlertsPane).focus()

    def action_silence(self) -> None:
        alert = self.query_one(AlertsPane).selected
        if alert is None or not alert.node_id:
            what = f"--rule {alert.rule}" if alert else "--node N"
            self.app.notify(f"select a node's alert (cluster-wide: ctop silence add {what})",
                            severity="warning")
            return
        self.app.silence_request(alert.node_id, alert.rule)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        # kept installed (app.kept): each opening starts at the top, as a new screen did
        self.query_one(AlertsPane).scroll_home(animate=False, immediate=True)

    def update_snapshot(self, snap: Snapshot) -> None:
        self.query_one(AlertsPane).show(snap, self.app.local_events)  # type: ignore[attr-defined]
