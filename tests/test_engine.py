"""The director's engine against real agentd processes on real UDP sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import psutil
import pytest
import pytest_asyncio

from agentd.encoder import encode
from agentd.protocol import Header, Join, Leave
from ctop.config import LivenessConfig
from ctop.snapshot import Liveness
from tests.helpers.agent_helpers import KEY
from tests.helpers.engine_helpers import make_engine, processes, start_agent, until


@pytest_asyncio.fixture(loop_scope="function")
async def engine(tmp_path):
    (tmp_path / "none.toml").write_text("")
    eng = make_engine(tmp_path)
    await eng.start()
    yield eng
    await eng.stop()


@pytest.fixture
def agents(tmp_path):
    with processes() as procs:
        yield procs


async def test_agents_register_with_their_facts_and_history_reaches_sqlite(engine, agents,
                                                                           tmp_path):
    for i in range(3):
        agents.append(start_agent(tmp_path, engine.port, f"node-{i}", "--address",
                                  f"127.0.1.{i + 1}"))

    def all_reporting():
        snap = engine.snapshot()
        return len(snap.nodes) == 3 and all(n.metrics and n.cores for n in snap.nodes)

    await until(all_reporting)
    snap = engine.snapshot()
    assert [n.node_id for n in snap.nodes] == ["node-0", "node-1", "node-2"]
    for n in snap.nodes:
        assert n.liveness is Liveness.ALIVE
        assert n.cores == psutil.cpu_count()
        assert n.mem_total == psutil.virtual_memory().total
        assert 0 <= n.cpu <= 100
    assert [n.addresses for n in snap.nodes] == [("127.0.1.1",), ("127.0.1.2",), ("127.0.1.3",)]
    assert snap.totals.alive == 3 and snap.groups[0].name == "g1"
    assert {e.kind for e in snap.events} >= {"join"}
    await asyncio.sleep(1.0)
    engine.store.flush()
    db = sqlite3.connect(tmp_path / "ctop.db")
    counts = dict(db.execute(
        "SELECT n.node_id, count(*) FROM samples s JOIN nodes n ON n.id = s.node GROUP BY 1"))
    assert set(counts) == {"node-0", "node-1", "node-2"}
    assert all(c >= 3 for c in counts.values()), counts
    hist = engine.history("node-1", ["cpu_percent", "mem_percent"], 60)
    assert len(hist["mem_percent"]) >= 3
    assert all(0 < v <= 100 for _, v in hist["mem_percent"])
    assert db.execute("SELECT count(*) FROM events WHERE kind = 'join'").fetchone()[0] == 3


async def test_liveness_follows_kill_leave_and_restart(engine, agents, tmp_path):
    agents.append(start_agent(tmp_path, engine.port, "victim"))
    agents.append(start_agent(tmp_path, engine.port, "leaver"))
    await until(lambda: len(engine.snapshot().nodes) == 2
                and all(n.metrics for n in engine.snapshot().nodes))
    boot_before = engine.snapshot().node("victim").boot

    agents[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await until(lambda: engine.snapshot().node("victim").liveness is Liveness.SUSPECT)
    to_suspect = time.monotonic() - killed
    await until(lambda: engine.snapshot().node("victim").liveness is Liveness.DEAD)
    to_dead = time.monotonic() - killed
    # suspect after 2.5 missed intervals (0.5 s), dead after 5 (1.0 s); ticks are 0.1 s
    assert 0.3 <= to_suspect <= 1.0, to_suspect
    assert 0.8 <= to_dead <= 1.6, to_dead
    assert engine.snapshot().node("leaver").liveness is Liveness.ALIVE

    agents[1].send_signal(signal.SIGTERM)
    assert agents[1].wait(timeout=5) == 0
    await until(lambda: engine.snapshot().node("leaver").liveness is Liveness.LEFT)

    agents.append(start_agent(tmp_path, engine.port, "victim"))
    await until(lambda: engine.snapshot().node("victim").liveness is Liveness.ALIVE)
    victim = engine.snapshot().node("victim")
    assert victim.boot != boot_before and victim.restarts == 1
    assert len(engine.snapshot().nodes) == 2  # the same node, not a new one
    kinds = [(e.kind, e.node_id) for e in engine.snapshot().events]
    assert ("restart", "victim") in kinds and ("leave", "leaver") in kinds
    # a left node stays left while silent; it is not declared dead
    await asyncio.sleep(1.5)
    assert engine.snapshot().node("leaver").liveness is Liveness.LEFT


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_alerts_fire_and_resolve_through_a_real_hook_command_and_webhook(agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    # the service the agent probes: a real listening socket we open and close
    svc = socket.socket()
    svc.bind(("127.0.0.1", 0))
    svc_port = svc.getsockname()[1]
    svc.listen(50)
    web = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    threading.Thread(target=web.serve_forever, daemon=True).start()
    log_file = tmp_path / "hook.log"
    hook_cmd = f'echo "$CTOP_ALERT_STATE $CTOP_ALERT_RULE $CTOP_ALERT_NODE" >> {log_file}'
    eng = make_engine(
        tmp_path,
        alerts=({"name": "svc-down", "service": "web", "severity": "crit"},),
        hooks=({"command": hook_cmd},
               {"webhook": f"http://127.0.0.1:{web.server_port}/alert"}),
    )
    await eng.start()
    try:
        agents.append(start_agent(
            tmp_path, eng.port, "web-1",
            "--probe", f"tcp://127.0.0.1:{svc_port}?name=web&interval=0.2&timeout=0.5"))
        await until(lambda: eng.snapshot().node("web-1")
                    and eng.snapshot().node("web-1").services
                    and eng.snapshot().node("web-1").services[0].status == "ok")
        assert eng.snapshot().alerts == ()
        svc.close()  # the service goes down
        await until(lambda: eng.snapshot().alerts, timeout=5)
        alert = eng.snapshot().alerts[0]
        assert alert.rule == "svc-down" and alert.node_id == "web-1"
        assert "web" in alert.message and str(alert.severity) == "crit"
        await until(lambda: log_file.exists() and "firing svc-down web-1" in log_file.read_text())
        await until(lambda: any(r["state"] == "firing" for r in _Webhook.received))
        # a firing alert is notified once, not every tick
        await asyncio.sleep(0.6)
        assert log_file.read_text().count("firing") == 1

        svc = socket.socket()  # the service comes back on the same port
        svc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        svc.bind(("127.0.0.1", svc_port))
        svc.listen(50)
        await until(lambda: not eng.snapshot().alerts, timeout=5)
        await until(lambda: "resolved svc-down web-1" in log_file.read_text())
        await until(lambda: any(r["state"] == "resolved" for r in _Webhook.received))
        hook = next(r for r in _Webhook.received if r["state"] == "firing")
        assert hook["cluster"] == "test" and hook["node"] == "web-1"
        kinds = [e.kind for e in eng.snapshot().events]
        assert "alert" in kinds and "resolved" in kinds
    finally:
        svc.close()
        web.shutdown()
        await eng.stop()


async def test_no_service_alerts_for_a_dead_node(agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    eng = make_engine(tmp_path, alerts=(
        {"name": "dead", "liveness": "dead", "severity": "crit"},
        {"name": "svc", "service": "*"},
    ))
    await eng.start()
    try:
        agents.append(start_agent(
            tmp_path, eng.port, "n1",
            "--probe", "tcp://127.0.0.1:1?name=closed&interval=0.2&timeout=0.3"))
        await until(lambda: [a.rule for a in eng.snapshot().alerts] == ["svc"])
        agents[0].kill()
        await until(lambda: [a.rule for a in eng.snapshot().alerts] == ["dead"])
    finally:
        await eng.stop()


async def test_hostile_datagrams_are_counted_by_reason_and_never_stop_ingest(engine, agents,
                                                                             tmp_path):
    agents.append(start_agent(tmp_path, engine.port, "good"))
    await until(lambda: engine.snapshot().node("good"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", engine.port)
    valid = encode(KEY, Leave(Header("x", 1, 1, time.time())))
    sock.sendto(b"GET / HTTP/1.0\r\n\r\n", target)
    sock.sendto(os.urandom(1500), target)
    sock.sendto(valid[:-1] + bytes([valid[-1] ^ 1]), target)
    sock.sendto(encode(b"not-the-cluster-key-000000000000",
                            Leave(Header("x", 1, 1, time.time()))), target)
    sock.sendto(encode(KEY, Leave(Header("old", 1, 1, time.time() - 3600))),
                target)
    sock.sendto(b"", target)
    for _ in range(200):
        sock.sendto(os.urandom(64), target)
    await until(lambda: sum(engine.snapshot().drops.values()) >= 205)
    drops = engine.snapshot().drops
    assert drops["oversize"] == 1 and drops["bad_tag"] == 2 and drops["stale"] == 1
    assert drops["malformed"] >= 202
    assert engine.receiver.drops_by_source["127.0.0.1"] >= 205
    seen = engine.snapshot().node("good").last_seen
    await until(lambda: engine.snapshot().node("good").last_seen > seen)
    assert engine.snapshot().node("good").liveness is Liveness.ALIVE


def test_engine_code_never_imports_textual():
    """The engine must run headless: only ctop/tui/ may import Textual."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for pkg in ("ctop", "agentd", "probes"):
        for path in (root / pkg).rglob("*.py"):
            if "tui" in path.relative_to(root).parts:
                continue
            for line in path.read_text().splitlines():
                if line.strip().startswith(("import textual", "from textual")):
                    offenders.append(str(path.relative_to(root)))
    assert offenders == []
    code = ("import sys, ctop.engine, ctop.cli, ctop.control.server, ctop.control.client, "
            "ctop.lb.cli, ctop.lb.service, agentd.daemon;"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_prometheus_exposition_over_http(agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    eng = make_engine(tmp_path, prometheus=("127.0.0.1", port))
    await eng.start()
    try:
        agents.append(start_agent(tmp_path, eng.port, "prom-1"))
        await until(lambda: eng.snapshot().node("prom-1") and eng.snapshot().node("prom-1").metrics)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{port}/nope")
        assert r.status_code == 200 and missing.status_code == 404
        assert 'ctop_nodes{cluster="test",state="alive"} 1' in r.text
        assert 'ctop_node_cpu_percent{node="prom-1",group="g1"}' in r.text
    finally:
        await eng.stop()


async def test_a_node_that_left_is_dropped_after_the_grace_period(agents, tmp_path):
    (tmp_path / "none.toml").write_text("")
    eng = make_engine(tmp_path, liveness=LivenessConfig(forget_left_after=1.0))
    await eng.start()
    try:
        agents.append(start_agent(tmp_path, eng.port, "short-lived"))
        agents.append(start_agent(tmp_path, eng.port, "stays"))
        await until(lambda: len(eng.snapshot().nodes) == 2
                    and all(n.metrics for n in eng.snapshot().nodes))
        agents[0].send_signal(signal.SIGTERM)
        await until(lambda: eng.snapshot().node("short-lived").liveness is Liveness.LEFT)
        left_at = time.monotonic()
        await until(lambda: eng.snapshot().node("short-lived") is None, timeout=5)
        assert time.monotonic() - left_at >= 0.8
        assert [n.node_id for n in eng.snapshot().nodes] == ["stays"]
        assert ("forget", "short-lived") in [(e.kind, e.node_id) for e in eng.snapshot().events]
        eng.store.flush()  # its history is kept
        assert eng.history("short-lived", ["cpu_percent"], 60)["cpu_percent"]
    finally:
        await eng.stop()


def test_a_node_row_follows_its_join_facts_over_real_datagrams(tmp_path):
    # Agents re-announce their join every 10 s; the store's node row changes with the facts.
    async def run() -> list[tuple[str, str]]:
        eng = make_engine(tmp_path)
        await eng.start()
        rows = []
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for seq, group in enumerate(("rack-a", "rack-a", "rack-b"), 1):
                    join = Join(Header("n1", 7, seq, time.time()), "host-1",
                                     ("10.0.0.9",), 4, 8 << 30, "0.1.0", 1.0, group)
                    tx.sendto(encode(eng.key, join), ("127.0.0.1", eng.port))
                    await until(lambda s=seq: eng.model.received >= s)
                    eng.tick(time.time())
                    eng.store.flush()
                    db = sqlite3.connect(tmp_path / "ctop.db")
                    rows.append(db.execute("SELECT hostname, grp FROM nodes").fetchone())
                    db.close()
        finally:
            await eng.stop()
        return rows

    assert asyncio.run(run()) == [("host-1", "rack-a"), ("host-1", "rack-a"),
                                  ("host-1", "rack-b")]
