"""A watch list pushed from the director takes effect on the agent without a restart (issue 13):
real agentd processes, a real `ctop serve`, real watched processes (copies of /bin/sleep under
a name of their own, as in tests/test_watch_processes.py), real UDP both ways."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentd.watch import merged_watches, parse_watches
from tests.helpers.agent_helpers import start_agent, stop_agent, write_key
from tests.helpers.serve_helpers import Daemon, node

MASTER = b"pushwatch-master-secret-0123456789ab"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Every `ctop serve` a test starts, stopped however the test ends."""
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


def _binary(tmp: Path, name: str) -> Path:
    path = tmp / name
    shutil.copy("/bin/sleep", path)
    return path


def _daemon(tmp: Path, watch: list[str]) -> Daemon:
    master = write_key(tmp / "push.master", key=MASTER)
    listed = ", ".join(f'"{w}"' for w in watch)
    return Daemon(tmp, f'push_master_key_file = "{master}"\n'
                       f'[groups.web]\nwatch = [{listed}]\n'
                       '[[alert]]\nname = "gone"\nprocess_missing = "*"\nseverity = "crit"\n'
                       ).start()


def _agent(tmp: Path, d: Daemon, node_id: str, push_key_text: bytes,
           *extra: str) -> subprocess.Popen[str]:
    key = write_key(tmp / f"{node_id}.key")
    pkey = write_key(tmp / f"{node_id}.pushkey", key=push_key_text)
    return start_agent("--director", f"127.0.0.1:{d.port}", "--key-file", str(key),
                       "--node-id", node_id, "--group", "web", "--interval", "0.2",
                       "--join-interval", "0.5", "--beacon-interval", "0",
                       "--push-key-file", str(pkey),
                       "--push-state-file", str(tmp / f"{node_id}.push"), *extra)


def _watched(status: dict[str, Any], node_id: str) -> dict[str, list[Any]]:
    n = node(status, node_id)
    rows = (n or {}).get("metrics", {}).get("watched") or []
    return {w[0]: list(w) for w in rows}


def _gone(status: dict[str, Any]) -> list[str]:
    return [a["message"] for a in status["alerts"] if a["rule"] == "gone"]


def test_a_pushed_watch_list_is_applied_live_and_again_after_a_restart(tmp_path, procs,
                                                                       daemons):
    tag = uuid.uuid4().hex[:6]
    here, absent = f"pwhere{tag}", f"pwgone{tag}"
    procs.append(subprocess.Popen([str(_binary(tmp_path, here)), "600"]))
    d = _daemon(tmp_path, [here, absent])
    daemons.append(d)
    issued = d.ctop("keys", "issue", "pw1", "--push")
    assert issued.returncode == 0, issued.stderr
    agent = _agent(tmp_path, d, "pw1", issued.stdout.strip().encode())
    procs.append(agent)
    try:
        # The agent started with no watch of its own: the pushed list is watched, live.
        st = d.wait_for(lambda s: here in _watched(s, "pw1"), timeout=20,
                        what="the pushed watch in the node's reports")
        _label, count, low, high, restarts, *_ = _watched(st, "pw1")[here]
        assert (count, low, high, restarts) == (1, 1, None, 0)
        st = d.wait_for(lambda s: _gone(s), timeout=20, what="process_missing for the push")
        assert _gone(st) == [f"{absent} on pw1: no process (expected at least 1)"]
        assert node(st, "pw1")["restarts"] == 0 and agent.poll() is None
        assert st["configs"]["nodes"]["pw1"]["current"]
    finally:
        _, err = stop_agent(agent)
    assert "watch list now" in err
    # Restarted, the agent watches the saved push's list from its first report: before any
    # new push could arrive (the director pushes only to a node whose join is behind).
    sent = d.status()["configs"]["sent"]
    agent = _agent(tmp_path, d, "pw1", issued.stdout.strip().encode())
    procs.append(agent)
    try:
        st = d.wait_for(lambda s: node(s, "pw1")["restarts"] >= 1
                        and here in _watched(s, "pw1"), timeout=20,
                        what="the saved push's watch after the agent's restart")
        assert _watched(st, "pw1")[here][1] == 1
        assert st["configs"]["sent"] == sent  # restored from the file, not pushed again
        # The group's watch shrinks (ctop serve restarted on the new ctop.toml): the running
        # agent stops watching the absent process and its alert resolves.
        boot = node(st, "pw1")["boot"]
        d.stop()
        d.config.write_text(d.config.read_text().replace(f', "{absent}"', ""))
        d = d.again()
        daemons.append(d)
        st = d.wait_for(lambda s: node(s, "pw1") is not None
                        and set(_watched(s, "pw1")) == {here}, timeout=20,
                        what="the retracted watch gone from the reports")
        assert not _gone(st) and agent.poll() is None
        assert node(st, "pw1")["boot"] == boot  # the same agent run: applied live
    finally:
        _, err = stop_agent(agent)
        d.stop()
    assert "restored pushed configuration" in err
    assert f"watch list now: {here}\n" in err


