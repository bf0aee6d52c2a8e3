"""The UI's look back: T shows the past from a real history database, left/right scrub, every
action key is off, esc goes back to live; ctop --at has no live view to go back to."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ctop import past as past_module
from ctop.lb_history import round_of
from ctop.past import PastSource
from ctop.snapshot import (
    AlertView,
    EventView,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    Severity,
)
from ctop.store import Store
from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from ctop.tui.widgets.header import ClusterHeader
from tests.helpers.sample import sample_snapshot

SIZE = (160, 45)


def _node(node_id: str, ts: float, cpu: float) -> NodeView:
    metrics = {"cpu_percent": cpu, "mem_percent": 40.0, "tcp_established": 12, "procs": 90}
    return NodeView(node_id, node_id, "web", Liveness.ALIVE, ts, 1, 1.0, ("10.0.0.1",), 4,
                    1 << 33, "1", cpu=cpu, mem=40.0, conns=12, procs=90, metrics=metrics)


def _lb(s2_state: str, s2_weight: int) -> tuple[LBServiceView, ...]:
    total = 1 + s2_weight
    servers = (
        RealServerView("s1", "10.0.0.1", 80, 1, "serving", 5, 0, 2.0, "n1",
                       5 / (5 + (5 if s2_weight else 0)), 1 / total, 1.0),
        RealServerView("s2", "10.0.0.2", 80, s2_weight, s2_state, 5 if s2_weight else 0, 0,
                       2.0 if s2_weight else 0.0, "n2", 0.5 if s2_weight else 0.0,
                       s2_weight / total, 1.0 if s2_weight else None),
    )
    return (LBServiceView("web", "haproxy", "http", "roundrobin", servers, 0.0),)


def history_with_an_incident(db: Path, now: float) -> tuple[float, float]:
    """Five calm minutes ago, then two minutes ago n2 died and s2 was drained."""
    calm, incident = now - 300, now - 120
    store = Store(str(db), raw_every=0.0)
    store.record_nodes([_node("n1", calm, 10), _node("n2", calm, 20)])
    store.record_events([EventView(calm - 1, "join", n, f"{n} joined") for n in ("n1", "n2")])
    store.record_alerts(calm, ())
    for k in range(5):
        t = calm + k
        store.record_tick(t, [_node("n1", t, 10), _node("n2", t, 20)], ())
        store.record_lb(round_of(t, _lb("serving", 1)))
    dead = AlertView("node-dead:n2", "node-dead", "n2", Severity.CRIT, "n2 is dead", incident)
    store.record_events([EventView(incident, "state", "n2", "n2 alive → dead (silent for 3.0 s)"),
                         EventView(incident, "action", "n2", "drain haproxy web s2: 1 → 0 ok")])
    store.record_alerts(incident, (dead,))
    for k in range(5):
        t = incident + k
        store.record_tick(t, [_node("n1", t, 70)], ())
        store.record_lb(round_of(t, _lb("drained", 0)))
    store.close()
    return calm, incident


async def settle(pilot) -> None:
    """Moments are read in worker threads: wait for them, then for the screen."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _header(app: CtopApp) -> str:
    return str(app.screen.query_one(ClusterHeader).render())


