"""The UIs under one owner, on a real HAProxy: the embedded UI (engine in process) and the
attached UI (Textual pilot on a RemoteSource to a real `ctop serve`). Read-only from [lb] holds,
the dialog's plan is what runs (a server changed behind ctop's back refuses it), and an attached
UI's action is the daemon's: journaled as the caller and shown as an event."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.lb.config import parse_config
from ctop.lb.request import ActionRequest
from ctop.tui.app import CtopApp
from ctop.tui.remote import RemoteSource
from ctop.tui.screens.confirm import ConfirmAction
from ctop.tui.screens.main import MainScreen
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.haproxy_peer import HAProxyLab
from tests.helpers.lb_owner_helpers import director, server_stat, serving
from tests.helpers.tui_helpers import SIZE

ACTION_KEYS = {"d", "m", "w", "plus", "minus", "r", "A"}


async def select_server(pilot, app: CtopApp, service: str, server: str) -> None:
    """Focus the LB pane (tab, unless it has focus) and put the cursor on service/server."""
    from ctop.tui.widgets.lb_pane import LBPane

    pane = app.screen.query_one(LBPane)
    if not pane.has_focus:
        await pilot.press("tab")
    assert pane.has_focus
    for key in ("down", "up"):
        for _ in range(60):
            t = pane.target
            if t is not None and t.service == service and t.server.key == server:
                return
            await pilot.press(key)
    raise AssertionError(f"{service}/{server} not in the LB pane")


def shown_keys(app: CtopApp) -> set[str]:
    return {b.binding.key for b in app.screen.active_bindings.values()
            if app.screen.check_action(b.binding.action, ()) is not False}


def notes(app: CtopApp) -> list[str]:
    return [n.message for n in app._notifications]


async def _stale_dialog_is_refused(app: CtopApp, pilot, haproxy: HAProxyLab, backend: str,
                                   server: str) -> None:
    """Open the drain dialog, change the weight behind ctop's back, confirm: refused."""
    await select_server(pilot, app, backend, server)
    await pilot.press("d")
    await until(lambda: isinstance(app.screen, ConfirmAction))
    assert (app.screen.request.before, app.screen.request.after) == (1, 0)
    haproxy.cmd(f"set server {backend}/{server} weight 7")  # someone else, via the runtime API
    await pilot.press("y")
    message = await until(lambda: next((m for m in notes(app) if "changed since" in m), None))
    assert "now weight 7 (serving)" in message and "nothing was changed" in message
    assert server_stat(haproxy, backend, server) == (7, "UP")  # not drained
    # the dialog opens again on the server as it is now; cancelling it changes nothing
    await until(lambda: isinstance(app.screen, ConfirmAction)
                and app.screen.request.before == 7)
    assert "changed since you confirmed: now weight 7" in app.screen.request.message
    await pilot.press("escape")
    await until(lambda: not isinstance(app.screen, ConfirmAction))
    assert server_stat(haproxy, backend, server) == (7, "UP")


# -- embedded ---------------------------------------------------------------------------------


async def test_lb_readonly_key_holds_in_the_engine_and_its_ui(tmp_path, haproxy):
    """[lb] readonly = true alone: the engine refuses, the embedded UI hides and refuses."""
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket},
                                    "readonly": True})
    await eng.start()
    try:
        await until(lambda: eng.snapshot().lb)
        assert eng.snapshot().readonly
        result = await eng.lb_action(ActionRequest("drain", "haproxy", "web1", "s1"))
        assert not result.ok and "read-only" in result.message
        app = CtopApp(eng, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert not shown_keys(app) & ACTION_KEYS
            await select_server(pilot, app, "web1", "s1")
            await pilot.press("d", "w", "r")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)  # no dialog opened
        assert server_stat(haproxy, "web1", "s1") == (1, "UP")
    finally:
        await eng.stop()


