"""The UI shows who sends rejected datagrams (the header's drop counter opens the view) and
that history is failing: a real engine fed real datagrams over UDP."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from ctop.tui.app import CtopApp
from ctop.tui.screens.drops import DropsScreen
from ctop.tui.widgets.header import ClusterHeader
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.serve_helpers import Sender, fill, tmpfs


async def test_the_drop_counter_opens_the_rejects_by_source(tmp_path):
    engine = make_engine(tmp_path)
    await engine.start()
    try:
        wrong = Sender("n9", key=b"another cluster's key, 32 bytes!")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.7", 0))
            for _ in range(3):
                s.sendto(wrong.report(), ("127.0.0.1", engine.port))
        await until(lambda: engine.snapshot().drops.get("bad_tag") == 3)
        app = CtopApp(engine, view="table")
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            header = app.screen.query_one(ClusterHeader)
            assert "dropped 3 (bad_tag 3)" in str(header.render())
            await pilot.click(ClusterHeader, offset=(100, 1))  # the counter's line
            await pilot.pause()
            assert isinstance(app.screen, DropsScreen)
            text = str(app.screen.query_one("#drops").render())
            assert "bad_tag" in text and "127.0.0.7" in text and "wrong key" in text
            await pilot.press("escape")
            await pilot.press("x")  # the key does the same
            await pilot.pause()
            assert isinstance(app.screen, DropsScreen)
    finally:
        await engine.stop()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_the_header_says_history_is_failing(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        engine = make_engine(disk)
        await engine.start()
        try:
            fill(disk)
            senders = [Sender(f"n{i}") for i in range(20)]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(100):  # new samples until the writer hits the full disk
                    for sender in senders:
                        s.sendto(sender.report(), ("127.0.0.1", engine.port))
                    if engine.snapshot().history_error:
                        break
                    await asyncio.sleep(0.1)
            app = CtopApp(engine, view="table")
            async with app.run_test(size=(200, 40)) as pilot:
                await pilot.pause()
                text = str(app.screen.query_one(ClusterHeader).render())
                assert "history failing since" in text and "full" in text, text
        finally:
            await engine.stop()