async def test_T_shows_the_past_scrubs_refuses_actions_and_esc_is_live_again(tmp_path):
    now = time.time()
    history_with_an_incident(tmp_path / "ctop.db", now)
    live_snap = replace(sample_snapshot(6, ts=now), ts=now)
    live = StaticSource(live_snap)
    live.db_path = str(tmp_path / "ctop.db")  # type: ignore[attr-defined]
    app = CtopApp(live)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "PAST" not in _header(app)
        await pilot.press("T")  # a minute ago: after the incident
        await settle(pilot)
        snap = app.snapshot
        assert snap.past and app.readonly
        assert {n.node_id: n.liveness for n in snap.nodes} == {
            "n1": Liveness.ALIVE, "n2": Liveness.DEAD}
        assert [(a.rule, a.node_id) for a in snap.alerts] == [("node-dead", "n2")]
        assert [(s.key, s.state) for s in snap.lb[0].servers] == [("s1", "serving"),
                                                                   ("s2", "drained")]
        assert "PAST" in _header(app) and "esc live" in _header(app)
        # the action keys are gone from the footer and do nothing
        assert "lb_drain" not in {b.binding.action for b in app.active_bindings.values()}
        await pilot.press("tab", "d", "m", "r")
        await pilot.pause()
        assert live.actions == [] and app.screen.__class__.__name__ == "MainScreen"

        await pilot.press("left", "left", "left")  # three minutes further back: the calm
        await settle(pilot)
        snap = app.snapshot
        assert abs(snap.ts - (now - 240)) < 1
        assert all(n.liveness is Liveness.ALIVE for n in snap.nodes) and not snap.alerts
        assert [(s.key, s.state) for s in snap.lb[0].servers] == [("s1", "serving"),
                                                                   ("s2", "serving")]
        await pilot.press("shift+right")  # ten minutes on: no further than now
        await settle(pilot)
        assert app.snapshot.ts <= time.time()

        await pilot.press("escape")
        await settle(pilot)
        assert app.past is None and not app.snapshot.past and not app.readonly
        assert app.snapshot is live_snap and "PAST" not in _header(app)
        assert "lb_drain" in {b.binding.action for b in app.active_bindings.values()}


async def test_T_without_a_history_database_says_so_and_stays_live():
    app = CtopApp(StaticSource(sample_snapshot(6)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("T")
        await settle(pilot)
        assert app.past is None and not app.snapshot.past


async def test_ctop_at_opens_in_the_past_and_esc_cannot_leave_it(tmp_path):
    now = time.time()
    _, incident = history_with_an_incident(tmp_path / "ctop.db", now)
    source = PastSource(str(tmp_path / "ctop.db"), incident + 2, cluster="prod")
    app = CtopApp(source)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert "PAST" in _header(app) and "esc live" not in _header(app)
            await pilot.press("escape")
            await pilot.pause()
            assert app.past is source and app.snapshot.past
            # the node detail reads the history up to the moment
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen.__class__.__name__ == "NodeDetail"
    finally:
        source.close()


async def test_a_step_says_loading_at_once_and_a_superseded_step_is_never_shown(
        tmp_path, monkeypatch):
    """←/→ at 10,000 nodes reads for a while: the header says which moment is coming at once,
    and a second press while the first is read wins: the first moment never reaches the
    screen (the first read is held inside its store read until the second press)."""
    now = time.time()
    _, incident = history_with_an_incident(tmp_path / "ctop.db", now)
    start = incident + 2
    source = PastSource(str(tmp_path / "ctop.db"), start, cluster="prod")
    app = CtopApp(source)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            shown: list[float] = []
            screen = app.screen
            update = screen.update_snapshot
            screen.update_snapshot = lambda snap: (shown.append(snap.ts), update(snap))
            # each read is held inside its store read until the test lets it go on
            entered = [threading.Event(), threading.Event()]
            gates = [threading.Event(), threading.Event()]
            read_values = past_module._node_values
            calls = 0

            def held(*args, **kw):
                nonlocal calls
                k, calls = calls, calls + 1
                if k < 2:
                    entered[k].set()
                    gates[k].wait(10)
                return read_values(*args, **kw)

            monkeypatch.setattr(past_module, "_node_values", held)
            await pilot.press("left")
            await asyncio.to_thread(entered[0].wait, 10)
            await pilot.pause()
            first = datetime.fromtimestamp(start - 60)
            assert f"loading {first:%H:%M:%S}" in _header(app)
            await pilot.press("left")
            await pilot.pause()
            second = datetime.fromtimestamp(start - 120)
            assert f"loading {second:%H:%M:%S}" in _header(app)
            gates[0].set()  # the first read finishes while the second is asked for
            assert await asyncio.to_thread(entered[1].wait, 10)
            await pilot.pause(0.6)  # a poll of the source or two
            assert start - 60 not in shown  # the older moment never reached the screen
            assert f"loading {second:%H:%M:%S}" in _header(app)
            gates[1].set()
            await settle(pilot)
            await pilot.pause(0.6)
            assert app.snapshot.ts == start - 120
            assert start - 60 not in shown and shown[-1] == start - 120
            assert "loading" not in _header(app)
            assert all(n.liveness is Liveness.ALIVE for n in app.snapshot.nodes)  # the calm
    finally:
        source.close()
