"""Two directors as network namespaces on a bridge, each with a real keepalived running VRRP
(unicast adverts, one instance holding a virtual IP) and a real `ctop serve` with `[pair]`.

    host bridge vb<tag> ── veth ── ns vr1-<tag>: eth0 NET.11, keepalived prio 150, ctop serve
                        ── veth ── ns vr2-<tag>: eth0 NET.12, keepalived prio 100, ctop serve
    VIP NET.100/24 on whichever is MASTER

Each keepalived has its own pid files, $TMPDIR (so each JSON dump has its own file, as on two
hosts) and notify FIFO; each ctop serve asks its peer's ctop over GET /pair on NET.1x:9100.
`split()` drops VRRP (IP protocol 112) in both namespaces with nft: both become MASTER.
After ../shared/vrrp-lab, which was made to work on this machine. Needs root, ip, nft,
keepalived.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

CTOP = Path(sys.executable).with_name("ctop")
KEY = b"0123456789abcdef0123456789abcdef"
PEER_PORT = 9100  # each ctop's [prometheus] listen, inside its own namespace
INSTANCE = "VI_1"


def usable() -> str:
    """Why the lab cannot run here, or "" if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "keepalived"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, nftables, keepalived)"
    return ""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class VrrpLab:
    def __init__(self, workdir: Path, *, advert_int: float = 1.0) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.dir = workdir
        self.net = f"10.99.{random.randrange(1, 250)}"
        self.vrid = random.randrange(1, 255)
        self.advert_int = advert_int
        self.bridge = f"vb{self.tag}"
        self.ns = {1: f"vr1-{self.tag}", 2: f"vr2-{self.tag}"}
        self.keepalived: dict[int, subprocess.Popen[bytes]] = {}
        self.serves: dict[int, subprocess.Popen[bytes]] = {}
        self.key = workdir / "cluster.key"

    def ip(self, i: int) -> str:
        return f"{self.net}.1{i}"

    @property
    def vip(self) -> str:
        return f"{self.net}.100"

    def path(self, i: int, name: str) -> Path:
        return self.dir / f"d{i}" / name

    # -- network ---------------------------------------------------------------------------

    def up(self) -> VrrpLab:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "link", "set", self.bridge, "up")
        for i, ns in self.ns.items():
            (self.dir / f"d{i}").mkdir(parents=True, exist_ok=True)
            _run("ip", "netns", "add", ns)
            host_end = f"vv{i}{self.tag}"
            _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run("ip", "link", "set", host_end, "master", self.bridge, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "vrrplab")
            _run("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "vrrplab", "in",
                 "{ type filter hook input priority 0 ; }")
        self.key.write_bytes(KEY)
        self.key.chmod(0o600)
        return self

    def split(self, on: bool = True) -> None:
        """Drop (on) or pass (off) VRRP between the directors, in both namespaces."""
        for ns in self.ns.values():
            nft = ("ip", "netns", "exec", ns, "nft")
            _run(*nft, "flush", "chain", "inet", "vrrplab", "in")
            if on:
                _run(*nft, "add", "rule", "inet", "vrrplab", "in", "meta", "l4proto", "112",
                     "drop")

    def down(self) -> None:
        for proc in [*self.serves.values(), *self.keepalived.values()]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    # -- keepalived ------------------------------------------------------------------------

    def keepalived_conf(self, i: int) -> str:
        return f"""global_defs {{
  router_id ctop-lab-d{i}
  notify_fifo {self.path(i, "keepalived.fifo")}
}}
vrrp_instance {INSTANCE} {{
  state BACKUP
  interface eth0
  virtual_router_id {self.vrid}
  priority {200 - i * 50}
  advert_int {self.advert_int:g}
  unicast_src_ip {self.ip(i)}
  unicast_peer {{ {self.ip(3 - i)} }}
  virtual_ipaddress {{ {self.vip}/24 }}
}}
"""

    def start_keepalived(self, i: int) -> subprocess.Popen[bytes]:
        """keepalived in the foreground (-n) in director i's namespace, VRRP only (-P)."""
        conf = self.path(i, "keepalived.conf")
        conf.write_text(self.keepalived_conf(i))
        tmp = self.path(i, "tmp")
        tmp.mkdir(exist_ok=True)
        for stale in ("keepalived.pid", "vrrp.pid"):
            self.path(i, stale).unlink(missing_ok=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[i], "env", f"TMPDIR={tmp}", "keepalived", "-n",
             "-P", "-l", "-f", str(conf), "-p", str(self.path(i, "keepalived.pid")),
             "-r", str(self.path(i, "vrrp.pid")), "-c", str(self.path(i, "checkers.pid"))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.keepalived[i] = proc
        deadline = time.monotonic() + 10
        while not self.path(i, "keepalived.pid").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"keepalived of director {i} did not start")
            time.sleep(0.05)
        return proc

    def stop_keepalived(self, i: int, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """A clean stop (SIGTERM): keepalived sends priority 0 and the peer takes over at
        once, while this one takes about a second more to exit (wait=False: return at once,
        the caller waits)."""
        proc = self.keepalived.pop(i)
        proc.terminate()
        if wait:
            proc.wait(timeout=10)
        return proc

    def holds_vip(self, i: int) -> bool:
        out = subprocess.run(["ip", "-n", self.ns[i], "-4", "addr", "show", "eth0"],
                             capture_output=True, text=True, timeout=10).stdout
        return f"{self.vip}/" in out

    def master(self, timeout: float = 10.0) -> int:
        """The director holding the VIP (waits for exactly one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holders = [i for i in self.ns if self.holds_vip(i)]
            if len(holders) == 1:
                return holders[0]
            time.sleep(0.1)
        raise AssertionError("no single director holds the VIP")

    # -- ctop serve ------------------------------------------------------------------------

    def pair_toml(self, i: int) -> str:
        return f"""[pair]
keepalived_pid_file = "{self.path(i, "keepalived.pid")}"
json_file = "{self.path(i, "tmp") / "keepalived.json"}"
notify_fifo = "{self.path(i, "keepalived.fifo")}"
json_every = "2s"
peer = "{self.ip(3 - i)}:{PEER_PORT}"
peer_every = "0.5s"
"""

    def top_toml(self, i: int) -> str:
        """More top-level keys of director i's ctop.toml (a subclass's lb_every)."""
        return ""

    def extra_toml(self, i: int) -> str:
        """More of director i's ctop.toml (a subclass's [lb], [nats])."""
        return ""

    def start_serve(self, i: int) -> subprocess.Popen[bytes]:
        cfg = self.path(i, "ctop.toml")
        cfg.write_text(
            f'cluster = "lab"\nlisten = "0.0.0.0:7117"\nkey_file = "{self.key}"\n'
            f'control_socket = "{self.socket(i)}"\n' + self.top_toml(i) +
            f'[prometheus]\nlisten = "{self.ip(i)}:{PEER_PORT}"\n'
            f'[store]\npath = "{self.path(i, "ctop.db")}"\n' + self.pair_toml(i)
            + self.extra_toml(i))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[i], str(CTOP), "serve", "--config", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=open(self.path(i, "serve.log"), "wb"))  # noqa: SIM115
        self.serves[i] = proc
        deadline = time.monotonic() + 30
        while self.status(i) is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ctop serve of director {i} did not start: "
                                   + self.path(i, "serve.log").read_text()[-2000:])
            time.sleep(0.1)
        return proc

    def socket(self, i: int) -> Path:
        return self.path(i, "ctop.sock")

    def status(self, i: int) -> dict[str, Any] | None:
        from ctop.control.client import ControlError, fetch_status

        try:
            return fetch_status(str(self.socket(i)))
        except ControlError:
            return None

    def pair(self, i: int) -> dict[str, Any]:
        s = self.status(i)
        return (s or {}).get("pair") or {}

    def wait_pair(self, i: int, check: Any, timeout: float, poll: float = 0.05
                  ) -> dict[str, Any] | None:
        """Director i's status once check(status) holds (None if it never does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.status(i)
            if s and s.get("pair") and check(s):
                return s
            time.sleep(poll)
        return None
