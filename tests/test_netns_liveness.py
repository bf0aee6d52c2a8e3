"""Two hosts in network namespaces: an agent across a lossy link, then a cut link.

The director (`ctop serve`) runs in one namespace, agentd in another, joined by a veth pair.
Packet loss is made with nft on the director's side (input hook, `numgen random`), not in the
sender's OUTPUT chain, where a drop would surface as a sendto error instead of a lost datagram.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.agent_helpers import AGENTD, write_key

pytestmark = pytest.mark.root  # network namespaces and nft

CTOP = Path(sys.executable).with_name("ctop")
DIRECTOR_IP, NODE_IP = "10.231.7.1", "10.231.7.2"  # inside namespaces this test creates
INTERVAL = 0.1


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@pytest.fixture
def two_hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (iproute2, nftables)")
    tag = uuid.uuid4().hex[:6]
    director, node = f"ctop-d-{tag}", f"ctop-n-{tag}"
    run("ip", "netns", "add", director)
    run("ip", "netns", "add", node)
    try:
        run("ip", "link", "add", f"vd{tag}", "netns", director, "type", "veth",
            "peer", "name", f"vn{tag}", "netns", node)
        for ns, dev, ip in ((director, f"vd{tag}", DIRECTOR_IP), (node, f"vn{tag}", NODE_IP)):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "netns", "exec", director, "nft", "add", "table", "inet", "lab")
        run("ip", "netns", "exec", director, "nft", "add", "chain", "inet", "lab", "in",
            "{ type filter hook input priority 0 ; }")
        yield director, node
    finally:
        subprocess.run(["ip", "netns", "del", director], capture_output=True)
        subprocess.run(["ip", "netns", "del", node], capture_output=True)


def nft_rule(ns: str, rule: str) -> None:
    run("ip", "netns", "exec", ns, "nft", "flush", "chain", "inet", "lab", "in")
    if rule:
        run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "lab", "in", *rule.split())


def status(sock: Path) -> dict | None:
    """What `ctop status --json` prints, asked in this process: a new ctop process per poll
    took seconds on a loaded machine, longer than the suspect state lasts."""
    from ctop.control.client import ControlError, fetch_status

    try:
        return fetch_status(str(sock))
    except (ControlError, OSError):
        return None


def node_state(sock: Path) -> dict | None:
    s = status(sock)
    return s["nodes"][0] if s and s["nodes"] else None


def test_loss_does_not_kill_a_node_but_a_cut_link_does(two_hosts, tmp_path):
    director, node = two_hosts
    key = write_key(tmp_path / "cluster.key")
    sock = tmp_path / "ctop.sock"
    cfg = tmp_path / "ctop.toml"
    cfg.write_text(f'cluster = "lab"\nlisten = "{DIRECTOR_IP}:7117"\nkey_file = "{key}"\n'
                   f'tick = 0.1\n[liveness]\nsuspect_after = 4\ndead_after = 12\n'
                   f'[store]\npath = "{tmp_path / "ctop.db"}"\n')
    (tmp_path / "agentd.toml").write_text("")
    serve = subprocess.Popen(["ip", "netns", "exec", director, str(CTOP), "serve", "--config",
                              str(cfg), "--socket", str(sock)], stderr=subprocess.PIPE)
    agent = subprocess.Popen(
        ["ip", "netns", "exec", node, str(AGENTD), "--config", str(tmp_path / "agentd.toml"),
         "--director", f"{DIRECTOR_IP}:7117", "--key-file", str(key), "--node-id", "far-node",
         "--interval", str(INTERVAL), "--join-interval", "1"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (node_state(sock) or {}).get("addresses"):
            time.sleep(0.2)
        first = node_state(sock)
        assert first is not None and first["liveness"] == "alive", serve.stderr
        assert NODE_IP in first["addresses"]  # announced from the node's own interface

        # 25 % loss over a whole loss window: lost reports never make a node dead
        nft_rule(director, "udp dport 7117 numgen random mod 100 < 25 drop")
        seen_states = set()
        end = time.monotonic() + 130 * INTERVAL  # the loss window: 128 sequence numbers
        while time.monotonic() < end:
            seen_states.add(node_state(sock)["liveness"])
            time.sleep(0.1)
        assert "dead" not in seen_states, seen_states
        loss = node_state(sock)["loss"]  # measured by the director from sequence gaps
        assert 0.10 <= loss <= 0.42, loss

        # the link is cut: suspect after 4 missed intervals, dead after 12
        nft_rule(director, "udp dport 7117 drop")
        cut = time.monotonic()
        states = {}
        while time.monotonic() - cut < 5 and "dead" not in states:
            states.setdefault(node_state(sock)["liveness"], time.monotonic() - cut)
            time.sleep(0.05)
        assert "suspect" in states and "dead" in states, states
        assert states["suspect"] < states["dead"] <= 3.0, states

        nft_rule(director, "")  # the link heals
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and node_state(sock)["liveness"] != "alive":
            time.sleep(0.1)
        assert node_state(sock)["liveness"] == "alive"
        assert node_state(sock)["restarts"] == 0  # the same boot came back
    finally:
        agent.terminate()
        serve.terminate()
        agent.wait(timeout=10)
        serve.wait(timeout=10)
