"""The confirmation dialog's what-if, the guard's second confirmation, the restore ramp and
maint choices, and `c` (connections), on the real engine with a real HAProxy."""

from __future__ import annotations

import asyncio
import socket

import pytest_asyncio

from ctop.engine import Engine
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.request import ActionRequest
from ctop.tui.app import CtopApp
from ctop.tui.screens.confirm import ConfirmAction, ConfirmConsequence
from ctop.tui.screens.connections import ConnectionsScreen
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.tui_helpers import SIZE, select_server


@pytest_asyncio.fixture(loop_scope="function")
async def lb_engine(tmp_path, haproxy):
    eng: Engine = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()
    await until(lambda: eng.snapshot().lb)
    yield eng
    await eng.stop()


def state(haproxy, backend: str, server: str) -> tuple[int, str]:
    vs = next(v for v in HAProxyBalancer(haproxy.admin_socket).services() if v.key == backend)
    rs = next(r for r in vs.servers if r.key == server)
    return rs.weight, str(rs.state)


def whatif(app: CtopApp) -> str:
    return str(app.screen.query_one("#whatif").render())


async def test_last_server_needs_a_second_confirmation_naming_the_consequence(
    lb_engine, haproxy
):
    for s in ("s1", "s2"):
        haproxy.cmd(f"set server web4/{s} state drain")
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: state(haproxy, "web4", "s1")[1] == "drained")
        await asyncio.sleep(2.5)  # the engine's next LB round shows them drained
        await pilot.pause()
        await select_server(pilot, app, "web4", "s3")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await until(lambda: "what if" in whatif(app))
        text = whatif(app)
        assert "s3 is the last serving server of web4: every request to web4 gets 503" in text
        assert "no server would take new connections" in text
        await pilot.press("y")
        await until(lambda: isinstance(app.screen, ConfirmConsequence))
        body = str(app.screen.query_one("#body").render())
        assert "every request to web4 gets 503" in body
        await pilot.press("escape")  # not sure after all: nothing happens
        await until(lambda: isinstance(app.screen, ConfirmAction))
        assert state(haproxy, "web4", "s3") == (1, "serving")
        await pilot.press("y")
        await until(lambda: isinstance(app.screen, ConfirmConsequence))
        await pilot.press("y")
        await until(lambda: state(haproxy, "web4", "s3")[1] == "drained")
        hits = await asyncio.to_thread(haproxy.hits, "web4", 3)
        assert hits == {"HTTP 503": 3}


async def test_dialog_shows_the_shares_after_a_drain(lb_engine, haproxy):
    haproxy.cmd("set server web5/s1 weight 2")
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web5", "s1")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await until(lambda: "what if" in whatif(app))
        rows = {ln.split()[0]: ln for ln in whatif(app).splitlines() if ln.startswith("  s")}
        assert "50% →   0%" in rows["s1"] and "25% →  50%" in rows["s2"]
        assert not app.screen.guard
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, ConfirmAction))
        assert state(haproxy, "web5", "s1") == (2, "serving")


async def test_restore_with_a_ramp_from_the_dialog(lb_engine, haproxy, monkeypatch):
    monkeypatch.setattr("ctop.tui.screens.confirm.RAMP_S", 1.0)
    haproxy.cmd("set server web6/s2 weight 3")
    app = CtopApp(lb_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web6", "s2")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(lambda: state(haproxy, "web6", "s2")[1] == "drained")
        await until(lambda: not isinstance(app.screen, ConfirmAction))
        await pilot.pause()
        await pilot.press("r")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("p")
        # the journal, not a poll of HAProxy, shows each step: on a loaded machine a poll can
        # miss the 1 s of step 1, and a step is journaled after its weight is read back
        journal = lb_engine.lb.journal
        await until(lambda: [r.action for r in journal.actions(server="s2", limit=2)]
                    == ["ramp", "restore"], timeout=15)
        rows = journal.actions(server="s2", limit=2)
        assert [r.weight_after for r in rows] == [3, 2]  # step 1 of 2 at weight 2, then 3
        assert state(haproxy, "web6", "s2") == (3, "serving")


async def test_c_shows_the_connections_of_the_server(lb_engine, haproxy):
    sock = socket.create_connection(("127.0.0.1", haproxy.frontends["tcp1"]), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\n")
    port = sock.getsockname()[1]
    be = HAProxyBalancer(haproxy.admin_socket)
    await until(lambda: any(be.connections("tcp1", s) for s in ("s1", "s2", "s3")))
    server = next(s for s in ("s1", "s2", "s3") if be.connections("tcp1", s))
    app = CtopApp(lb_engine, view="table")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await select_server(pilot, app, "tcp1", server)
            await pilot.press("c")
            await until(lambda: isinstance(app.screen, ConnectionsScreen))
            await until(lambda: f"127.0.0.1:{port}" in str(app.screen.query_one("#conns").render()))
            assert "1 connection" in str(app.screen.query_one("#conns").render())
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, ConnectionsScreen))
    finally:
        sock.close()