async def test_embedded_dialog_refuses_a_plan_the_server_no_longer_matches(tmp_path, haproxy):
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()
    try:
        await until(lambda: eng.snapshot().lb)
        app = CtopApp(eng, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await _stale_dialog_is_refused(app, pilot, haproxy, "web2", "s1")
            # a dialog confirmed on the current state still runs
            await select_server(pilot, app, "web2", "s2")
            await pilot.press("d")
            await until(lambda: isinstance(app.screen, ConfirmAction))
            await pilot.press("y")
            await until(lambda: server_stat(haproxy, "web2", "s2")[1] == "DRAIN")
    finally:
        await eng.stop()


# -- attached ---------------------------------------------------------------------------------


async def test_attached_ui_actions_are_the_daemons(haproxy: HAProxyLab, monkeypatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)  # this UI claims no sudo caller
    with director(haproxy) as d, serving(d):
        source = RemoteSource(str(d.socket), str(d.db), poll=0.2)
        try:
            await until(lambda: source.snapshot().lb)
            app = CtopApp(source, view="table")
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause()
                assert shown_keys(app) >= {"d", "r"}
                await select_server(pilot, app, "web3", "s2")
                await pilot.press("d")
                await until(lambda: isinstance(app.screen, ConfirmAction))
                await pilot.press("y")
                await until(lambda: server_stat(haproxy, "web3", "s2")[1] == "DRAIN")
                # the daemon ran it: its journal row names the caller, its event every UI sees
                assert d.journal()[-1][:4] == ("root", None, "operator", "drain")
                await until(lambda: any(e.message.startswith("root operator drain haproxy web3 s2")
                                        for e in source.snapshot().events))
                assert any("operator drain haproxy web3 s2" in m for m in d.events())

                await _stale_dialog_is_refused(app, pilot, haproxy, "web3", "s3")
                assert len([r for r in d.journal() if r[3] == "drain"]) == 1
        finally:
            source.close()


async def test_attached_ui_shows_a_servers_connections_read_by_the_daemon(
        haproxy: HAProxyLab) -> None:
    import socket

    from ctop.lb.haproxy import HAProxyBalancer
    from ctop.tui.screens.connections import ConnectionsScreen

    with director(haproxy) as d, serving(d):
        source = RemoteSource(str(d.socket), str(d.db), poll=0.2)
        client = None
        try:
            await until(lambda: source.snapshot().lb)
            # opened once the daemon serves: the lab's HAProxy closes a session idle for 10 s,
            # and a daemon starting on a loaded machine can take that long
            client = socket.create_connection(("127.0.0.1", haproxy.frontends["tcp1"]),
                                              timeout=5)
            client.sendall(b"GET / HTTP/1.1\r\n")  # held open: a long-lived session on tcp1
            port = client.getsockname()[1]
            be = HAProxyBalancer(haproxy.admin_socket)
            await until(lambda: any(be.connections("tcp1", s) for s in ("s1", "s2", "s3")))
            server = next(s for s in ("s1", "s2", "s3") if be.connections("tcp1", s))
            assert source.lb is None  # the attached UI has no balancer of its own
            app = CtopApp(source, view="table")
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause()
                await select_server(pilot, app, "tcp1", server)
                await pilot.press("c")
                await until(lambda: isinstance(app.screen, ConnectionsScreen))
                shown = lambda: str(app.screen.query_one("#conns").render())  # noqa: E731
                await until(lambda: f"127.0.0.1:{port}" in shown())
                assert "1 connection" in shown() and "not reachable" not in shown()
        finally:
            source.close()
            if client is not None:
                client.close()


async def test_attached_ui_to_a_read_only_daemon_hides_and_is_refused(
        haproxy: HAProxyLab) -> None:
    with director(haproxy) as d, serving(d, "--readonly"):
        source = RemoteSource(str(d.socket), str(d.db), poll=0.2)  # this UI's config: writable
        try:
            await until(lambda: source.snapshot().lb)
            app = CtopApp(source, view="table")
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause()
                assert app.readonly and not shown_keys(app) & ACTION_KEYS
                await select_server(pilot, app, "web4", "s1")
                await pilot.press("d")
                await pilot.pause()
                assert isinstance(app.screen, MainScreen)
            # even a client that ignores the hidden keys is refused by the daemon
            result = await source.lb_action(ActionRequest("drain", "haproxy", "web4", "s1"))
            assert not result.ok and "read-only" in result.message
            assert server_stat(haproxy, "web4", "s1") == (1, "UP")
        finally:
            source.close()


# -- automation --------------------------------------------------------------------------------


async def test_lb_readonly_key_stops_auto_quiesce(tmp_path) -> None:
    """A failing service under [lb] readonly = true: reported, but nothing is drained."""
    import shutil

    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    demo = DemoCluster(nodes=2, workdir=tmp_path, interval=0.3, probe_interval=0.3,
                       traffic_per_s=5)
    demo.start()
    try:
        cfg = demo.config()
        cfg = replace(cfg, tick=0.2, lb_every=0.3, lb=replace(
            cfg.lb, readonly=True,
            automation=parse_config({"automation": {"web": {"quiesce_after": 2}}}).automation))
        engine = Engine(cfg)
        await engine.start()
        try:
            def web() -> dict[str, object]:
                svc = next((s for s in engine.snapshot().lb if s.key == "web"), None)
                return {} if svc is None else {s.key: s for s in svc.servers}

            await until(lambda: web().get("web-02") is not None
                        and web()["web-02"].node_id == "web-02", timeout=20)
            demo.stop_web(1)

            def failing() -> bool:
                node = engine.snapshot().node("web-02")
                return node is not None and any(s.status == "fail" for s in node.services)

            await until(failing, timeout=15)
            await asyncio.sleep(2.0)  # many automation rounds with quiesce_after = 2
            # not drained by ctop; HAProxy's own health check may have marked it down by now
            assert web()["web-02"].state in ("serving", "down")
            assert not [e for e in engine.snapshot().events if e.kind == "action"]
        finally:
            await engine.stop()
    finally:
        await asyncio.to_thread(demo.stop)

