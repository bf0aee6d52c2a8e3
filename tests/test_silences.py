"""Silences, maintenance windows and operator drains, with the real engine, real agentd
processes, a real hook command and the real HAProxy (ctop.silences, ctop.maintenance,
ctop.mute)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ctop.alert_history import firing_at
from ctop.lb.journal import Actor
from ctop.lb.request import ActionRequest
from ctop.maintenance import MaintenanceConfig, parse_window
from ctop.silences import SilenceError
from tests.helpers.engine_helpers import make_engine, processes, start_agent, until


@pytest.fixture
def agents():
    with processes() as procs:
        yield procs


def hook_log(tmp_path: Path) -> tuple[Path, dict]:
    log = tmp_path / "hook.log"
    log.write_text("")
    cmd = f'echo "$CTOP_ALERT_STATE $CTOP_ALERT_RULE $CTOP_ALERT_NODE" >> {log}'
    return log, {"command": cmd}


RULES = ({"name": "node-dead", "liveness": "dead", "severity": "crit"},)


def alert(engine, rule: str, node: str):
    return next((a for a in engine.snapshot().alerts
                 if a.rule == rule and a.node_id == node), None)


async def test_a_silenced_node_dies_shown_silenced_pages_nobody_until_the_silence_expires(
        agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    log, hook = hook_log(tmp_path)
    eng = make_engine(tmp_path, alerts=RULES, hooks=(hook,))
    await eng.start()
    try:
        for node in ("web-1", "web-2"):
            agents.append(start_agent(tmp_path, eng.port, node))
        await until(lambda: len(eng.snapshot().nodes) == 2)
        with pytest.raises(SilenceError, match="reason"):
            eng.silence_add(node="web-1", duration="1h", reason=" ", author="alice")
        silence = eng.silence_add(node="web-1", duration="6s", reason="kernel upgrade",
                                  author="alice")
        for p in agents:
            p.kill()
        await until(lambda: alert(eng, "node-dead", "web-1") and alert(eng, "node-dead", "web-2"))
        await until(lambda: "firing node-dead web-2" in log.read_text())
        dead1 = alert(eng, "node-dead", "web-1")
        assert dead1.muted == "silenced" and dead1.muted_by == "alice"
        assert dead1.muted_until == silence.expires and dead1.muted_note == "kernel upgrade"
        assert not alert(eng, "node-dead", "web-2").muted
        # the silenced one is listed after the one that pages
        assert [a.node_id for a in eng.snapshot().alerts] == ["web-2", "web-1"]
        await asyncio.sleep(0.5)  # hooks run as tasks: give a wrong one time to run
        assert "web-1" not in log.read_text()
        # the history keeps the mark: ctop --at shows the alert silenced too
        eng.store.flush(timeout=5)
        with contextlib.closing(sqlite3.connect(tmp_path / "ctop.db")) as db:
            then = {a.node_id: a for a in firing_at(db, time.time())}
        assert then["web-1"].muted == "silenced" and then["web-1"].muted_by == "alice"
        assert not then["web-2"].muted
        # the silence expires while web-1 is still dead: now it pages
        await until(lambda: "firing node-dead web-1" in log.read_text(),
                    timeout=silence.expires - time.time() + 5)
        assert not alert(eng, "node-dead", "web-1").muted
        assert eng.silences() == [] and eng.silences(everything=True)[0].id == silence.id
        messages = [e.message for e in eng.snapshot().events]
        assert any("alice silenced node=web-1" in m for m in messages)
        assert f"silence #{silence.id} (node=web-1, by alice) expired" in messages
    finally:
        await eng.stop()


async def test_an_operator_drain_holds_the_nodes_alerts_reminds_and_restore_ends_it(
        agents, tmp_path, haproxy):
    (tmp_path / "none.toml").write_text("")
    log, hook = hook_log(tmp_path)
    eng = make_engine(tmp_path, alerts=RULES, hooks=(hook,),
                      lb={"haproxy": {"socket": haproxy.admin_socket}},
                      maintenance=MaintenanceConfig(remind_after=1.5))
    await eng.start()
    try:
        # the agent's datagrams come from 127.0.0.1, the address of the lab's real servers
        agents.append(start_agent(tmp_path, eng.port, "web-1"))

        def mapped():
            return any(rs.node_id == "web-1" for v in eng.snapshot().lb for rs in v.servers)

        await until(mapped)
        alice = Actor("alice", None, 1000, 1)
        result = await eng.lb_action(ActionRequest("drain", "haproxy", "web3", "s2"), alice)
        assert result.ok, result.message
        drained_at = time.time()
        agents[0].kill()  # the planned reboot
        await until(lambda: alert(eng, "node-dead", "web-1"))
        dead = alert(eng, "node-dead", "web-1")
        assert dead.muted == "held" and dead.muted_by == "alice"
        assert dead.muted_note.startswith("in maintenance by alice since")
        # drained longer than remind_after: a reminder that does page
        await until(lambda: alert(eng, "maintenance-reminder", "web-1"), timeout=10)
        reminder = alert(eng, "maintenance-reminder", "web-1")
        assert not reminder.muted and "by alice" in reminder.message
        assert "haproxy web3/s2" in reminder.message
        assert time.time() - drained_at >= 1.5
        await until(lambda: "firing maintenance-reminder web-1" in log.read_text())
        assert "node-dead" not in log.read_text()
        # restore ends the maintenance: the dead node (still dead) pages now
        result = await eng.lb_action(ActionRequest("restore", "haproxy", "web3", "s2"), alice)
        assert result.ok, result.message
        await until(lambda: "firing node-dead web-1" in log.read_text())
        await until(lambda: "resolved maintenance-reminder web-1" in log.read_text())
        assert not alert(eng, "node-dead", "web-1").muted
        assert alert(eng, "maintenance-reminder", "web-1") is None
    finally:
        await eng.stop()


def _hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


async def test_a_maintenance_window_holds_the_alerts_inside_it_and_not_outside(agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    log, hook = hook_log(tmp_path)
    now = datetime.now()
    inside = parse_window({"every": f"daily {_hhmm(now - timedelta(minutes=1))}-"
                                    f"{_hhmm(now + timedelta(minutes=3))}",
                           "group": "g1", "reason": "backup"})
    later = parse_window({"every": f"daily {_hhmm(now + timedelta(hours=2))}-"
                                   f"{_hhmm(now + timedelta(hours=3))}", "group": "g2"})
    eng = make_engine(tmp_path, alerts=RULES, hooks=(hook,),
                      maintenance=MaintenanceConfig(window=(inside, later)))
    await eng.start()
    try:
        agents.append(start_agent(tmp_path, eng.port, "in-window"))  # group g1
        agents.append(start_agent(tmp_path, eng.port, "outside", "--group", "g2"))
        await until(lambda: len(eng.snapshot().nodes) == 2)
        for p in agents:
            p.kill()
        await until(lambda: alert(eng, "node-dead", "in-window")
                    and alert(eng, "node-dead", "outside"))
        held = alert(eng, "node-dead", "in-window")
        assert held.muted == "silenced" and held.muted_by == "window"
        assert "backup" in held.muted_note and held.muted_until > time.time()
        assert not alert(eng, "node-dead", "outside").muted
        await until(lambda: "firing node-dead outside" in log.read_text())
        await asyncio.sleep(0.5)
        assert "in-window" not in log.read_text()
    finally:
        await eng.stop()


def test_a_daily_window_that_crosses_midnight_holds_until_its_end_the_next_morning():
    w = parse_window({"every": "daily 23:30-00:45"})
    day = datetime(2026, 12, 7)
    at = lambda h, m: (day + timedelta(hours=h, minutes=m)).timestamp()  # noqa: E731
    assert w.until(at(23, 29)) is None
    assert w.until(at(23, 45)) == at(24, 45)
    assert w.until(at(24, 30)) == at(24, 45)  # the next day, before its end
    assert w.until(at(24, 45)) is None
    thursdays = parse_window({"every": "thu 02:00-03:00"})  # 2026-12-10 is a Thursday
    assert thursdays.until(at(24 * 3 + 2, 30)) == at(24 * 3 + 3, 0)
    assert thursdays.until(at(2, 30)) is None  # a Monday


def test_bad_windows_name_the_file_line_and_key(tmp_path):
    from ctop.config import ConfigError, load

    cfg = tmp_path / "ctop.toml"
    for body, line, words in (
        ('[[maintenance.window]]\nevery = "nightly 02:30-03:15"\n', 3, "every"),
        ('[[maintenance.window]]\nevery = "daily 02:30-03:15"\n\n[[maintenance.window]]\n'
         'from = "2026-12-24 00:00"\nto = "christmas"\n', 7, "to"),
        ('[[maintenance.window]]\ngroup = "web"\n', 2, "needs 'every'"),
        ('[maintenance]\nremind_after = "soon"\n', 3, "remind_after"),
    ):
        cfg.write_text(f'key_file = "/k"\n{body}')
        with pytest.raises(ConfigError) as e:
            load(str(cfg))
        assert f"ctop.toml:{line}:" in str(e.value) and words in str(e.value), str(e.value)


async def test_silences_are_kept_in_the_history_database_with_who_added_and_removed_them(
        tmp_path):
    engine = make_engine(tmp_path)
    await engine.start()
    s = engine.silence_add(group="web", rule="cpu-high", duration="2h", reason="load test",
                           author="alice")
    gone = engine.silence_rm(s.id, author="bob")
    assert (gone.author, gone.removed_by) == ("alice", "bob")
    with pytest.raises(SilenceError, match="already removed by bob"):
        engine.silence_rm(s.id, author="carol")
    await engine.stop()
    again = make_engine(tmp_path)  # a restarted daemon reads the same table
    await again.start()
    try:
        [kept] = again.silences(everything=True)
        assert (kept.group, kept.rule, kept.reason, kept.removed_by) == (
            "web", "cpu-high", "load test", "bob")
        assert again.silences() == []
    finally:
        await again.stop()
