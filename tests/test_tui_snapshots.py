"""Snapshot tests (pytest-textual-snapshot) of the ctop UI on fixed, deterministic snapshots.

Regenerate after a deliberate visual change with `--snapshot-update`, then look at the SVGs in
tests/__snapshots__/. Times shown ("5s ago") come from the snapshot's own ts, never the clock.
"""

from __future__ import annotations

import pytest

from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_history, sample_snapshot
from tests.helpers.screen import colours_beyond_8

SIZE = (140, 42)
# the classic terminal, a laptop's, and a wide monitor's
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40), (250, 60)],
                                ids=["80x24", "120x40", "250x60"])


def make(nodes: int, view: str, **kw) -> CtopApp:
    return CtopApp(
        StaticSource(sample_snapshot(nodes), history=sample_history), view=view, poll=3600, **kw
    )


async def press(pilot, *keys: str) -> None:
    """Keys once the app shows its first snapshot, as a person would press them: a key pressed
    before the first refresh (a busy CI machine) opened a screen over a main screen still
    empty, and the picture showed a blank header."""
    for _ in range(100):
        if pilot.app._tick != -1:
            break
        await pilot.pause(0.05)
    await pilot.press(*keys)


async def settle(pilot) -> None:
    await pilot.pause()
    busy = [w for w in pilot.app.workers if w.group != "lb-action"]
    if busy:
        await pilot.app.workers.wait_for_complete(busy)
    await pilot.pause()


def test_main_grid(snap_compare):
    assert snap_compare(make(16, "grid"), terminal_size=SIZE, run_before=settle)


def test_main_table(snap_compare):
    assert snap_compare(make(300, "table"), terminal_size=SIZE, run_before=settle)


def test_main_table_sorted_by_cpu_ungrouped(snap_compare):
    async def keys(pilot):
        await press(pilot, "s", "g")
        await settle(pilot)

    assert snap_compare(make(300, "table"), terminal_size=SIZE, run_before=keys)


def test_main_no_load_balancer_and_8_colours(snap_compare):
    """Really 8 colours: the picture is what an 8-colour terminal gets (ANSI 0-7 only)."""

    async def check(pilot):
        await settle(pilot)
        assert not colours_beyond_8(pilot.app)

    app = CtopApp(StaticSource(sample_snapshot(16, lb=False)), view="grid", poll=3600, color="8")
    assert snap_compare(app, terminal_size=SIZE, run_before=check)


def test_node_detail(snap_compare):
    async def keys(pilot):
        await settle(pilot)  # the first snapshot shown: "right" selects the second card
        await press(pilot, "right", "enter")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=SIZE, run_before=keys)


def test_alerts_screen(snap_compare):
    async def keys(pilot):
        await press(pilot, "a")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=SIZE, run_before=keys)


def test_drain_dialog(snap_compare):
    async def keys(pilot):
        await press(pilot, "tab", "down", "down", "d")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=SIZE, run_before=keys)


def test_help_screen(snap_compare):
    async def keys(pilot):
        await press(pilot, "question_mark")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=SIZE, run_before=keys)


def test_main_in_an_80_by_24_terminal(snap_compare):
    """The classic terminal: header cropped not wrapped, alerts pane folded away so the load
    balancer keeps its columns."""
    assert snap_compare(make(16, "table"), terminal_size=(80, 24), run_before=settle)


@SIZES
def test_main_grid_at(snap_compare, size):
    """Cards fill the row; the LB pane's columns and the alerts pane share the bottom."""
    assert snap_compare(make(16, "grid"), terminal_size=size, run_before=settle)


@SIZES
def test_node_detail_at(snap_compare, size):
    async def keys(pilot):
        await settle(pilot)  # the first snapshot shown: "right" selects the second card
        await press(pilot, "right", "enter")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=size, run_before=keys)


@SIZES
def test_help_at(snap_compare, size):
    async def keys(pilot):
        await press(pilot, "question_mark")
        await settle(pilot)

    assert snap_compare(make(16, "grid"), terminal_size=size, run_before=keys)


def test_the_past_at_an_incident(snap_compare, tmp_path, monkeypatch):
    """ctop --at: the header marks the past; a node dead, a server drained, the alerts then."""
    import time

    import ctop.past
    from ctop.past import PastSource
    from tests.helpers.past_history import write_incident

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    moment = write_incident(tmp_path / "ctop.db")
    monkeypatch.setattr(ctop.past, "clock", lambda: moment + 3600)
    source = PastSource(str(tmp_path / "ctop.db"), moment, cluster="prod")
    try:
        app = CtopApp(source, view="grid", poll=3600)
        assert snap_compare(app, terminal_size=SIZE, run_before=settle)
    finally:
        source.close()
        monkeypatch.undo()
        time.tzset()


def test_node_detail_watched_processes(snap_compare):
    """The node detail lists the agent's watched processes: count against the expected range
    (red when outside), restarts, CPU, RSS, threads and open files."""
    from dataclasses import replace

    snap = sample_snapshot(16)
    watched = [("nginx", 4, 1, None, 0, 12.5, 96 << 20, 4, 210),
               ("haproxy", 1, 2, 2, 3, 3.2, 40 << 20, 2, 64),
               ("java:*tomcat*", 0, 1, None, 1, 0.0, 0, 0, 0)]
    snap = replace(snap, nodes=tuple(n._replace(metrics={**n.metrics, "watched": watched})
                                     for n in snap.nodes))

    async def keys(pilot):
        await press(pilot, "right", "enter")
        await settle(pilot)

    app = CtopApp(StaticSource(snap, history=sample_history), view="grid", poll=3600)
    assert snap_compare(app, terminal_size=SIZE, run_before=keys)


def test_main_table_with_anomalies(snap_compare):
    """The ANOM column: a node anomaly, a cost outlier and a whole group escalated; the
    anomaly alerts in the alerts pane."""
    from dataclasses import replace

    from ctop.anomaly.levels import COST, GROUP, NODE
    from ctop.snapshot import AlertView, Severity

    snap = sample_snapshot(40)
    a, b = snap.nodes[1], snap.nodes[2]
    group = snap.nodes[-1].group
    alerts = (
        AlertView(f"{GROUP}:{group}", GROUP, "", Severity.CRIT,
                  f"group {group}: 4 of 10 nodes anomalous at once (>= 30%)", snap.ts - 60, 0.4),
        AlertView(f"{NODE}:{a.node_id}:cpu_percent", NODE, a.node_id, Severity.WARN,
                  f"cpu_percent on {a.node_id} is 83, 7.2 robust z above its usual 21 at this "
                  "hour of the week", snap.ts - 120, 7.2),
        AlertView(f"{COST}:{b.node_id}", COST, b.node_id, Severity.WARN,
                  f"{b.node_id} costs 3.1x its group {b.group}'s median CPU per connection",
                  snap.ts - 180, 7.6),
    )
    app = CtopApp(StaticSource(replace(snap, alerts=alerts), history=sample_history),
                  view="table", poll=3600)
    assert snap_compare(app, terminal_size=(180, 42), run_before=settle)
