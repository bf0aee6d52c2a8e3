"""The UI on a real engine fed by real agentd processes: keys, detail with stored history,
filter, sort, grouping, views, and a killed node turning suspect then dead on screen."""

from __future__ import annotations

import signal

import pytest
import pytest_asyncio

from ctop.engine import Engine
from ctop.tui.app import CtopApp
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.widgets.chart import Chart
from tests.helpers.engine_helpers import engine_with_agents, until

SIZE = (140, 42)
# Group order differs from name order, so grouping visibly changes the order:
# grouped (xray, yank, zeta) shows charlie, bravo, alpha; ungrouped by name alpha, bravo, charlie.
NODES = {"alpha": "zeta", "bravo": "yank", "charlie": "xray"}


@pytest_asyncio.fixture(loop_scope="function")
async def cluster(tmp_path):
    def reporting(eng: Engine) -> bool:
        return len(eng.snapshot().nodes) == 3 and all(n.metrics for n in eng.snapshot().nodes)

    nodes = {node: ("--group", group) for node, group in NODES.items()}
    async with engine_with_agents(tmp_path, nodes, reporting) as (eng, procs):
        yield eng, procs


def screen_of(app: CtopApp) -> MainScreen:
    assert isinstance(app.screen, MainScreen)
    return app.screen


def order(app: CtopApp) -> list[str]:
    arr = screen_of(app).arr
    return [n.node_id for n in arr.nodes] if arr else []


def row_text(app: CtopApp, node_id: str) -> str:
    """The nodes widget's on-screen line showing `node_id` ('' if none)."""
    nodes = screen_of(app).nodes
    for y in range(nodes.size.height):
        line = nodes.render_line(y).text
        if line.lstrip(" ▌").startswith(node_id):
            return line
    return ""


async def test_keys_detail_filter_sort_group_and_views_on_a_live_cluster(cluster):
    eng, _ = cluster
    app = CtopApp(eng, view="table", poll=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: order(app) == ["charlie", "bravo", "alpha"])
        nodes = screen_of(app).nodes
        assert nodes.has_focus and nodes.selected_id == "charlie"
        assert "alive" in row_text(app, "bravo")

        await pilot.press("down")  # arrows move the selection
        assert nodes.selected_id == "bravo"
        await pilot.press("down", "up", "j")
        assert nodes.selected_id == "alpha"

        await pilot.press("enter")  # the selected node's detail, with history from the store
        await until(lambda: isinstance(app.screen, NodeDetail))
        assert app.screen.node_id == "alpha"
        cpu = app.screen.query_one("#c-cpu", Chart)
        await until(lambda: len(cpu.points) >= 2, timeout=10)
        stored = {round(t, 3) for t, _ in eng.history("alpha", ["cpu_percent"], 900)["cpu_percent"]}
        assert {round(t, 3) for t, _ in cpu.points} <= stored  # the store's samples, not made up
        assert all(0 <= v <= 100 for _, v in cpu.points)
        await pilot.press("escape")
        await until(lambda: isinstance(app.screen, MainScreen))
        assert screen_of(app).nodes.selected_id == "alpha"

        await pilot.press("slash", *"bravo")  # filter by name narrows to it, esc clears
        await until(lambda: order(app) == ["bravo"])
        assert row_text(app, "bravo") and not row_text(app, "alpha")
        await pilot.press("escape")
        await until(lambda: order(app) == ["charlie", "bravo", "alpha"])
        assert nodes.has_focus

        await pilot.press("g")  # ungrouped: name order
        assert order(app) == ["alpha", "bravo", "charlie"]
        await pilot.press("s")  # sort by CPU, busiest first
        screen = screen_of(app)
        assert screen.sort == "cpu"
        cpus = [n.cpu for n in screen.arr.nodes]
        assert cpus == sorted(cpus, reverse=True)
        assert "CPU ▼" in nodes.render_line(0).text

        await pilot.press("t")  # grid and back, the selection kept
        chosen = nodes.selected_id
        assert screen.view == "grid" and nodes.mode == "grid"
        await pilot.pause()
        assert any("bravo" in nodes.render_line(y).text for y in range(nodes.size.height))
        await pilot.press("t")
        assert screen.view == "table" and nodes.mode == "table"
        assert nodes.selected_id == chosen


@pytest.mark.timeout(30)
async def test_a_killed_node_turns_suspect_then_dead_in_the_table(cluster):
    eng, procs = cluster
    app = CtopApp(eng, view="table", poll=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "alive" in row_text(app, "bravo"))
        assert order(app) == ["charlie", "bravo", "alpha"]
        nodes = screen_of(app).nodes
        states: list[str] = []  # bravo's STATE cell after every update the table got
        show = nodes.show

        def recording_show(snap, arr) -> None:
            show(snap, arr)
            states.append(row_text(app, "bravo").split()[2])

        nodes.show = recording_show  # type: ignore[method-assign]
        procs["bravo"].send_signal(signal.SIGKILL)
        await until(lambda: "dead" in row_text(app, "bravo"))
        assert "suspect" in states and states.index("suspect") < states.index("dead"), states
        assert "alive" in row_text(app, "alpha") and "alive" in row_text(app, "charlie")
        await pilot.press("g")
        for _ in range(5):  # cycle to the state sort: the dead node comes first
            await pilot.press("s")
            if screen_of(app).sort == "state":
                break
        assert order(app) == ["bravo", "alpha", "charlie"]
        assert screen_of(app).nodes.selected_id == "bravo"