def _with_drained(snap, ts: float, active: int):
    """The sample snapshot at `ts` with web's second server drained and `active` left."""
    from dataclasses import replace

    svc = snap.lb[0]
    servers = list(svc.servers)
    servers[1] = replace(servers[1], state="drained", active_conns=active)
    lb = (replace(svc, servers=tuple(servers)), *snap.lb[1:])
    return replace(snap, ts=ts, tick=int(ts), lb=lb)


async def test_the_lb_pane_follows_a_drained_server_to_empty():
    from ctop.tui.source import StaticSource
    from ctop.tui.widgets.lb_pane import LBPane
    from tests.helpers.sample import sample_snapshot

    base = sample_snapshot(12)
    counts = [(100.0, 16), (110.0, 8), (120.0, 4), (130.0, 0)]
    source = StaticSource([_with_drained(base, t, n) for t, n in counts])
    svc, server = base.lb[0], base.lb[0].servers[1].key
    app = CtopApp(source, view="table", poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.screen.query_one(LBPane)
        notes = []
        for _ in counts[1:]:
            source.advance()
            app.refresh_snapshot(force=True)
            await pilot.pause()
            notes.append(pane.drain_note(svc.balancer, svc.key))
        # halving every 10 s: 8 is below one half in 4 halvings (40 s), 4 in 3
        assert notes[0] == f"  ⇣ {server} 8 left, empty in ~40 s"
        assert notes[1] == f"  ⇣ {server} 4 left, empty in ~30 s"
        assert notes[2] == f"  ⇣ {server} empty"


async def test_an_event_says_when_a_drained_server_is_empty(lb_engine, haproxy):
    sock = socket.create_connection(("127.0.0.1", haproxy.frontends["tcp1"]), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\n")
    be = HAProxyBalancer(haproxy.admin_socket)
    await until(lambda: any(be.connections("tcp1", s) for s in ("s1", "s2", "s3")))
    server = next(s for s in ("s1", "s2", "s3") if be.connections("tcp1", s))
    res = await lb_engine.lb_action(ActionRequest("drain", "haproxy", "tcp1", server))
    assert res.ok
    await asyncio.sleep(2.5)  # a round that sees it drained with its connection
    assert not any("empty" in e.message for e in lb_engine.snapshot().events)
    sock.close()
    await until(lambda: any(f"haproxy tcp1 {server} is drained and empty" in e.message
                            for e in lb_engine.snapshot().events), timeout=10)  # fmt: skip


async def test_maint_dialog_can_cut_the_sessions(lb_engine, haproxy):
    sock = socket.create_connection(("127.0.0.1", haproxy.frontends["tcp1"]), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\n")
    be = HAProxyBalancer(haproxy.admin_socket)
    await until(lambda: any(be.connections("tcp1", s) for s in ("s1", "s2", "s3")))
    server = next(s for s in ("s1", "s2", "s3") if be.connections("tcp1", s))
    app = CtopApp(lb_engine, view="table")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await select_server(pilot, app, "tcp1", server)
            await pilot.press("m")
            await until(lambda: isinstance(app.screen, ConfirmAction))
            await pilot.press("x")
            await until(lambda: state(haproxy, "tcp1", server)[1] == "maint")
            await until(lambda: not be.connections("tcp1", server))
            sock.settimeout(3)
            assert await asyncio.to_thread(sock.recv, 100) == b""  # closed by HAProxy
    finally:
        sock.close()