def test_the_nodes_own_watch_wins_and_sighup_applies_it(tmp_path, procs, daemons):
    """A local entry labelled like a pushed one wins (its count); SIGHUP changes the local list
    live, and a watch that stays keeps its restart count."""
    tag = uuid.uuid4().hex[:6]
    name, extra = f"pwown{tag}", f"pwnew{tag}"
    binary = _binary(tmp_path, name)
    first = subprocess.Popen([str(binary), "600"])
    procs.append(first)
    d = _daemon(tmp_path, [name])
    daemons.append(d)
    issued = d.ctop("keys", "issue", "pw2", "--push")
    cfg = tmp_path / "agentd.toml"
    cfg.write_text(f'watch = ["{name}:1-3"]\n')
    agent = _agent(tmp_path, d, "pw2", issued.stdout.strip().encode(), "--config", str(cfg))
    procs.append(agent)
    try:
        st = d.wait_for(lambda s: s["configs"]["nodes"].get("pw2", {}).get("current")
                        and name in _watched(s, "pw2"), timeout=20, what="pushed, watched")
        assert _watched(st, "pw2")[name][2:4] == [1, 3]  # the node's own range, not the push's
        first.kill()
        first.wait()
        procs.append(subprocess.Popen([str(binary), "600"]))
        d.wait_for(lambda s: _watched(s, "pw2").get(name, [0] * 5)[4] == 1, timeout=20,
                   what="a restart counted")
        cfg.write_text(f'watch = ["{name}:1-3", "{extra}"]\n')
        agent.send_signal(signal.SIGHUP)
        st = d.wait_for(lambda s: extra in _watched(s, "pw2"), timeout=20,
                        what="the SIGHUP's new watch")
        assert _watched(st, "pw2")[name][4] == 1  # kept across the change
        assert node(st, "pw2")["restarts"] == 0
    finally:
        stop_agent(agent)
        d.stop()


def test_merged_watches_local_first_and_capped():
    local = parse_watches(["nginx:2", "java:*tomcat*"])
    pushed = parse_watches(["nginx", "sshd"] + [f"w{i}" for i in range(14)])
    got = merged_watches(local, pushed)
    assert [s.label for s in got][:3] == ["nginx", "java:*tomcat*", "sshd"]
    assert got[0].low == 2 and len(got) == 16


def test_a_bad_pushed_watch_is_refused_whole(tmp_path):
    from agentd.push import Push, digest, encode_push, push_key
    from agentd.pushed import PushedConfig

    key = push_key(MASTER, "n1")
    cfg = PushedConfig(key, "n1", "web", str(tmp_path / "state"), allow_commands=False)
    bad = Push("n1", "web", 1, digest([], ["w:8-2"]), time.time(), (), ("w:8-2",))
    assert not cfg.accept(encode_push(key, bad))
    assert cfg.refused["bad_watch"] == 1 and cfg.version == (0, "")
    assert not os.path.exists(tmp_path / "state")
    good = Push("n1", "web", 2, digest([], ["w:2"]), time.time(), (), ("w:2",))
    assert cfg.accept(encode_push(key, good))
    assert [(s.label, s.low) for s in cfg.watch] == [("w", 2)]


def test_a_bad_watch_in_a_group_is_a_config_error_naming_it(tmp_path):
    """Checked as the agents check it: else every node of the group would refuse the push."""
    from ctop.config import ConfigError, load

    path = tmp_path / "ctop.toml"
    path.write_text('[groups.web]\nwatch = ["nginx", "worker:8-2"]\n')
    with pytest.raises(ConfigError, match=r"web.*watch.*entry 2.*bad count range"):
        load(str(path))
    path.write_text('[groups.web]\nwatch = ["nginx", "nginx:2"]\n')
    with pytest.raises(ConfigError, match="'nginx' is watched twice"):
        load(str(path))
