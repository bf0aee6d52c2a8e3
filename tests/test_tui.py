"""Pilot tests of the ctop UI: navigation, filter, sort, views on fixed snapshots; load-balancer
actions through the dialogs on the real engine with a real HAProxy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from ctop.engine import Engine
from ctop.lb.request import ActionRequest
from ctop.tui.app import CtopApp
from ctop.tui.screens.confirm import ConfirmAction, WeightInput
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.source import StaticSource
from ctop.tui.widgets.alerts_pane import AlertsPane
from ctop.tui.widgets.lb_pane import LBPane
from ctop.tui.widgets.node_list import NodeList
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.lb_owner_helpers import server_stat
from tests.helpers.sample import sample_history, sample_snapshot
from tests.helpers.tui_helpers import SIZE, select_server

ROOT = Path(__file__).resolve().parent.parent



def app_on(nodes: int = 40, view: str | None = "table", **kw) -> CtopApp:
    return CtopApp(StaticSource(sample_snapshot(nodes), history=sample_history), view=view, **kw)


def main(app: CtopApp) -> MainScreen:
    assert isinstance(app.screen, MainScreen)
    return app.screen


async def test_arrows_and_hjkl_move_the_selection():
    app = app_on(40)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(NodeList)
        assert table.mode == "table"
        assert table.has_focus and table.cursor == 0
        await pilot.press("down", "j", "j")
        assert table.cursor == 3
        await pilot.press("k", "up")
        assert table.cursor == 1
        await pilot.press("end")
        assert table.cursor == 39
        assert table.selected.node_id == table.arr.nodes[-1].node_id
        assert table.scroll_offset.y > 0  # the selection stays on screen


async def test_enter_opens_the_node_with_its_history_and_esc_goes_back():
    app = app_on(12, view="grid")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        grid = app.screen.query_one(NodeList)
        await pilot.press("right", "l")
        chosen = grid.selected.node_id
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeDetail) and app.screen.node_id == chosen
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(app.screen.query_one("#c-cpu").points) == 240
        await pilot.press("6")
        await app.workers.wait_for_complete()
        assert app.screen.range == "6"
        assert "30 days" in str(app.screen.query_one("#node-title").render())
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_filter_narrows_by_group_state_or_address_and_esc_clears():
    app = app_on(60)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"db")
        arr = main(app).arr
        assert arr.nodes and all(n.group == "db" for n in arr.nodes)
        await pilot.press("enter")
        assert main(app).query_one(NodeList).has_focus
        await pilot.press("slash", "escape")
        assert len(main(app).arr.nodes) == 60
        await pilot.press("slash", *"dead")
        assert main(app).arr.nodes and all(n.liveness == "dead" for n in main(app).arr.nodes)
        await pilot.press("escape")
        await pilot.press("slash", *"10.0.0.7 ")
        assert [n.addresses[0] for n in main(app).arr.nodes] == ["10.0.0.7"]


async def test_sort_cycles_and_orders_within_groups():
    app = app_on(60)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        screen = main(app)
        assert screen.sort == "cpu"
        for _, start, end in screen.arr.groups:
            cpus = [n.cpu for n in screen.arr.nodes[start:end]]
            assert cpus == sorted(cpus, reverse=True)
        await pilot.press("g")  # ungrouped: one global order
        cpus = [n.cpu for n in screen.arr.nodes]
        assert not screen.arr.groups and cpus == sorted(cpus, reverse=True)
        await pilot.press("s", "s")
        assert screen.sort == "conns"
        conns = [n.conns for n in screen.arr.nodes]
        assert conns == sorted(conns, reverse=True)


async def test_t_toggles_grid_and_table_keeping_the_selection():
    app = app_on(40, view=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = main(app)
        assert screen.view == "table"  # 40 cards don't fit in 140x42: the table is the default
        await pilot.press("down", "down")
        chosen = screen.nodes.selected.node_id
        await pilot.press("t")
        await pilot.pause()
        assert screen.view == "grid" and screen.nodes.mode == "grid"
        assert screen.nodes.selected.node_id == chosen
        await pilot.press("t")
        assert screen.view == "table"
    small = app_on(8, view=None)
    async with small.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert main(small).view == "grid"  # small clusters start on the panel grid


@pytest.mark.parametrize(("option", "system"), [
    ("8", "standard"), ("16", "standard"), ("256", "256"), ("truecolor", "truecolor"),
])
def test_color_option_sets_the_colours_the_app_draws_with(option, system):
    """In a fresh process, as `ctop --color` runs: the option must act before Textual loads."""
    code = (
        "from ctop.tui.colors import apply_color_option\n"
        f"apply_color_option({option!r})\n"
        "from ctop.tui.app import CtopApp\n"
        "from ctop.tui.source import StaticSource\n"
        "from tests.helpers.sample import sample_snapshot\n"
        f"app = CtopApp(StaticSource(sample_snapshot(3)), color={option!r})\n"
        "print(app.console.color_system)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TEXTUAL_COLOR_SYSTEM", "NO_COLOR")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [system]


# -- the real engine with a real HAProxy ------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def lb_engine(tmp_path, haproxy):
    eng: Engine = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()
    await until(lambda: eng.snapshot().lb)
    yield eng
    await eng.stop()


async def test_drain_goes_through_the_dialog_and_reaches_haproxy(lb_engine, haproxy):
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web3", "s2")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        req = app.screen.request
        assert (req.balancer, req.service, req.server, req.before, req.after) == (
            "haproxy",
            "web3",
            "s2",
            1,
            0,
        )
        assert "weight 1" in str(app.screen.query_one("#body").render())
        assert server_stat(haproxy, "web3", "s2") == (1, "UP")  # nothing happens before confirming
        await pilot.press("y")
        await until(
            lambda: (
                "DRAIN" in haproxy.cmd("show servers state web3").upper()
                or _drained(haproxy, "web3", "s2")
            )
        )
        await until(lambda: any("drain" in n.message for n in app._notifications))
        hits = await asyncio.to_thread(haproxy.hits, "web3", 30)
        assert hits["s2"] == 0
        await pilot.pause()
        pane = app.screen.query_one(LBPane)
        assert pane.target.server.state == "drained"  # the pane shows the read-back state

        await pilot.press("r")  # restore, through its own dialog
        await until(lambda: isinstance(app.screen, ConfirmAction))
        assert app.screen.request.after == 1
        await pilot.press("y")
        await until(lambda: not _drained(haproxy, "web3", "s2"))


async def test_the_dialog_takes_a_why_and_enter_applies_with_it(lb_engine, haproxy):
    app = CtopApp(lb_engine, view="table")
    why = "OPS-7 disk swap"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await select_server(pilot, app, "web6", "s3")
            await pilot.press("d")
            await until(lambda: isinstance(app.screen, ConfirmAction))
            await pilot.press("w", *why, "enter")  # w: into the reason; enter applies
            await until(lambda: _drained(haproxy, "web6", "s3"))
            journal = lb_engine.lb.journal
            await until(lambda: journal.actions(service="web6", server="s3"))
            row = journal.actions(service="web6", server="s3")[0]
            assert (row.action, row.why) == ("drain", why)
            await until(lambda: any(e.message.endswith(f"why: {why}")
                                    for e in lb_engine.snapshot().events))
    finally:
        haproxy.cmd("set server web6/s3 state ready")
        haproxy.cmd("set server web6/s3 weight 1")


def _drained(haproxy, backend: str, server: str) -> bool:
    stat = haproxy.cmd("show stat").splitlines()
    row = next(line for line in stat if line.startswith(f"{backend},{server},"))
    return ",DRAIN" in row.upper()


async def test_maint_goes_through_the_dialog_and_takes_the_server_out(lb_engine, haproxy):
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web7", "s3")
        await pilot.press("m")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        req = app.screen.request
        target = (req.verb, req.balancer, req.service, req.server)
        assert target == ("maint", "haproxy", "web7", "s3")
        assert (req.before, req.state_before, req.after, req.state_after) == (
            1,
            "serving",
            0,
            "maint",
        )
        body = str(app.screen.query_one("#body").render())
        assert "web7" in body and "s3" in body and "maint" in body
        assert _stat_status(haproxy, "web7", "s3") == "no check"  # nothing sent before "y"
        await pilot.press("y")
        await until(lambda: _stat_status(haproxy, "web7", "s3") == "MAINT")
        await until(lambda: any("maint" in n.message for n in app._notifications))
        hits = await asyncio.to_thread(haproxy.hits, "web7", 30)
        assert hits["s3"] == 0
        await pilot.pause()
        pane = app.screen.query_one(LBPane)
        await until(lambda: pane.target.server.state == "maint")  # read back, shown in the pane

        await pilot.press("r")  # restore, through its own dialog
        await until(lambda: isinstance(app.screen, ConfirmAction))
        assert (app.screen.request.after, app.screen.request.state_after) == (1, "serving")
        await pilot.press("y")
        await until(lambda: _stat_status(haproxy, "web7", "s3") == "no check")
        await until(lambda: pane.target.server.state == "serving")


def _stat_status(haproxy, backend: str, server: str) -> str:
    stat = haproxy.cmd("show stat").splitlines()
    header = stat[0].lstrip("# ").split(",")
    row = next(line for line in stat if line.startswith(f"{backend},{server},"))
    return row.split(",")[header.index("status")]


async def test_weight_dialog_sets_the_weight_and_cancel_changes_nothing(lb_engine, haproxy):
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web2", "s1")
        await pilot.press("w")
        await until(lambda: isinstance(app.screen, WeightInput))
        await pilot.press("ctrl+a", "backspace", "backspace", "5", "enter")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("escape")  # cancel: nothing sent
        await pilot.pause()
        assert haproxy.cmd("get weight web2/s1").startswith("1 ")
        await pilot.press("plus")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        assert app.screen.request.after == 2
        await pilot.press("y")
        await until(lambda: haproxy.cmd("get weight web2/s1").startswith("2 "))


async def test_a_refused_action_shows_the_reason_and_a_backend_error_is_reported(
    lb_engine, haproxy
):
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web5", "s1")
        await pilot.press("w")
        await until(lambda: isinstance(app.screen, WeightInput))
        await pilot.press("ctrl+a", "backspace", *"999", "enter")  # HAProxy's range is 0..256
        await until(lambda: isinstance(app.screen, ConfirmAction))
        req = app.screen.request
        assert not req.ok and "out of range" in req.message
        assert not app.screen.query("#yes")  # no way to apply a refused plan
        await pilot.press("y", "escape")
        assert haproxy.cmd("get weight web5/s1").startswith("1 ")
        # the balancer's socket goes away: the dialog shows the transport's own error
        be = app.source.lb.balancers["haproxy"]
        saved = be._address
        be._address = "/nonexistent/haproxy.sock"
        try:
            await pilot.press("d")
            await until(lambda: isinstance(app.screen, ConfirmAction))
            req = app.screen.request
            assert not req.ok and req.message
            assert req.message in str(app.screen.query_one("#body").render())
            await pilot.press("escape")
        finally:
            be._address = saved
        await until(lambda: isinstance(app.screen, MainScreen))


async def test_backend_error_is_notified_and_logged_in_the_alerts_pane():
    source = StaticSource(sample_snapshot(12))  # an LB view but no controller behind it
    app = CtopApp(source, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("tab", "d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(lambda: any(n.severity == "error" for n in app._notifications))
        assert source.actions == [("drain", "haproxy", "web", "web-001", None)]
        await pilot.pause()
        items = app.screen.query_one(AlertsPane)._items
        assert any(
            getattr(e, "kind", "") == "error" and "no load balancer" in e.message for e in items
        )


async def test_readonly_hides_action_keys_and_refuses_them(tmp_path, haproxy):
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}}, readonly=True)
    await eng.start()
    try:
        await until(lambda: eng.snapshot().lb)
        app = CtopApp(eng, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.readonly
            keys = {
                b.binding.key
                for b in app.screen.active_bindings.values()
                if app.screen.check_action(b.binding.action, ()) is not False
            }
            assert not keys & {"d", "m", "w", "plus", "minus", "r", "A"}
            await select_server(pilot, app, "web6", "s1")
            await pilot.press("d", "m", "w", "plus", "r")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)  # no dialog opened
            assert haproxy.cmd("get weight web6/s1").startswith("1 ")
    finally:
        await eng.stop()


async def test_grid_up_down_keep_the_column_across_group_headers():
    app = app_on(16, view="grid")
    async with app.run_test(size=(60, 42)) as pilot:  # two cards a row: groups of 3 = 2 + 1
        await pilot.pause()
        grid = main(app).nodes
        nodes, groups = grid.arr.nodes, grid.arr.groups
        (_, a0, _), (_, b0, _) = groups[0], groups[1]
        await pilot.press("right")  # first group, column 1
        assert grid.cursor == a0 + 1
        await pilot.press("down")  # the group's short last row: its only card
        assert grid.cursor == a0 + 2
        await pilot.press("down")  # across the header, back in column 1
        assert grid.cursor == b0 + 1
        await pilot.press("up", "up")
        assert grid.cursor == a0 + 1
        await pilot.press("end")
        assert grid.selected is nodes[-1]
        await pilot.press("home", "pagedown")
        assert grid.cursor > a0 + 2 and grid.scroll_offset.y > 0


async def test_drift_shows_on_the_row_and_R_re_applies_through_the_dialog(lb_engine, haproxy):
    assert (await lb_engine.lb_action(ActionRequest("drain", "haproxy", "web2", "s3"))).ok
    await asyncio.to_thread(haproxy.restart)  # no state file: the drain is gone
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = await select_server(pilot, app, "web2", "s3")
        await until(lambda: pane.target.server.drift, timeout=10)
        row = pane._servers[pane._pick]
        await pilot.pause()
        assert "≠" in pane.body_strip(row, 200).text  # the mark on the server's row
        await pilot.press("R")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        req = app.screen.request
        assert (req.verb, req.before, req.after, req.state_after) == ("reapply", 1, 0, "drained")
        assert "journal: drained by operator" in str(app.screen.query_one("#body").render())
        await pilot.press("y")
        await until(lambda: _drained(haproxy, "web2", "s3"))
        await until(lambda: not pane.target.server.drift)
