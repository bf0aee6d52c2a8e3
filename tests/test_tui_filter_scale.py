"""The filter typed at 10,000 nodes, one key at a time, as the operator types it: after each
key (and after ticks that keep the arrangement) the rows shown are exactly the matching ones,
in order; the kept arrangement (ctop.tui.arrange) never shows a stale row."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ctop.snapshot import Liveness
from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_snapshot

SIZE = (160, 50)


def matching(snap, text: str) -> list[str]:
    terms = text.lower().split()
    return [n.node_id for n in snap.nodes if all(t in " ".join(
        (n.hostname, n.node_id, n.group, n.liveness, *n.addresses)).lower() for t in terms)]


async def shown_after(pilot) -> list[str]:
    """Until a debounced filter has run and the screen is repainted: the rows it shows."""
    await pilot.pause()
    while getattr(pilot.app.screen, "_filter_timer", None) is not None:
        await asyncio.sleep(0.01)
    await pilot.pause()
    return [n.node_id for n in pilot.app.screen.arr.nodes]


async def test_a_filter_typed_at_10000_nodes_shows_the_right_rows_after_every_key_and_tick():
    snap = sample_snapshot(10_000)
    source = StaticSource(snap)
    app = CtopApp(source, view="table", poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        typed = ""
        for key in "web-01":
            await pilot.press("minus" if key == "-" else key)
            typed += key
            assert await shown_after(pilot) == matching(snap, typed), typed
        assert len(matching(snap, typed)) >= 2
        await pilot.press("space", "d", "e", "a", "d")  # a second term: the dead among them
        typed += " dead"
        dead = matching(snap, typed)
        assert dead and await shown_after(pilot) == dead
        # ticks: new node objects, same values (the kept arrangement), then one of them
        # alive again and another dead (the filter must follow the state)
        for _ in range(2):
            nodes = tuple(n._replace() for n in snap.nodes)
            snap = replace(snap, tick=snap.tick + 1, nodes=nodes, _index=snap.index_of(nodes))
            source._snaps[0] = snap
            app.refresh_snapshot()
            assert await shown_after(pilot) == dead
            assert all(a is b for a, b in zip(app.screen.arr.nodes,
                                               (snap.node(i) for i in dead), strict=True))
        alive_again = dead[0]
        other = next(i for i in matching(snap, "web-01") if i not in dead)
        changed = {i: n for i, n in enumerate(snap.nodes)
                   if n.node_id == alive_again or n.node_id == other}
        nodes = tuple(n._replace(liveness=Liveness.ALIVE if n.node_id == alive_again
                                 else Liveness.DEAD) if i in changed else n
                      for i, n in enumerate(snap.nodes))
        snap = replace(snap, tick=snap.tick + 1, nodes=nodes, _index=snap.index_of(nodes))
        source._snaps[0] = snap
        app.refresh_snapshot()
        now = await shown_after(pilot)
        assert now == matching(snap, typed) and other in now and alive_again not in now


async def test_a_filter_typed_while_scrolled_to_the_end_shows_its_rows_and_a_fitting_scrollbar():
    """A key that only changes how many lines the table has is drawn without a whole-screen
    layout (LineView.set_size): the scroll must still be clamped to the shorter table, the
    scrollbar sized to it, and the rows on screen be the matching ones; a long filter still
    scrolls inside its box (FilterBox)."""
    snap = sample_snapshot(10_000)
    app = CtopApp(StaticSource(snap), view="table", poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("end")
        await pilot.pause()
        nodes = app.screen.nodes
        assert nodes.scroll_y > 9_000  # at the bottom of 10,000 rows
        await pilot.press("slash", "w", "e", "b", "minus", "0")
        shown = await shown_after(pilot)
        assert shown == matching(snap, "web-0") and nodes.view_height < len(shown) < 5_000
        lines = len(shown) + len(app.screen.arr.groups) + 1  # with the column header
        assert nodes.virtual_size.height == lines
        assert nodes.scroll_y == nodes.max_scroll_y <= lines  # clamped to the shorter table
        assert nodes.vertical_scrollbar.window_virtual_size == lines
        on_screen = "".join(nodes.render_line(y).text for y in range(1, nodes.view_height + 1))
        assert shown[-1] in on_screen  # the table's last row at the bottom, not blank lines
        box = app.screen.query_one("#filter")
        await pilot.press(*("z" * 200))
        assert box.value == "web-0" + "z" * 200 and box.scroll_x > 0
        assert await shown_after(pilot) == []
