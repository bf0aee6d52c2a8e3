"""The engine with a real HAProxy: the LB view, actions through the engine, recorded events."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest_asyncio

from ctop.engine import Engine
from ctop.lb.request import ActionRequest
from tests.helpers.engine_helpers import make_engine, until
from tests.helpers.lb_owner_helpers import server_stat


@pytest_asyncio.fixture(loop_scope="function")
async def lb_engine(tmp_path, haproxy):
    eng: Engine = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()
    yield eng
    await eng.stop()


def server(engine: Engine, service: str, key: str):
    for svc in engine.snapshot().lb:
        if svc.key == service:
            return next(s for s in svc.servers if s.key == key)
    return None


async def test_the_lb_view_shows_haproxy_backends_with_weights_and_states(lb_engine, haproxy):
    await until(lambda: lb_engine.snapshot().lb)
    snap = lb_engine.snapshot()
    web1 = next(s for s in snap.lb if s.key == "web1")
    assert web1.balancer == "haproxy"
    assert [s.key for s in web1.servers] == ["s1", "s2", "s3"]
    assert all(s.weight == 1 and s.state == "serving" for s in web1.servers)
    assert all(abs(s.weight_share - 1 / 3) < 1e-9 for s in web1.servers)
    assert "haproxy" in snap.lb_note


async def test_drain_through_the_engine_reaches_haproxy_and_is_recorded(lb_engine, haproxy,
                                                                          tmp_path):
    await until(lambda: lb_engine.snapshot().lb)
    result = await lb_engine.lb_action(ActionRequest("drain", "haproxy", "web4", "s2"))
    assert result.ok, result.message
    assert result.before == 1 and result.after == 0
    # the view is refreshed at once, and traffic really avoids the drained server
    assert server(lb_engine, "web4", "s2").state == "drained"
    hits = await asyncio.to_thread(haproxy.hits, "web4", 60)
    assert hits["s2"] == 0 and hits["s1"] + hits["s3"] == 60
    lb_engine.tick(__import__("time").time())
    actions = [e for e in lb_engine.snapshot().events if e.kind == "action"]
    assert actions and "drain haproxy web4 s2: 1 → 0 ok" in actions[-1].message

    result = await lb_engine.lb_action(ActionRequest("restore", "haproxy", "web4", "s2"))
    assert result.ok and result.after == 1
    assert server(lb_engine, "web4", "s2").state == "serving"
    lb_engine.store.flush()
    db = sqlite3.connect(tmp_path / "ctop.db")
    rows = db.execute("SELECT action, server, result FROM lb_actions ORDER BY id").fetchall()
    assert rows[-2:] == [("drain", "s2", "ok"), ("restore", "s2", "ok")]


async def test_a_failed_action_is_reported_with_haproxys_words_and_changes_nothing(lb_engine,
                                                                                     haproxy):
    await until(lambda: lb_engine.snapshot().lb)
    result = await lb_engine.lb_action(ActionRequest("weight", "haproxy", "web5", "nope", 3))
    assert not result.ok
    assert "nope" in result.message or "No such server" in result.message
    assert all(s.weight == 1 for s in next(v for v in lb_engine.snapshot().lb
                                           if v.key == "web5").servers)


async def test_readonly_engine_refuses_actions(tmp_path, haproxy):
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}}, readonly=True)
    await eng.start()
    try:
        result = await eng.lb_action(ActionRequest("drain", "haproxy", "web6", "s1"))
        assert not result.ok and "read" in result.message.lower()
        assert server_stat(haproxy, "web6", "s1") == (1, "UP")  # neither drained nor re-weighted
    finally:
        await eng.stop()


async def test_lb_alerts_fire_when_serving_servers_run_short_and_resolve(tmp_path, haproxy):
    rules = (
        {"name": "web5-capacity", "lb_service": "web5", "serving_below": 3},
        {"name": "no-server", "lb_service": "*", "serving_below": 1, "severity": "crit"},
    )
    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}},
                      lb_every=0.2, alerts=rules)
    await eng.start()
    try:
        await until(lambda: server(eng, "web5", "s1") is not None)
        assert not eng.snapshot().alerts
        haproxy.cmd("set server web5/s1 state drain")  # behind ctop's back: still noticed
        await until(lambda: eng.snapshot().alerts)
        [alert] = eng.snapshot().alerts
        assert alert.rule == "web5-capacity" and alert.node_id == ""
        assert alert.message == "haproxy web5: 2 of 3 real servers serving (< 3)"
        for s in ("s2", "s3"):
            haproxy.cmd(f"set server web5/{s} state maint")
        await until(lambda: {a.rule for a in eng.snapshot().alerts} == {
            "web5-capacity", "no-server"})
        crit = next(a for a in eng.snapshot().alerts if a.rule == "no-server")
        assert crit.severity == "crit" and "0 of 3" in crit.message
        for s in ("s1", "s2", "s3"):
            haproxy.cmd(f"set server web5/{s} state ready")
        await until(lambda: not eng.snapshot().alerts)
        resolved = [e.message for e in eng.snapshot().events if e.kind == "resolved"]
        assert sum("resolved: haproxy web5: " in m for m in resolved) == 2
    finally:
        await eng.stop()
