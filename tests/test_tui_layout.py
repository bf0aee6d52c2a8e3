"""Wide terminals use their width: cards fill the grid's rows, the load-balancer pane's
columns grow, the events pane shows whole messages, and the "→ more" hint of a pane too narrow
for its columns sits in its top border, never over a column title."""

from __future__ import annotations

from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_history, sample_snapshot
from tests.helpers.screen import screen_text


async def shown(size: tuple[int, int], keys: tuple[str, ...] = (), view: str = "grid"):
    app = CtopApp(StaticSource(sample_snapshot(16), history=sample_history), view=view,
                  poll=3600)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()
        return screen_text(app)


def lb_header(lines: list[str]) -> str:
    return next(ln for ln in lines if "SERVER" in ln and "ADDRESS" in ln)


async def test_cards_fill_a_wide_terminal():
    for size in ((200, 50), (250, 60)):
        lines = await shown(size)
        row = next(ln for ln in lines if "web-001" in ln and "web-016" in ln)  # 4 cards
        assert len(row.rstrip()) >= size[0] - 6, row  # the row's last card ends at the edge


async def test_ungrouped_cards_flow_into_more_columns():
    lines = await shown((200, 50), ("g",))
    names = next(ln for ln in lines if "api-002" in ln)
    assert sum(f"-0{k:02d}" in names for k in range(1, 17)) >= 7  # 7 cards of 27 columns


async def test_events_pane_shows_whole_messages_on_a_wide_terminal():
    lines = await shown((200, 50))
    assert any("haproxy web: drain by operator (weight 2 → 0)" in ln for ln in lines)


async def test_load_balancer_columns_use_the_room():
    # at their narrowest the columns before NODE take 91 cells; a 150-cell pane widens them
    assert lb_header(await shown((250, 60))).index("NODE") >= 91 + 30
    body = next(ln for ln in await shown((250, 60)) if "web-016" in ln and "serving" in ln)
    assert "web-016" in body[body.index("serving"):]  # the NODE column is on screen


async def test_scroll_hint_covers_no_column_title():
    for size in ((80, 24), (140, 42)):
        lines = await shown(size)
        header = lb_header(lines)
        assert "more" not in header
        assert "SHARE vs WEIGHT" in header or "SHARE" in header.split()[-3:], header
        above = lines[lines.index(header) - 1]
        assert "→ more" in above  # the top border says the pane scrolls sideways
