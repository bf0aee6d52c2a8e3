"""Looking back in time: an incident on a real engine (real agentd processes over UDP, a drain on
the real HAProxy, a node killed), then the past as the store tells it (ctop --at, T)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest
import pytest_asyncio

from ctop.config import LivenessConfig
from ctop.engine import Engine
from ctop.lb.request import ActionRequest
from ctop.past import PastSource, parse_moment
from ctop.snapshot import Liveness

from .test_engine import make_engine, start_agent, until

RULES = (
    {"name": "node-dead", "liveness": "dead", "severity": "crit"},
    {"name": "web7-capacity", "lb_service": "web7", "serving_below": 3},
)


@pytest_asyncio.fixture(loop_scope="function")
async def incident_engine(tmp_path, haproxy):
    (tmp_path / "none.toml").write_text("")
    eng: Engine = make_engine(
        tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}}, lb_every=0.2,
        alerts=RULES, liveness=LivenessConfig(suspect_after=1.0, dead_after=2.0))
    await eng.start()
    yield eng
    await eng.stop()


def _history(snap, service: str, key: str):
    return next(s for s in snap.lb if s.key == service).share_history.get(key, ())


def _server(snap, service: str, key: str):
    svc = next((s for s in snap.lb if s.key == service), None)
    return None if svc is None else next((s for s in svc.servers if s.key == key), None)


async def test_the_past_shows_nodes_liveness_lb_and_alerts_as_they_were(
        incident_engine, haproxy, tmp_path):
    eng = incident_engine
    agents = [start_agent(tmp_path, eng.port, n) for n in ("n1", "n2")]
    try:
        def calm():
            snap = eng.snapshot()
            alive = {n.node_id for n in snap.nodes if n.liveness is Liveness.ALIVE}
            s2 = _server(snap, "web7", "s2")
            return alive == {"n1", "n2"} and s2 is not None and s2.state == "serving"
        await until(calm, timeout=15)
        await asyncio.sleep(1.0)  # a few stored rounds and samples of the calm
        before = time.time()
        await asyncio.sleep(0.5)

        # the incident: an operator drains web7/s2, then n2's agent dies
        result = await eng.lb_action(ActionRequest("drain", "haproxy", "web7", "s2", force=True))
        assert result.ok, result.message
        agents[1].send_signal(signal.SIGKILL)
        await until(lambda: any(n.node_id == "n2" and n.liveness is Liveness.DEAD
                                for n in eng.snapshot().nodes), timeout=10)
        await until(lambda: {a.rule for a in eng.snapshot().alerts} == {
            "node-dead", "web7-capacity"}, timeout=10)
        await asyncio.sleep(0.5)
        live_s2 = _server(eng.snapshot(), "web7", "s2")
        after = time.time()
        await asyncio.sleep(0.5)
        eng.store.flush()

        past = PastSource(str(tmp_path / "ctop.db"), before, cluster="test")
        try:
            then = past.snapshot()
            assert then.past and then.readonly and then.ts == before
            assert {n.node_id: n.liveness for n in then.nodes} == {
                "n1": Liveness.ALIVE, "n2": Liveness.ALIVE}
            assert then.totals.alive == 2 and then.alerts == ()
            s2 = _server(then, "web7", "s2")
            assert (s2.state, s2.weight) == ("serving", 1)
            assert abs(s2.weight_share - 1 / 3) < 1e-3
            assert _history(then, "web7", "s2")  # the rounds before, for the sparkline
            # nothing of the incident is in the past's events yet
            assert not any("drain haproxy web7 s2" in e.message for e in then.events)

            past.go(after)
            later = past.snapshot()
            assert {n.node_id: n.liveness for n in later.nodes} == {
                "n1": Liveness.ALIVE, "n2": Liveness.DEAD}
            s2 = _server(later, "web7", "s2")
            assert (s2.state, s2.weight, s2.weight_share) == (
                "drained", live_s2.weight, 0.0)
            assert {(a.rule, a.severity, a.node_id) for a in later.alerts} == {
                ("node-dead", "crit", "n2"), ("web7-capacity", "warn", "")}
            assert any("drain haproxy web7 s2: 1 → 0 ok" in e.message for e in later.events)
            # n1's metrics are its agent's (a real report), not zeros
            n1 = later.node("n1")
            assert n1 is not None and n1.mem > 0 and n1.procs > 0
            # and the past refuses every load-balancer action
            with pytest.raises(RuntimeError, match="past"):
                await past.lb_action(ActionRequest("restore", "haproxy", "web7", "s2"))
            await asyncio.sleep(0.5)  # a round or two later the balancer is still as drained
            assert _server(eng.snapshot(), "web7", "s2").state == "drained"
        finally:
            past.close()
    finally:
        for a in agents:
            a.kill()
            a.wait()


async def test_a_servers_share_history_reaches_the_node_detail_through_history(
        incident_engine, haproxy, tmp_path):
    from ctop.lb_history import metric_name

    eng = incident_engine
    await until(lambda: _server(eng.snapshot(), "web8", "s1"), timeout=10)
    await asyncio.sleep(0.6)
    result = await eng.lb_action(ActionRequest("drain", "haproxy", "web8", "s1"))
    assert result.ok, result.message
    await asyncio.sleep(0.6)
    eng.store.flush()
    name = metric_name("haproxy", "web8", "s1", "weight")
    points = eng.history("", [name], 60)[name]
    values = [v for _, v in points]
    assert values and abs(values[0] - 100 / 3) < 0.1 and values[-1] == 0.0
    # the engine's own view carries the recent rounds for the LB pane's sparkline
    s1 = _history(eng.snapshot(), "web8", "s1")
    assert len(s1) >= 3 and s1[-1][1] == 0.0
    assert s1[0][1] == pytest.approx(1 / 3, abs=1e-6)


def test_at_reads_the_operators_words_for_a_moment():
    now = 1_800_000_000.0
    assert parse_moment("15m ago", now) == now - 900
    assert parse_moment("-2h", now) == now - 7200
    assert parse_moment("1799990000", now) == 1799990000.0
    local = time.mktime(time.strptime("2026-12-01 14:05", "%Y-%m-%d %H:%M"))
    assert parse_moment("2026-12-01 14:05", now) == local
    with pytest.raises(ValueError, match="not a time"):
        parse_moment("last tuesday", now)
    with pytest.raises(ValueError, match="future"):
        parse_moment("2030-01-01 00:00", now)


@pytest.mark.parametrize(("when", "db", "said"), [
    ("yesterday-ish", "ctop.db", "not a time"),
    ("1h ago", "missing.db", "cannot read the history database"),
])
def test_at_with_bad_input_says_why_and_exits_2(tmp_path, when, db, said):
    (tmp_path / "ctop.db").write_bytes(b"")
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "ctop.cli", "--config", str(tmp_path / "none.toml"),
         "--db", str(tmp_path / db), "--at", when],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert not (tmp_path / "missing.db").exists()  # looking back creates nothing


async def test_a_restarted_director_does_not_carry_the_last_runs_alerts_into_the_past(tmp_path):
    """The first tick stores the firing set (empty) so a moment after a restart is not shown
    with the alerts of the run before; a moment of the run before still has them."""
    import socket

    from tests.helpers.serve_helpers import Sender

    (tmp_path / "none.toml").write_text("")
    rules = ({"name": "node-dead", "liveness": "dead", "severity": "crit"},)
    fast = LivenessConfig(suspect_after=0.5, dead_after=1.0)
    first = make_engine(tmp_path, alerts=rules, liveness=fast)
    await first.start()
    sender, sock = Sender("n9"), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(sender.join(), ("127.0.0.1", first.port))
        sock.sendto(sender.report(), ("127.0.0.1", first.port))
        await until(lambda: first.snapshot().nodes)
        await until(lambda: first.snapshot().alerts, timeout=10)  # silent: dead, alert fires
        await asyncio.sleep(0.3)
        during = time.time()
    finally:
        sock.close()
        await first.stop()
    second = make_engine(tmp_path, alerts=rules, liveness=fast)
    await second.start()
    try:
        await until(lambda: second.snapshot().tick >= 2)
        second.store.flush()
        after = time.time()
    finally:
        await second.stop()
    past = PastSource(str(tmp_path / "ctop.db"), during, cluster="test")
    try:
        assert [(a.rule, a.node_id) for a in past.snapshot().alerts] == [("node-dead", "n9")]
        past.go(after)
        assert past.snapshot().alerts == ()
        assert past.snapshot().node("n9").liveness is Liveness.DEAD
    finally:
        past.close()


def test_a_liveness_event_stored_late_reaches_the_next_past_step(tmp_path):
    """The daemon's writer may store an event stamped before the moment the past view last
    read (a step up to "now"): the next step still shows its state (the steps re-read only
    nodes with liveness events since the last moment, and missed these: found in review)."""
    from ctop.past import PastSource
    from ctop.snapshot import EventView, Liveness
    from ctop.store import Store
    from tests.helpers.past_history import write_incident

    db = tmp_path / "ctop.db"
    moment = write_incident(db)
    source = PastSource(str(db), moment, cluster="prod")
    try:
        before = source.snapshot()
        node = next(n for n in before.nodes if n.liveness is Liveness.ALIVE)
        store = Store(str(db), raw_every=0.0)
        store.record_events([EventView(moment - 1, "state", node.node_id,
                                       f"{node.node_id} alive → dead (silent for 3.0 s)")])
        store.close()
        later = source.move(1)
        assert later.node(node.node_id).liveness is Liveness.DEAD
    finally:
        source.close()
