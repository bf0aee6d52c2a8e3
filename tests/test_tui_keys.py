"""Keys switch between screens that are kept, never composed again (bench/ui.py keys measures
what that saves: 100s of ms a key at 10,000 nodes); the kept node detail shows the node it is
opened for, as a new screen did."""

from __future__ import annotations

from collections import Counter

from textual.widget import Widget

from ctop.tui.app import CtopApp
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.source import StaticSource
from ctop.tui.widgets.chart import Chart
from ctop.tui.widgets.key_bar import KeyBar
from ctop.tui.widgets.lb_pane import LBPane
from tests.helpers.sample import sample_history, sample_snapshot

SIZE = (160, 50)


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


class Made:
    """Counts the widgets constructed (by class) while it is installed."""

    def __init__(self, monkeypatch) -> None:
        self.kinds: Counter[str] = Counter()
        init = Widget.__init__

        def counted(widget: Widget, *args, **kw) -> None:
            self.kinds[type(widget).__name__] += 1
            init(widget, *args, **kw)

        monkeypatch.setattr(Widget, "__init__", counted)


async def test_keys_compose_no_widget_once_each_screen_was_shown(monkeypatch) -> None:
    app = CtopApp(StaticSource(sample_snapshot(300), history=sample_history), view="table",
                  poll=3600)
    keys = ("tab", "shift+tab", "enter", "escape", "a", "escape", "question_mark", "escape",
            "slash", "escape", "t", "t")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in keys:  # each screen shown once: composed then
            await pilot.press(key)
            await settle(pilot)
        made = Made(monkeypatch)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        assert isinstance(app.screen, MainScreen)
    # the old code composed a new node detail, alerts and help screen per key, and Textual's
    # Footer mounted a FooterKey per binding on every focus change
    assert not made.kinds, f"widgets made by keys: {dict(made.kinds)}"


async def test_the_kept_node_detail_shows_the_node_it_is_opened_for() -> None:
    snap = sample_snapshot(16)
    source = StaticSource(snap, history=sample_history)
    watched: list[str | None] = []
    source.watch = watched.append  # type: ignore[method-assign]
    app = CtopApp(source, view="table", poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        main = app.screen
        assert isinstance(main, MainScreen)
        first = main.nodes.selected_id
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, NodeDetail) and detail.node_id == first
        await pilot.press("3")  # the 1-hour span
        await settle(pilot)
        assert "history: 1 h" in str(detail.query_one("#node-title").render())
        await pilot.press("escape", "down")
        await settle(pilot)
        second = main.nodes.selected_id
        assert second != first
        await pilot.press("enter")
        await settle(pilot)

        assert app.screen is detail and detail.node_id == second  # kept, switched
        title = str(detail.query_one("#node-title").render())
        assert second in title and first not in title and "history: 2 min" in title
        lb = detail.query_one(LBPane)
        assert lb.has_focus and lb.target is not None and lb.target.server.node_id == second
        cpu = detail.query_one("#c-cpu", Chart)
        assert list(cpu.points) == sample_history(second, ["cpu_percent"], 120)["cpu_percent"]
        assert watched == [first, None, second]

        # a history read for the node shown before, landing late, is not drawn as this one's
        stale = sample_history(first, ["cpu_percent"], 120)
        detail._history_ready(stale, (), (0.0, 1.0), (), first)
        assert list(cpu.points) != stale["cpu_percent"]

        await pilot.press("escape")
        await settle(pilot)
        assert watched == [first, None, second, None]
        assert app.screen.query_one(KeyBar).items[0].description == "Open"


async def test_a_click_on_the_key_bar_presses_the_key() -> None:
    app = CtopApp(StaticSource(sample_snapshot(16), history=sample_history), view="table",
                  poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        first = bar.items[0]
        assert (first.key, first.label, first.description) == ("escape", "esc", "Back")
        assert bar.render_line(0).text.startswith(" esc Back  1-6 History span ")
        await pilot.click(KeyBar, offset=(2, 0))  # on " esc "
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
