"""A director and N nodes in network namespaces, with loss and cuts on each node's link.

    director ns  ── veth ──  node ns 0 (agentd)       10.232.0.1 <-> 10.232.0.2
                 ── veth ──  node ns 1 (agentd)       10.232.1.1 <-> 10.232.1.2 ...

Loss and cuts are nft netdev *ingress* rules on the director's end of each veth: datagrams
really leave the node and are lost on the link. (A drop in the sender's OUTPUT chain makes
sendto fail with EPERM instead, which is not what a lossy link does.)

Used by tests/test_liveness_beacons.py and bench/liveness.py. Needs root, ip and nft.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

AGENTD = Path(sys.executable).with_name("agentd")
CTOP = Path(sys.executable).with_name("ctop")
PORT = 7117
KEY = b"0123456789abcdef0123456789abcdef"


def usable() -> str:
    """Why the lab cannot run here, or "" if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, nftables)"
    return ""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class Lab:
    def __init__(self, nodes: int, workdir: Path) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.count = nodes
        self.dir = workdir
        self.director_ns = f"ctl-d-{self.tag}"
        self.node_ns = [f"ctl-n{i}-{self.tag}" for i in range(nodes)]
        self.agents: dict[int, subprocess.Popen[bytes]] = {}
        self.serve: subprocess.Popen[bytes] | None = None
        self.socket = workdir / "ctop.sock"
        self.key = workdir / "cluster.key"

    # -- network ---------------------------------------------------------------------------

    @staticmethod
    def director_ip(i: int) -> str:
        return f"10.232.{i}.1"

    @staticmethod
    def node_ip(i: int) -> str:
        return f"10.232.{i}.2"

    def _dev(self, i: int) -> str:
        return f"ld{i}{self.tag}"

    def up(self) -> Lab:
        d = self.director_ns
        _run("ip", "netns", "add", d)
        _run("ip", "-n", d, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", d, "nft", "add", "table", "netdev", "lab")
        for i, ns in enumerate(self.node_ns):
            _run("ip", "netns", "add", ns)
            dev, peer = self._dev(i), f"ln{i}{self.tag}"
            _run("ip", "link", "add", dev, "netns", d, "type", "veth", "peer", "name", peer,
                 "netns", ns)
            for where, name, ip in ((d, dev, self.director_ip(i)), (ns, peer, self.node_ip(i))):
                _run("ip", "-n", where, "addr", "add", f"{ip}/24", "dev", name)
                _run("ip", "-n", where, "link", "set", name, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "netns", "exec", d, "nft", "add", "chain", "netdev", "lab", f"in{i}",
                 f'{{ type filter hook ingress device "{dev}" priority 0 ; }}')
        self.key.write_bytes(KEY)
        self.key.chmod(0o600)
        return self

    def loss(self, i: int, percent: float) -> None:
        """Drop `percent` % of the node's datagrams to the director at random (100 = cut)."""
        chain = ("ip", "netns", "exec", self.director_ns, "nft")
        _run(*chain, "flush", "chain", "netdev", "lab", f"in{i}")
        if percent >= 100:
            _run(*chain, "add", "rule", "netdev", "lab", f"in{i}", "udp", "dport", str(PORT),
                 "drop")
        elif percent > 0:
            _run(*chain, "add", "rule", "netdev", "lab", f"in{i}", "udp", "dport", str(PORT),
                 "numgen", "random", "mod", "1000", "<", str(round(percent * 10)), "drop")

    def down(self) -> None:
        for proc in [*self.agents.values(), self.serve]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in [self.director_ns, *self.node_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    # -- processes -------------------------------------------------------------------------

    def start_director(self, toml: str = "") -> None:
        """`ctop serve` with the default settings (plus `toml`) in the director namespace."""
        cfg = self.dir / "ctop.toml"
        cfg.write_text(f'cluster = "lab"\nlisten = "0.0.0.0:{PORT}"\nkey_file = "{self.key}"\n'
                       f'{toml}\n[store]\npath = "{self.dir / "ctop.db"}"\n')
        self.serve = subprocess.Popen(
            ["ip", "netns", "exec", self.director_ns, str(CTOP), "serve", "--config", str(cfg),
             "--socket", str(self.socket)], stderr=subprocess.DEVNULL)

    def start_agent(self, i: int, *args: str) -> subprocess.Popen[bytes]:
        """agentd with the default settings (plus `args`) in node namespace i: `ip netns exec`
        execs it, so the process is agentd itself (signals reach it)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.node_ns[i], str(AGENTD), "--config", "/dev/null",
             "--director", f"{self.director_ip(i)}:{PORT}", "--key-file", str(self.key),
             "--node-id", f"node-{i}", *args], stderr=subprocess.DEVNULL)
        self.agents[i] = proc
        return proc

    def signal(self, i: int, sig: int) -> None:
        self.agents[i].send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.agents[i].wait(timeout=10)

    # -- the director's view ---------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        from ctop.control.client import ControlError, fetch_status

        try:
            return fetch_status(str(self.socket))
        except ControlError:
            return None

    def states(self) -> dict[str, str]:
        s = self.status()
        return {n["node_id"]: n["liveness"] for n in s["nodes"]} if s else {}

    def wait_for(self, node: str, state: str, timeout: float, poll: float = 0.02) -> float:
        """Seconds until `node` shows `state` in the daemon's snapshot (inf if never)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.states().get(node) == state:
                return time.monotonic() - start
            time.sleep(poll)
        return float("inf")


def transitions(events: list[list[Any]]) -> list[tuple[float, str, str]]:
    """(ts, node, new state) of the liveness changes among a snapshot's events."""
    out = []
    for ts, kind, node, message in events:
        if kind == "state" and "→" in message:
            out.append((ts, node, message.split("→", 1)[1].split()[0]))
    return out
