"""Reloads of the table's owner on a real HAProxy (master-worker, reloaded with SIGUSR2):
without a state file a reload undoes a drain and ctop shows the drift within one LB round;
with `[lb] reassert = true` ctop drains it again within one round (journaled); with
`state_file` (or HAProxy's config naming its server-state-file) the reload keeps the drain
and the weight, and there is no drift at all."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ctop.cli import status_text
from ctop.codec import to_plain
from ctop.engine import Engine
from ctop.lb.config import ConfigError, parse_config
from ctop.lb.factory import build_controller
from ctop.lb.journal import Journal
from ctop.lb.owners.haproxy_state import StateConfigError, targets_from_config
from ctop.lb.request import ActionRequest
from tests.helpers.engine_helpers import make_engine, until

if TYPE_CHECKING:
    from tests.helpers.haproxy_reload_lab import ReloadLab

pytest_plugins = ["tests.helpers.haproxy_reload_lab"]


def _engine(tmp_path, lab: ReloadLab, reassert: bool, **haproxy) -> Engine:
    lb = {"reassert": reassert, "haproxy": {"socket": lab.admin_socket, **haproxy}}
    return make_engine(tmp_path, lb=lb, lb_every=0.2)


@pytest_asyncio.fixture(loop_scope="function")
async def engine_for(tmp_path, reloadable):
    started: list[Engine] = []

    async def start(reassert: bool = False, **haproxy) -> Engine:
        eng = _engine(tmp_path, reloadable, reassert, **haproxy)
        await eng.start()
        started.append(eng)
        await until(lambda: eng.snapshot().lb)
        return eng

    yield start
    for eng in started:
        await eng.stop()


def drift_of(eng: Engine, service: str, server: str) -> str:
    svc = next(s for s in eng.snapshot().lb if s.key == service)
    return next(s for s in svc.servers if s.key == server).drift


async def test_reload_without_state_file_is_drift_within_one_round(engine_for, reloadable):
    eng = await engine_for()
    assert (await eng.lb_action(ActionRequest("drain", "haproxy", "app1", "s2"))).ok
    await asyncio.to_thread(reloadable.reload)
    assert reloadable.live("app1", "s2") == ("ready", 1)  # HAProxy forgot the drain
    rounds = eng.lb_service.monitor.rounds
    await until(lambda: ("haproxy", "app1", "s2") in eng.lb_service.monitor.drift.current,
                step=0.01)
    assert eng.lb_service.monitor.rounds - rounds <= 2  # the round in flight, at most the next
    await until(lambda: "journal: drained by operator" in drift_of(eng, "app1", "s2"))
    assert reloadable.live("app1", "s2") == ("ready", 1)  # reassert is off: nothing changed


async def test_reassert_drains_again_within_one_round_and_journals_it(engine_for, reloadable,
                                                                      tmp_path):
    eng = await engine_for(reassert=True)
    assert (await eng.lb_action(ActionRequest("drain", "haproxy", "app2", "s1"))).ok
    assert (await eng.lb_action(ActionRequest("weight", "haproxy", "app2", "s3", 4))).ok
    await asyncio.to_thread(reloadable.reload)
    rounds = eng.lb_service.monitor.rounds
    await until(lambda: reloadable.live("app2", "s1")[0] == "drain"
                and reloadable.live("app2", "s3") == ("ready", 4), step=0.01)
    assert eng.lb_service.monitor.rounds - rounds <= 2
    journal = Journal(tmp_path / "ctop.db")
    # the rows are written just after the balancer shows the change
    await until(lambda: len(journal.actions(service="app2")) == 4)
    rows = {a.server: a for a in journal.actions(service="app2", limit=2)}
    assert rows["s1"].action == "drain" and rows["s1"].result == "ok (reassert after drift)"
    assert rows["s1"].origin == "operator"  # the operator's intent, put back
    assert rows["s3"].result == "ok (reassert after drift)" and rows["s3"].weight_after == 4
    # the intents stay the operator's: automation may not undo them, restore is exact
    assert journal.intent("haproxy", "app2", "s1").drained_by == "operator"
    assert journal.intent("haproxy", "app2", "s3").weight_by == "operator"
    journal.close()
    await until(lambda: any("reassert after drift" in e.message for e in eng.snapshot().events))
    assert not drift_of(eng, "app2", "s1")
    assert (await eng.lb_action(ActionRequest("restore", "haproxy", "app2", "s1"))).after == 1


async def test_state_file_keeps_drain_and_weight_over_a_reload(engine_for, reloadable):
    eng = await engine_for(state_file=str(reloadable.state_file))
    assert (await eng.lb_action(ActionRequest("drain", "haproxy", "app3", "s1"))).ok
    assert (await eng.lb_action(ActionRequest("weight", "haproxy", "app3", "s2", 5))).ok
    await asyncio.to_thread(reloadable.reload)
    assert reloadable.live("app3", "s1")[0] == "drain"
    assert reloadable.live("app3", "s2") == ("ready", 5)
    rounds = eng.lb_service.monitor.rounds
    await until(lambda: eng.lb_service.monitor.rounds >= rounds + 2)
    assert not eng.lb_service.monitor.drift.current
    # `ctop status` (and the LB pane's note) say where the state is kept
    eng.tick(time.time())
    text = status_text(to_plain(eng.snapshot()))
    assert f"lb owners: haproxy keeps state in {reloadable.state_file}" in text
    # restore is saved too: a second reload keeps the server back in rotation
    assert (await eng.lb_action(ActionRequest("restore", "haproxy", "app3", "s1"))).ok
    await asyncio.to_thread(reloadable.reload)
    assert reloadable.live("app3", "s1") == ("ready", 1)


def test_state_file_read_from_haproxy_config(reloadable, tmp_path):
    cfg = parse_config({"lb": {"haproxy": {"socket": reloadable.admin_socket,
                                           "config": str(reloadable.config)}}})
    ctl = build_controller(cfg, tmp_path / "ctop.db")
    assert ctl.drain("haproxy", "app4", "s3", origin="cli").ok
    reloadable.reload()
    assert reloadable.live("app4", "s3")[0] == "drain"
    ctl.journal.close()


def test_a_state_file_ctop_cannot_write_is_said_in_the_result(reloadable, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = parse_config({"lb": {"haproxy": {"socket": reloadable.admin_socket,
                                           "state_file": str(blocker / "state")}}})
    ctl = build_controller(cfg, tmp_path / "ctop.db")
    result = ctl.drain("haproxy", "app4", "s1", origin="cli")
    assert result.ok  # the drain itself is done and journaled
    assert "NOT saved to the state file, a reload would undo it" in result.message
    assert str(blocker / "state") in result.message
    ctl.journal.close()


def test_a_haproxy_config_that_never_loads_state_is_refused(tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n  server-state-file /tmp/x\ndefaults\n  mode http\n"
                   "backend web\n  server s1 127.0.0.1:1\n")
    with pytest.raises(StateConfigError, match="load-server-state-from-file global"):
        targets_from_config(cfg)
    lb = parse_config({"lb": {"haproxy": {"socket": "/nonexistent", "config": str(cfg)}}})
    with pytest.raises(ConfigError, match="never loads a server-state file"):
        build_controller(lb, tmp_path / "ctop.db")


def test_local_state_files_per_backend(tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n  server-state-base /var/lib/haproxy/state\n"
                   "defaults\n  load-server-state-from-file local\n"
                   "backend web\n  server-state-file web.state\n  server s1 127.0.0.1:1\n"
                   "listen api  # a comment\n  bind :81\n")
    targets = {t.backend: str(t.path) for t in targets_from_config(cfg)}
    assert targets == {"web": "/var/lib/haproxy/state/web.state",
                       "api": "/var/lib/haproxy/state/api"}


@pytest.mark.parametrize("lb, at", [
    ({"reassert": "yes"}, "[lb].reassert"),
    ({"haproxy": {"socket": "/x", "state_file": 1}}, "[lb.haproxy].state_file"),
    ({"ipvs": {"keepalived_dir": False}}, "[lb.ipvs].keepalived_dir"),
])
def test_wrong_types_of_the_new_settings_are_named(lb, at):
    with pytest.raises(ConfigError, match=at.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"lb": lb})


def test_state_file_and_config_together_are_refused(tmp_path):
    lb = parse_config({"lb": {"haproxy": {"socket": "/x", "state_file": "/a", "config": "/b"}}})
    with pytest.raises(ConfigError, match="state_file or config, not both"):
        build_controller(lb, tmp_path / "ctop.db")


async def test_the_lb_pane_says_where_the_state_is_kept(engine_for, reloadable):
    from ctop.tui.app import CtopApp
    from ctop.tui.widgets.lb_pane import LBPane

    eng = await engine_for(state_file=str(reloadable.state_file))
    await until(lambda: "owners: " in eng.snapshot().lb_note)
    app = CtopApp(eng, view="table")
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        pane = app.screen.query_one(LBPane)
        await until(lambda: pane.snap is not None and pane.snap.lb)
        rows = len(pane.snap.lb) + sum(len(s.servers) for s in pane.snap.lb) + 1  # + the note
        lines = ["".join(seg.text for seg in pane.body_strip(y, 160)) for y in range(rows)]
        assert any(f"owners: haproxy keeps state in {reloadable.state_file}" in line
                   for line in lines), lines
