"""Driving the app under Textual's pilot."""

from __future__ import annotations

from ctop.tui.app import CtopApp
from ctop.tui.widgets.lb_pane import LBPane

SIZE = (140, 42)  # the terminal the pilot tests run in


async def select_server(pilot, app: CtopApp, service: str, server: str) -> LBPane:
    """Tab to the LB pane and move the cursor to service/server."""
    await pilot.press("tab")
    pane = app.screen.query_one(LBPane)
    assert pane.has_focus
    for _ in range(200):
        t = pane.target
        if t.service == service and t.server.key == server:
            return pane
        await pilot.press("down")
    raise AssertionError(f"{service}/{server} not in the LB pane")
