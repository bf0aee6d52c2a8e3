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
