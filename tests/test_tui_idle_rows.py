"""An idle cluster's table draws no row again: a node reporting on time moves its last-seen
time every second, and an exact age would flip 0s/1s and redraw every row (issue 12)."""

from __future__ import annotations

from dataclasses import replace

import ctop.tui.widgets.node_table
from ctop.snapshot import Liveness, Snapshot
from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_snapshot


def _tick(snap: Snapshot, tick: int, behind: float) -> Snapshot:
    """The next second: every node reported, `behind` seconds before the snapshot."""
    ts = snap.ts + 1
    nodes = tuple(n._replace(last_seen=ts - behind) if n.liveness is Liveness.ALIVE else n
                  for n in snap.nodes)
    return replace(snap, ts=ts, tick=tick, nodes=nodes, _index=Snapshot.index_of(nodes))


async def test_rows_of_nodes_reporting_on_time_are_not_drawn_again(monkeypatch):
    drawn: list[str] = []
    layout = ctop.tui.widgets.node_table.TableLayout
    row = layout._row

    def counting(self, node, width, cur):
        drawn.append(node.node_id)
        return row(self, node, width, cur)

    monkeypatch.setattr(layout, "_row", counting)
    first = _tick(sample_snapshot(40, lb=False), 1, 0.3)
    source = StaticSource(first)
    app = CtopApp(source, view="table", poll=3600)
    async with app.run_test(size=(160, 50)) as pilot:
        for _ in range(50):  # until the first snapshot is drawn
            await pilot.pause()
            if drawn:
                break
        assert drawn
        snap = first
        for tick, behind in ((2, 0.7), (3, 0.2), (4, 1.4)):  # ages 0s, 1s, 0s, 1s
            drawn.clear()
            snap = _tick(snap, tick, behind)
            source.set_snapshot(snap)
            app.refresh_snapshot()
            await pilot.pause()
            await pilot.pause()
            assert app.screen.snap is snap
            # (a silent node's age goes on counting: its row is drawn, rightly)
            on_time = [n for n in drawn if snap.node(n).liveness is Liveness.ALIVE]
            assert on_time == [], f"tick {tick}: rows drawn again: {on_time}"
        # a node that falls silent shows its age (and is drawn again)
        late = snap.nodes[0]._replace(last_seen=snap.ts + 1 - 9)
        nodes = (late, *snap.nodes[1:])
        source.set_snapshot(replace(snap, ts=snap.ts + 1, tick=9, nodes=nodes,
                                    _index=Snapshot.index_of(nodes)))
        app.refresh_snapshot()
        for _ in range(50):
            await pilot.pause()
            if drawn:
                break
        assert late.node_id in drawn


async def test_ages_still_count_and_ticks_that_move_no_age_rebuild_no_pane_line(monkeypatch):
    """The events pane's ages count on with every tick; a tick that brought no new event and
    moved no age the pane shows (minutes-old events) neither rebuilds nor compares its lines,
    and the node detail's title is not repainted while it says the same."""
    from ctop.snapshot import EventView
    from ctop.tui.widgets.alerts_pane import AlertsPane

    first = sample_snapshot(40, lb=False)
    fresh = EventView(first.ts - 20, "alert", first.nodes[0].node_id, "fresh one")
    old = tuple(EventView(first.ts - 300 - k, "join", n.node_id, f"{n.node_id} joined")
                for k, n in enumerate(first.nodes[:5]))
    first = replace(first, alerts=(), events=(*old, fresh))
    source = StaticSource(first)
    app = CtopApp(source, view="table", poll=3600)
    drawn: list[int] = []
    body = AlertsPane.body_strip

    def counting(self, line, width):
        drawn.append(line)
        return body(self, line, width)

    monkeypatch.setattr(AlertsPane, "body_strip", counting)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        pane = app.screen.query_one(AlertsPane)

        def age_of(message: str) -> str:
            line = next(i for i, x in enumerate(pane._items)
                        if getattr(x, "message", "") == message)
            return body(pane, line, 80).text.split()[1]

        snap = first
        for k in range(1, 4):  # the fresh event's age counts on
            snap = _tick(snap, k + 1, 0.3)
            source._snaps[0] = snap
            app.refresh_snapshot()
            await pilot.pause()
            assert age_of("fresh one") == f"{20 + k}s"
    # an app showing only minutes-old events: idle ticks draw none of the pane's lines
    source = StaticSource(replace(first, events=old))
    app = CtopApp(source, view="table", poll=3600)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause(0.3)
        pane = app.screen.query_one(AlertsPane)
        snap = source._snaps[0]
        drawn.clear()
        for _ in range(3):
            snap = _tick(snap, snap.tick + 1, 0.3)
            source._snaps[0] = snap
            app.refresh_snapshot()
            await pilot.pause()
        assert drawn == []
        line = next(i for i, x in enumerate(pane._items) if getattr(x, "ts", 0) == old[0].ts)
        assert body(pane, line, 80).text.split()[1] == "5m"
