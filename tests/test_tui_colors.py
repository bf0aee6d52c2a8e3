"""`--color` governs every colour on screen: in 8 colours nothing but the terminal's default and
ANSI colours 0-7 reaches the terminal, on every screen; in full colour the data colours are the
palette's (none hard-coded in a screen)."""

from __future__ import annotations

import pytest
from rich.color import ColorType

from ctop.tui.app import CtopApp
from ctop.tui.colors import RICH
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_history, sample_snapshot
from tests.helpers.screen import colours_beyond_8, segments


async def on_screen(app: CtopApp, keys: tuple[str, ...], size=(140, 42)):
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        busy = [w for w in app.workers if w.group != "lb-action"]
        if busy:
            await app.workers.wait_for_complete(busy)
        await pilot.pause()
        return colours_beyond_8(app), segments(app)


@pytest.mark.parametrize(
    "keys",
    [(), ("t",), ("right", "enter"), ("question_mark",), ("a",), ("x",),
     ("tab", "down", "d"), ("slash", "w")],
    ids=["grid", "table", "node-detail", "help", "alerts", "rejects", "drain-dialog", "filter"],
)
async def test_8_colours_send_only_8_colours(keys):
    app = CtopApp(StaticSource(sample_snapshot(16), history=sample_history), view="grid",
                  poll=3600, color="8")
    leaks, _ = await on_screen(app, keys)
    assert not leaks, sorted(leaks)[:10]


async def test_node_detail_charts_take_the_palettes_colours():
    app = CtopApp(StaticSource(sample_snapshot(16), history=sample_history), view="grid",
                  poll=3600)
    _, segs = await on_screen(app, ("right", "enter"))
    blocks = {s.style.color for s in segs if s.style and s.style.color and "█" in s.text}
    assert blocks, "no chart drawn"
    assert blocks <= {st.color for st in RICH.series}
    assert all(c.type == ColorType.TRUECOLOR for c in blocks)
