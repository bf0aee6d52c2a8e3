"""The confirmation dialog of a director pair whose peer cannot confirm: the what-if says why,
`y` is refused with nothing changed, `o` acts on this director only (real engine, real HAProxy,
real nats-server)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from ctop.engine import Engine
from ctop.nats.config import NatsConfig
from ctop.tui.app import CtopApp
from ctop.tui.screens.confirm import ConfirmAction
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.nats_servers import NatsServer
from tests.helpers.tui_helpers import SIZE, select_server
from tests.test_tui_lb_guards import state, whatif

pytest.importorskip("nats")


@pytest_asyncio.fixture(loop_scope="function")
async def pair_engine(tmp_path, haproxy, nats_server: NatsServer):
    nats = NatsConfig(servers=(nats_server.url,), name="dir-a", peers=("dir-b",),
                      subject_prefix=f"t{uuid.uuid4().hex[:8]}")
    eng: Engine = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}},
                              nats=nats)
    await eng.start()
    await until(lambda: eng.snapshot().lb)
    yield eng
    await eng.stop()


async def test_dialog_offers_this_director_only_when_the_peer_cannot_confirm(pair_engine,
                                                                              haproxy):
    app = CtopApp(pair_engine, view="table")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await select_server(pilot, app, "web8", "s2")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await until(lambda: "what if" in whatif(app))
        await until(lambda: app.screen.query("#local"))
        assert "dir-b has not been seen" in whatif(app)
        await pilot.press("y")  # both directors, as usual: refused, nothing changed
        await until(lambda: not isinstance(app.screen, ConfirmAction))
        await asyncio.sleep(0.3)
        assert state(haproxy, "web8", "s2") == (1, "serving")
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, ConfirmAction))
        await until(lambda: app.screen.query("#local"))
        await pilot.press("o")  # this director only, knowingly
        await until(lambda: state(haproxy, "web8", "s2")[1] == "drained")
        rows = pair_engine.lb.journal.actions(server="s2", limit=1)
        assert rows[0].action == "drain" and rows[0].service == "web8"
