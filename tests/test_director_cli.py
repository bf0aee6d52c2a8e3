"""The director's config file and command line: `ctop serve`, `ctop status`, bad configs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctop.config import ConfigError, TomlSource, from_source
from ctop.tui.remote import RemoteSource
from tests.helpers.agent_helpers import AGENTD, write_key

ROOT = Path(__file__).resolve().parents[1]
CTOP = Path(sys.executable).with_name("ctop")
# an empty config: never the machine's /etc/ctop/ctop.toml, whatever it sets
OWN_CONFIG = ("--config", "/dev/null")


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ctop.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        from_source(TomlSource.load(path))
    return str(e.value)


def test_the_example_config_is_valid():
    cfg = from_source(TomlSource.load(ROOT / "contrib" / "ctop.toml.example"))
    assert cfg.cluster == "web" and cfg.listen == ("0.0.0.0", 7117)
    assert cfg.liveness.dead_after == 5 and cfg.store.raw_retention == 86400
    assert [r.name for r in cfg.alerts] == ["cpu-high", "http-down", "node-dead", "web-capacity",
                                            "nginx-missing", "restarts", "lvs-arp"]
    assert [r.kind for r in cfg.alerts] == ["metric", "service", "liveness", "lb",
                                            "process_missing", "process_restarted", "arp"]
    assert cfg.prometheus == ("127.0.0.1", 9717)


def test_bad_values_name_file_line_and_key(tmp_path):
    msg = config_error(
        tmp_path, 'cluster = "x"\n\n[liveness]\nsuspect_after = 2\ndead_after = "soon"\n')
    assert msg.startswith(f"{tmp_path / 'ctop.toml'}:5: key 'liveness.dead_after'")
    assert "soon" in msg
    msg = config_error(
        tmp_path, '[liveness]\nbeacon_suspect_after = 8\nbeacon_dead_after = 6\n')
    assert ":3: key 'liveness.beacon_dead_after': must be larger than beacon_suspect_after" in msg
    msg = config_error(tmp_path, 'cluster = "x"\nlisten = "nowhere"\n')
    assert ":2: key 'listen'" in msg
    msg = config_error(tmp_path, 'cluster = "x"\ncolour = "blue"\n')
    assert ":2: key 'colour': unknown key" in msg


def test_syntax_errors_name_the_line(tmp_path):
    msg = config_error(tmp_path, 'cluster = "x"\n[store\npath = 1\n')
    assert msg.startswith(f"{tmp_path / 'ctop.toml'}:2:")


def test_bad_alert_rules_and_hooks_name_their_line(tmp_path):
    msg = config_error(tmp_path, '[[alert]]\nname = "a"\nwhen = "cpu_percent > 9"\n\n'
                                 '[[alert]]\nname = "b"\nwhen = "cpu is high"\n')
    assert ":7: [[alert]] #2" in msg and "METRIC > NUMBER" in msg
    msg = config_error(tmp_path, '[[alert]]\nname = "lb"\nlb_service = "web"\n'
                                 'serving_below = 0\n')
    assert ":4: [[alert]] #1" in msg and "serving_below" in msg and ">= 1" in msg
    msg = config_error(tmp_path, '[[hook]]\ncommand = "true"\nwebhook = "http://x"\n')
    assert ":1: [[hook]] #1" in msg and "exactly one" in msg


def test_bad_lb_section_is_a_config_error(tmp_path):
    msg = config_error(tmp_path, '[lb.haproxy]\nsocket = "/run/h.sock"\ntimeout = "long"\n')
    assert "timeout" in msg and msg.startswith(str(tmp_path / "ctop.toml"))


def test_ctop_exits_2_with_the_message_for_a_bad_config(tmp_path):
    path = tmp_path / "ctop.toml"
    path.write_text("[liveness]\ndead_after = -1\n")
    out = subprocess.run([str(CTOP), "serve", "--config", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2
    assert f"{path}:2: key 'liveness.dead_after'" in out.stderr


def test_serve_runs_headless_and_status_reads_it(tmp_path, haproxy):
    key = write_key(tmp_path / "cluster.key")
    sock = tmp_path / "ctop.sock"
    db = tmp_path / "ctop.db"
    (tmp_path / "agent.toml").write_text("")
    port = _free_udp_port()
    common = ["--config", str(tmp_path / "none.toml"), "--socket", str(sock)]
    (tmp_path / "none.toml").write_text(f'cluster = "headless"\nlisten = "127.0.0.1:{port}"\n'
                                        f'key_file = "{key}"\n[store]\npath = "{db}"\n'
                                        f'[lb.haproxy]\nsocket = "{haproxy.admin_socket}"\n')
    serve = subprocess.Popen([str(CTOP), "serve", *common], stderr=subprocess.PIPE, text=True)
    agent = subprocess.Popen(
        [str(AGENTD), "--config", str(tmp_path / "agent.toml"), "--director",
         f"127.0.0.1:{port}", "--key-file", str(key), "--node-id", "n1", "--interval", "0.2"],
        stderr=subprocess.DEVNULL)
    try:
        status = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run([str(CTOP), "status", "--json", *common], capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0:
                status = json.loads(out.stdout)
                if status["nodes"] and status["nodes"][0]["metrics"]:
                    break
            time.sleep(0.2)
        assert status is not None, out.stderr
        assert status["cluster"] == "headless"
        assert status["nodes"][0]["node_id"] == "n1"
        assert status["nodes"][0]["liveness"] == "alive"
        assert status["totals"]["alive"] == 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the balancer is read every 2 s
            text = subprocess.run([str(CTOP), "status", *common], capture_output=True,
                                  text=True, timeout=10).stdout
            if "lb haproxy web1" in text and "1 down" in text:
                break
            time.sleep(0.2)
        assert "cluster headless: 1 nodes — 1 alive" in text
        assert "  n1 " in text  # a small cluster lists every node
        # the balancer's services, each with its real servers by state
        assert "lb haproxy web1: 3 real servers (3 serving), imbalance" in text, text
        assert "lb haproxy chk: 2 real servers (1 down, 1 serving)" in text, text
        # what the UI uses when it attaches to the daemon: snapshots and history
        remote = RemoteSource(str(sock), str(db), poll=0.2)
        snap = remote.snapshot()
        assert snap.node("n1") is not None and snap.node("n1").liveness == "alive"
        assert not snap.node("n1").metrics  # raw metrics come only for the node on screen
        remote.watch("n1")
        deadline = time.monotonic() + 10
        while not remote.snapshot().node("n1").metrics and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote.snapshot().node("n1").metrics["mem_total"] > 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            points = remote.history("n1", ["mem_percent"], 600)["mem_percent"]
            if len(points) >= 2:
                break
            time.sleep(0.3)
        assert len(points) >= 2 and all(0 < v <= 100 for _, v in points)
        assert [e.kind for e in remote.node_events("n1")][:1] == ["join"]
        remote.close()
    finally:
        agent.terminate()
        agent.wait(timeout=5)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0
    assert not sock.exists()  # the daemon removes its socket on a clean stop
    assert db.exists()


def test_status_without_a_daemon_says_so(tmp_path):
    out = subprocess.run([str(CTOP), "status", *OWN_CONFIG,
                          "--socket", str(tmp_path / "none.sock")],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 3
    assert "no ctop daemon" in out.stderr and "ctop serve" in out.stderr


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ctop_lb_uses_the_directors_config_and_database(tmp_path, haproxy):
    """`ctop lb` and the UI must share balancers and the remembered weights."""
    db = tmp_path / "ctop.db"
    cfg = tmp_path / "ctop.toml"
    cfg.write_text(f'[store]\npath = "{db}"\n[lb.haproxy]\nsocket = "{haproxy.admin_socket}"\n')
    haproxy.cmd("set server web7/s3 weight 5")

    def lb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CTOP), "lb", *args, "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)

    listed = lb("list")
    assert listed.returncode == 0 and "web7" in listed.stdout
    assert lb("drain", "web7", "s3").returncode == 0
    assert haproxy.hits("web7", 30)["s3"] == 0
    restored = lb("restore", "web7", "s3")
    assert restored.returncode == 0, restored.stderr
    assert haproxy.cmd("get weight web7/s3").split()[0] == "5"  # the exact weight from before
    rows = sqlite3.connect(db).execute("SELECT action, result FROM lb_actions").fetchall()
    assert rows == [("drain", "ok"), ("restore", "ok")]
    missing = lb("drain", "web7", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_ctop_probe_runs_checks_by_hand(tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok = subprocess.run([str(CTOP), "probe", f"tcp://127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "OK" in ok.stdout and "connected" in ok.stdout
    closed = subprocess.run([str(CTOP), "probe", f"tcp://127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=30)
    assert closed.returncode == 2 and "FAIL" in closed.stdout


def test_status_text_lists_only_nodes_that_need_a_look_in_a_large_cluster():
    from ctop.cli import status_text
    from ctop.codec import to_plain
    from tests.helpers.sample import sample_snapshot

    big = to_plain(sample_snapshot(600))
    text = status_text(big)
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("  ")][:-1]
    troubled = [n["node_id"] for n in big["nodes"] if n["liveness"] != "alive"]
    assert listed == troubled and troubled
    alive = sum(n["liveness"] == "alive" for n in big["nodes"])
    assert f"({alive} alive nodes not listed: ctop status --json)" in text
    assert "lb haproxy web: " in text and "lb ipvs TCP 10.0.0.1:8080: " in text
    small = to_plain(sample_snapshot(12))
    assert sum(line.startswith("  ") for line in status_text(small).splitlines()) == 12


def test_status_text_names_drift_and_servers_automation_cannot_judge():
    from dataclasses import replace

    from ctop.cli import status_text
    from ctop.codec import to_plain
    from tests.helpers.sample import sample_snapshot

    snap = sample_snapshot(12)
    web = next(s for s in snap.lb if s.key == "web")
    first, second, *rest = web.servers
    servers = (replace(first, drift="journal: drained by cli (weight 3 saved); live: serving "
                                    "weight 3"),
               replace(second, health="no check on port 8080: no automation"), *rest)
    snap = replace(snap, lb=tuple(replace(s, servers=servers) if s is web else s
                                  for s in snap.lb))
    text = status_text(to_plain(snap))
    assert f"lb haproxy web / {first.key}: DRIFT journal: drained by cli" in text
    assert (f"lb haproxy web / {second.key}: auto-quiesce: no check on port 8080: "
            "no automation") in text
