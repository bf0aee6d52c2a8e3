"""Alerts screen (`a`): the alerts pane full size."""

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
        Binding("escape,a", "app.pop_screen", "Back", tooltip="back")
    ]

    def compose(self) -> ComposeResult:
        yield Static("Alerts and events", id="title")
        yield AlertsPane(palette=self.app.palette, limit=1000, id="alerts-full")  # type: ignore[attr-defined]
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(AlertsPane).focus()

    def on_screen_resume(self) -> None:
        # kept installed (app.kept): each opening starts at the top, as a new screen did
        self.query_one(AlertsPane).scroll_home(animate=False, immediate=True)

    def update_snapshot(self, snap: Snapshot) -> None:
        self.query_one(AlertsPane).show(snap, self.app.local_events)  # type: ignore[attr-defined]
