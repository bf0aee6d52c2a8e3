"""`S` in the UI on a real engine fed by real agentd processes: the dialog, the silence kept by
the engine, and the silenced alert dimmed in the alerts pane with who silenced it."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest_asyncio

from ctop.lb.journal import current_user
from ctop.snapshot import AlertView, EventView, Severity
from ctop.tui.app import CtopApp
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.silence import SilenceDialog
from ctop.tui.source import StaticSource
from ctop.tui.widgets.alerts_pane import AlertsPane
from tests.helpers.engine_helpers import engine_with_agents, until
from tests.helpers.sample import sample_snapshot

SIZE = (140, 42)
RULES = ({"name": "node-dead", "liveness": "dead", "severity": "crit"},)


@pytest_asyncio.fixture(loop_scope="function")
async def cluster(tmp_path):
    nodes: dict[str, tuple[str, ...]] = {"alpha": (), "bravo": ()}
    async with engine_with_agents(tmp_path, nodes, lambda eng: len(eng.snapshot().nodes) == 2,
                                  alerts=RULES) as (eng, procs):
        yield eng, procs


def pane_lines(app: CtopApp) -> list[str]:
    """The alerts pane's lines, whole (the pane scrolls sideways)."""
    pane = app.screen.query_one(AlertsPane)
    return [pane.body_strip(i, 300).text for i in range(pane.virtual_size.height)]


async def test_S_silences_the_selected_node_and_its_alert_shows_dimmed_with_the_author(cluster):
    eng, procs = cluster
    app = CtopApp(eng, view="table", poll=0.1)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, MainScreen)
        await until(lambda: screen.nodes.selected is not None)
        node = screen.nodes.selected.node_id
        await pilot.press("S")
        await until(lambda: isinstance(app.screen, SilenceDialog))
        await pilot.press("enter")  # no reason: the dialog says so and stays
        assert isinstance(app.screen, SilenceDialog)
        assert "reason" in str(app.screen.query_one("#silence-error").render())
        for ch in "reboot":
            await pilot.press(ch)
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, MainScreen))
        [s] = eng.silences()
        assert (s.node, s.rule, s.reason, s.author) == (node, "", "reboot", current_user())
        assert 2 * 3600 - 5 < s.expires - s.created <= 2 * 3600

        procs[node].send_signal(signal.SIGKILL)
        await until(lambda: any(f"{node} is dead" in line for line in pane_lines(app)))
        line = next(line for line in pane_lines(app) if f"{node} is dead" in line)
        assert "SILENCED" in line and f"silenced by {current_user()} until" in line
        assert "reboot" in line

        # from the alerts pane: that alert's rule on its node
        other = "alpha" if node == "bravo" else "bravo"
        procs[other].send_signal(signal.SIGKILL)
        pane = screen.query_one(AlertsPane)
        # both alerts firing in the pane (the events below say "is dead" too)
        await until(lambda: pane._alerts == 2)
        pane.focus()
        await pilot.pause()
        assert pane.selected.node_id == node  # the selection stays on its alert
        await pilot.press("up")  # the paging one is listed first
        assert pane.selected.node_id == other and not pane.selected.muted
        await pilot.press("up")  # past the first: the pane scrolls, the selection stays
        assert pane.selected.node_id == other
        await pilot.press("S")
        await until(lambda: isinstance(app.screen, SilenceDialog))
        assert (app.screen.node, app.screen.rule) == (other, "node-dead")
        for ch in "dc move":
            await pilot.press(ch)
        await pilot.press("enter")
        await until(lambda: len(eng.silences()) == 2)
        assert eng.silences()[0].rule == "node-dead"
        await until(lambda: all(a.muted for a in eng.snapshot().alerts))


def test_silenced_and_held_alerts_dimmed_in_the_alerts_pane(snap_compare):
    snap = sample_snapshot(16)
    t = snap.ts
    alerts = (
        AlertView("node-dead:web-03", "node-dead", "web-03", Severity.CRIT, "web-03 is dead",
                  t - 300),
        AlertView("node-dead:web-05", "node-dead", "web-05", Severity.CRIT, "web-05 is dead",
                  t - 120, muted="silenced", muted_by="alice", muted_until=t + 7200,
                  muted_note="kernel upgrade"),
        AlertView("node-dead:web-07", "node-dead", "web-07", Severity.CRIT, "web-07 is dead",
                  t - 60, muted="held", muted_by="bob",
                  muted_note="in maintenance by bob since 2026-12-07 03:00"),
    )
    app = CtopApp(StaticSource(replace(snap, alerts=alerts)), view="grid", poll=3600)

    async def settle(pilot) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=(200, 50), run_before=settle)


def test_the_alerts_pane_says_who_silenced_an_alert_and_until_when():
    from ctop.mute import muted_text

    held = {"muted": "held", "muted_by": "bob", "muted_until": 0.0,
            "muted_note": "in maintenance by bob since 2026-12-07 03:00"}
    assert muted_text(held) == "held: in maintenance by bob since 2026-12-07 03:00"
    assert muted_text({"muted": ""}) == ""


async def test_arrows_in_the_alerts_pane_select_alerts_then_scroll_on_to_the_events():
    snap = sample_snapshot(16)
    many = tuple(EventView(snap.ts - i, "join", f"n{i}", f"n{i} joined") for i in range(60))
    alerts = tuple(AlertView(f"node-dead:n{i}", "node-dead", f"n{i}", Severity.CRIT,
                             f"n{i} is dead", snap.ts) for i in range(3))
    source = StaticSource(replace(snap, alerts=alerts, events=many))
    app = CtopApp(source, view="grid", poll=3600)
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.press("a")  # the alerts screen: the pane has the focus
        await pilot.pause()
        pane = app.screen.query_one(AlertsPane)
        await pilot.press("down", "down")
        assert pane.selected.node_id == "n2" and pane.scroll_offset.y == 0
        for _ in range(10):
            await pilot.press("down")
        assert pane.selected.node_id == "n2" and pane.scroll_offset.y > 0
        await pilot.press("S")  # that alert's rule on its node
        await pilot.pause()
        assert isinstance(app.screen, SilenceDialog)
        assert (app.screen.node, app.screen.rule) == ("n2", "node-dead")
        for ch in "known":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        [s] = source.silenced
        assert (s.node, s.rule, s.reason) == ("n2", "node-dead", "known")
