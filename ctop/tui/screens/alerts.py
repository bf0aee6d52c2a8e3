"""Alerts screen (`a`): the alerts pane full size."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static

from ctop.snapshot import Snapshot
from ctop.tui.widgets.alerts_pane import AlertsPane


class AlertsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,a", "app.pop_screen", "Back", tooltip="back")
    ]

    def compose(self) -> ComposeResult:
        yield Static("Alerts and events", id="title")
        yield AlertsPane(palette=self.app.palette, limit=1000, id="alerts-full")  # type: ignore[attr-defined]
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(AlertsPane).focus()

    def update_snapshot(self, snap: Snapshot) -> None:
        self.query_one(AlertsPane).show(snap, self.app.local_events)  # type: ignore[attr-defined]
