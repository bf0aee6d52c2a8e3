"""Drift on a real HAProxy: the balancer loses ctop's changes when it restarts without a state
file. The engine sees it within a round (event, alert, a mark on the server), the operator
re-applies the journal's intent or accepts the live state, and a stale record never blocks
restore or automation (defect 7)."""

from __future__ import annotations

import asyncio
import time

import pytest_asyncio

from ctop.engine import Engine
from ctop.lb.actions import LBController
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Journal
from ctop.lb.request import ActionRequest
from tests.helpers.engine_helpers import make_engine, until


@pytest_asyncio.fixture(loop_scope="function")
async def lb_engine(tmp_path, haproxy):
    eng: Engine = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}},
                              lb_every=0.2)
    await eng.start()
    await until(lambda: eng.snapshot().lb)
    yield eng
    await eng.stop()


def server(engine: Engine, service: str, key: str):
    svc = next(s for s in engine.snapshot().lb if s.key == service)
    return next(s for s in svc.servers if s.key == key)


def live(haproxy, backend: str, name: str) -> tuple[str, int]:
    """(admin state, weight) straight from HAProxy's `show servers state`."""
    for line in haproxy.cmd(f"show servers state {backend}").splitlines():
        f = line.split()
        if len(f) > 7 and f[1] == backend and f[3] == name:
            return ("drain" if int(f[6]) & 0x08 else "ready"), int(f[7])
    raise AssertionError(f"{backend}/{name} not in show servers state")


async def test_drift_after_a_restart_is_seen_in_one_round_and_re_applied(lb_engine, haproxy):
    eng = lb_engine
    assert (await eng.lb_action(ActionRequest("weight", "haproxy", "web5", "s1", 3))).ok
    assert (await eng.lb_action(ActionRequest("drain", "haproxy", "web5", "s2"))).ok
    assert not server(eng, "web5", "s1").drift and not server(eng, "web5", "s2").drift

    await asyncio.to_thread(haproxy.restart)  # no state file: weight 1, s2 serving again
    rounds = eng.lb_service.monitor.rounds
    await until(lambda: {("haproxy", "web5", "s1"), ("haproxy", "web5", "s2")}
                <= eng.lb_service.monitor.drift.current.keys(), step=0.01)
    assert eng.lb_service.monitor.rounds - rounds <= 2  # the round in flight, at most the next one
    await until(lambda: server(eng, "web5", "s1").drift and server(eng, "web5", "s2").drift)
    assert "journal: drained by operator" in server(eng, "web5", "s2").drift
    assert "journal: weight 3 by operator; live: serving weight 1" in server(
        eng, "web5", "s1").drift
    eng.tick(time.time())
    snap = eng.snapshot()
    assert any(e.kind == "drift" and "web5 s2" in e.message for e in snap.events)
    assert any(a.rule == "lb-drift" and "s2" in a.message for a in snap.alerts)

    # re-apply: through the journaled action path, back to what the journal says
    for key in ("s1", "s2"):
        result = await eng.lb_action(ActionRequest("reapply", "haproxy", "web5", key))
        assert result.ok, result.message
    assert live(haproxy, "web5", "s1") == ("ready", 3)
    assert live(haproxy, "web5", "s2")[0] == "drain"
    hits = await asyncio.to_thread(haproxy.hits, "web5", 40)
    assert hits["s2"] == 0 and hits["s1"] == 30  # 3:1 between s1 and s3
    assert not server(eng, "web5", "s1").drift and not server(eng, "web5", "s2").drift
    # the weight restore goes back to is still the one from before the first drain
    assert (await eng.lb_action(ActionRequest("restore", "haproxy", "web5", "s2"))).after == 1
    eng.tick(time.time())
    assert not [a for a in eng.snapshot().alerts if a.rule == "lb-drift"]


async def test_accepting_the_live_state_clears_the_intent_and_is_journaled(lb_engine, haproxy,
                                                                          tmp_path):
    eng = lb_engine
    assert (await eng.lb_action(ActionRequest("drain", "haproxy", "web6", "s3"))).ok
    await asyncio.to_thread(haproxy.restart)
    await until(lambda: server(eng, "web6", "s3").drift)
    result = await eng.lb_action(ActionRequest("accept", "haproxy", "web6", "s3"))
    assert result.ok and "accepted" in result.message, result.message
    assert not server(eng, "web6", "s3").drift
    assert live(haproxy, "web6", "s3") == ("ready", 1)  # nothing changed on the balancer
    journal = Journal(tmp_path / "ctop.db")
    assert journal.intent("haproxy", "web6", "s3").drained_by is None
    assert journal.actions(server="s3", limit=1)[0].action == "accept"
    journal.close()
    again = await eng.lb_action(ActionRequest("accept", "haproxy", "web6", "s3"))
    assert not again.ok and "no drift" in again.message


async def test_a_hand_edit_through_the_runtime_api_is_drift_too(lb_engine, haproxy):
    eng = lb_engine
    assert (await eng.lb_action(ActionRequest("weight", "haproxy", "web7", "s2", 4))).ok
    haproxy.cmd("set server web7/s2 weight 9")  # someone with socat
    await until(lambda: "live: serving weight 9" in server(eng, "web7", "s2").drift)


def test_restore_after_an_outside_reset_clears_the_stale_record(haproxy, tmp_path):
    # defect 7: restore said "not drained" and kept the drained record for ever
    journal = Journal(tmp_path / "ctop.db")
    ctl = LBController({"haproxy": HAProxyBalancer(haproxy.admin_socket)}, journal)
    assert ctl.drain("haproxy", "web8", "s1", origin="cli").ok
    haproxy.restart()
    result = ctl.restore("haproxy", "web8", "s1", origin="cli")
    assert result.ok and "not drained" in result.message and "stale" in result.message
    assert not journal.intent("haproxy", "web8", "s1").drained
    journal.close()


async def test_a_service_no_probe_checks_has_no_automation_and_says_so(tmp_path, haproxy):
    from .test_engine import start_agent

    (tmp_path / "none.toml").write_text("")
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket},
                                    "automation": {"web3": {}, "web4": {},
                                                   "checks": {"web4": ["ssh"]}}},
                      lb_every=0.2)
    await eng.start()
    # a real agent owning 127.0.0.1 whose only probe (ssh, failing) is on another port
    agent = start_agent(tmp_path, eng.port, "lone", "--address", "127.0.0.1",
                        "--probe", "ssh://127.0.0.1:1?name=ssh&interval=0.2&timeout=0.3")
    try:
        await until(lambda: eng.snapshot().lb)
        await until(lambda: server(eng, "web3", "s1").node_id == "lone", timeout=10)
        await until(lambda: server(eng, "web3", "s1").health, timeout=10)
        port = server(eng, "web3", "s1").port
        assert server(eng, "web3", "s1").health == f"no check on port {port}: no automation"
        # web4 maps the failing ssh probe explicitly: it is judged, and quiesced
        await until(lambda: server(eng, "web4", "s1").state == "quiesced", timeout=10)
        await asyncio.sleep(1.0)  # several failed ssh results: web3 is left alone
        assert {s.state for s in next(v for v in eng.snapshot().lb if v.key == "web3")
                .servers} == {"serving"}
    finally:
        agent.kill()
        agent.wait()
        await eng.stop()
