"""The UI makes (almost) no cyclic garbage per tick, so its memory stays flat while the heap is
frozen between ticks (ctop/gcpolicy.py) and no long full collection is ever needed."""

from __future__ import annotations

import gc
import sys
from dataclasses import replace

import pytest

from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_history, sample_snapshot

SIZE = (160, 50)
TICKS = 6
# Textual's compositor leaves one small closure cycle (~15 objects) each time it re-arranges
# the screen; repainted lines used to leave ~4,800 objects a tick at this size.
PER_TICK = 50
UI_PACKAGES = {"textual", "rich", "ctop"}  # the types whose cyclic garbage is counted


class CycleCounter:
    """Objects that only the cyclic collector could free, made between start() and stop()."""

    def start(self) -> None:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)

    def stop(self) -> int:
        try:
            gc.collect()
            # the UI's own: other tests' servers and threads in this process (a whole-suite
            # run) make garbage of their own meanwhile, which says nothing about the UI
            return sum(type(o).__module__.partition(".")[0] in UI_PACKAGES for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()


@pytest.mark.parametrize("screen", ["table", "grid", "node detail"])
async def test_new_ticks_leave_no_cyclic_garbage(screen: str) -> None:
    snaps = [sample_snapshot(300, tick=k + 1) for k in range(2)]  # every node differs
    source = StaticSource(snaps[0], history=sample_history)
    app = CtopApp(source, view="grid" if screen == "grid" else "table", poll=3600)
    cycles = CycleCounter()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        if screen == "node detail":
            await pilot.press("enter")
            # the 1-hour span: its charts reload every 10 s, not every second. A reload is a
            # worker thread (Textual's worker objects are cycles, ~1,300 objects): driven by the
            # clock, not by ticks, it would land inside the measured ticks on a slow machine.
            await pilot.press("3")
            await pilot.pause()

        async def tick(k: int) -> None:
            source.set_snapshot(replace(snaps[k % 2], tick=100 + k))
            app.refresh_snapshot()
            await pilot.pause()

        for k in range(3):  # warm-up: styles, caches, first layout
            await tick(k)
        cycles.start()
        for k in range(TICKS):
            await tick(3 + k)
        garbage = cycles.stop()
    assert garbage < PER_TICK * TICKS, f"{garbage} objects of cyclic garbage in {TICKS} ticks"


async def test_an_open_node_detail_reloads_its_charts_without_worker_cycles(monkeypatch) -> None:
    """At the default span the charts reload every second. Each reload was a Textual thread
    worker: its Worker, task, context and closures are reference cycles, cyclic garbage every
    second for as long as a node detail is open. Now the clock's reloads run on one kept thread
    and hand their result to the loop: no worker, nothing cyclic."""
    import asyncio

    from textual.worker import Worker

    reads: list[str] = []

    def history(node_id, metrics, seconds):
        reads.append(node_id)
        return sample_history(node_id, metrics, seconds)

    workers: list[str] = []
    init = Worker.__init__

    def counted(worker, *args, **kw) -> None:
        init(worker, *args, **kw)
        workers.append(worker.name)

    app = CtopApp(StaticSource(sample_snapshot(30), history=history), view="table", poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        while getattr(app.screen, "arr", None) is None:  # the first snapshot shown
            await pilot.pause()
        await pilot.press("enter")  # opening reads through a worker (tests await it)
        await pilot.pause()
        await app.workers.wait_for_complete()
        monkeypatch.setattr(Worker, "__init__", counted)
        opened = len(reads)
        for _ in range(30):  # 3 s: two or three reloads
            await asyncio.sleep(0.1)
            await pilot.pause()
        assert len(reads) >= opened + 2, "the charts did not reload"
        assert workers == []


class Repaints:
    """Counts the rows a LineView draws (Textual calls render_line only for rows it repaints)."""

    def __init__(self, widget) -> None:
        self.rows: list[int] = []
        draw = widget.render_line

        def counted(y: int):
            self.rows.append(y)
            return draw(y)

        widget.render_line = counted


@pytest.mark.parametrize("view", ["table", "grid"])
async def test_a_tick_repaints_only_the_rows_that_changed(view: str) -> None:
    from ctop.tui.widgets.lb_pane import LBPane
    from ctop.tui.widgets.node_list import NodeList

    snap = sample_snapshot(300)
    source = StaticSource(snap, history=sample_history)
    app = CtopApp(source, view=view, poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(3):  # the first snapshot, then the first paint
            await pilot.pause()
        nodes, lb = app.screen.query_one(NodeList), app.screen.query_one(LBPane)
        drawn, lb_drawn = Repaints(nodes), Repaints(lb)
        source.set_snapshot(replace(snap, tick=snap.tick + 1))  # an idle cluster: same views
        app.refresh_snapshot()
        await pilot.pause()
        assert drawn.rows == [] and lb_drawn.rows == []

        # one node on screen (not the selected one) gets busy: its row or card, nothing else
        busy = nodes.arr.nodes[1]
        changed = tuple(n._replace(cpu=99.5) if n is busy else n for n in snap.nodes)
        source.set_snapshot(replace(snap, tick=snap.tick + 2, nodes=changed,
                                    _index=type(snap).index_of(changed)))
        app.refresh_snapshot()
        await pilot.pause()
        assert drawn.rows and len(set(drawn.rows)) <= (1 if view == "table" else 5)
        assert lb_drawn.rows == []


@pytest.mark.parametrize("cuts", [[10], [4, 10], [3], [0, 10], [12], [4, 7, 10], []])
def test_strips_divide_and_crop_as_textual_does_without_caching_themselves(cuts) -> None:
    from rich.segment import Segment
    from textual.strip import Strip

    from ctop.tui import strip_cycles

    def line() -> Strip:
        return Strip([Segment("abcd"), Segment("efghij")])  # 10 cells

    assert [s.text for s in strip_cycles._divide(line(), cuts)] == [
        s.text for s in line().divide(cuts)]
    for start, end in ((0, 10), (0, 12), (2, 10), (0, 6), (-1, 10)):
        assert strip_cycles._crop_extend(line(), start, end, None).text == (
            line().crop_extend(start, end, None).text)
    whole = line()
    whole.divide([10])
    whole.crop_extend(0, 10, None)
    # no reference to the strip but this name (and getrefcount's argument): nothing it cached
    # points back at it, so `del` frees it at once without a cyclic collection. (Textual's own
    # divide/crop_extend give 4. Counting gc.get_objects() around `del` was flaky in a whole
    # suite run: other tests' threads make objects meanwhile.)
    assert sys.getrefcount(whole) == 2
