"""The whole director pair of issue 14: the VRRP lab (tests/helpers/vrrp_lab.py) plus what a
failover must carry over.

    host: bridge address NET.1, nats-server on NET.1 (JetStream), the real servers s1..s3
          (HTTP on NET.1), agentd n1, n2 reporting to both directors
    ns vr1: keepalived prio 150, HAProxy (frontend NET.11:8000, admin socket d1/haproxy.sock),
            ctop serve with [pair], [lb.haproxy] and [nats] name = "dir-1", peers = ["dir-2"]
    ns vr2: the same with NET.12, "dir-2"

HAProxy runs inside each director's namespace (its frontend on the director's address, as a
balancer would); its admin socket is a UNIX socket, so ctop and the test reach it by path.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.helpers.agent_helpers import start_agent, stop_agent
from tests.helpers.haproxy_peer import NamedHTTPServer, free_port
from tests.helpers.nats_servers import NatsServer
from tests.helpers.vrrp_lab import VrrpLab, _run

FRONTEND_PORT = 8000  # inside each director's namespace: no other lane binds there
SERVERS = ("s1", "s2", "s3")
NODES = ("n1", "n2")


def director_name(i: int) -> str:
    return f"dir-{i}"


class FailoverLab(VrrpLab):
    def __init__(self, workdir: Path, *, peer_over_http: bool = True) -> None:
        super().__init__(workdir)
        self.peer_over_http = peer_over_http  # False: the peer's role comes over NATS only
        self.nats: NatsServer | None = None
        self.http: dict[str, NamedHTTPServer] = {}
        self.haproxy: dict[int, subprocess.Popen[bytes]] = {}
        self.agents: list[subprocess.Popen[str]] = []

    @property
    def host_ip(self) -> str:
        return f"{self.net}.1"

    def up(self) -> FailoverLab:
        super().up()
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        self.nats = NatsServer("pairlab", self.dir / "nats", host=self.host_ip)
        self.nats.start().wait_ready()
        for name in SERVERS:
            self.http[name] = NamedHTTPServer(name, free_port(), host=self.host_ip)
            self.http[name].start()
        return self

    def down(self) -> None:
        for agent in self.agents:
            stop_agent(agent)
        super().down()  # ctop serves and keepalived first: they use HAProxy and NATS
        for proc in self.haproxy.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        for srv in self.http.values():
            srv.stop()
        if self.nats is not None:
            self.nats.stop()

    # -- HAProxy per director ----------------------------------------------------------------

    def admin_socket(self, i: int) -> Path:
        return self.path(i, "haproxy.sock")

    def start_haproxy(self, i: int) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        conf = self.path(i, "haproxy.cfg")
        conf.write_text("\n".join([
            "global",
            f"  stats socket {self.admin_socket(i)} mode 600 level admin",
            "defaults",
            "  mode http", "  retries 0",
            "  timeout connect 2s", "  timeout client 10s", "  timeout server 10s",
            "frontend fe_web1", f"  bind {self.ip(i)}:{FRONTEND_PORT}", "  default_backend web1",
            "backend web1", "  balance roundrobin",
            *(f"  server {s} {self.host_ip}:{srv.port} weight 1" for s, srv in self.http.items()),
        ]) + "\n")
        log = open(self.path(i, "haproxy.log"), "wb")  # noqa: SIM115 - kept by the process
        self.haproxy[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[i], binary, "-f", str(conf), "-db"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while True:
            try:
                if sum(self.hits(i, 3).values()) == 3:
                    return
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline or self.haproxy[i].poll() is not None:
                raise RuntimeError(f"HAProxy of director {i} did not start: "
                                   + self.path(i, "haproxy.log").read_text()[-2000:])
            time.sleep(0.1)

    def hits(self, i: int, n: int = 6) -> Counter[str]:
        """n real requests through director i's HAProxy; answers counted by server name."""
        counts: Counter[str] = Counter()
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            for _ in range(n):
                r = client.get(f"http://{self.ip(i)}:{FRONTEND_PORT}/")
                counts[r.text if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
        return counts

    def drained(self, i: int, server: str) -> bool:
        return self.hits(i)[server] == 0

    # -- ctop serve with the LB and NATS ----------------------------------------------------

    def pair_toml(self, i: int) -> str:
        text = super().pair_toml(i)
        if self.peer_over_http:
            return text
        return "".join(line + "\n" for line in text.splitlines()
                       if not line.startswith(("peer =", "peer_every =")))

    def top_toml(self, i: int) -> str:
        return "lb_every = 0.5\n"

    def extra_toml(self, i: int) -> str:
        assert self.nats is not None
        return (f'[lb.haproxy]\nsocket = "{self.admin_socket(i)}"\n'
                f'[nats]\nservers = ["{self.nats.url}"]\nname = "{director_name(i)}"\n'
                f'peers = ["{director_name(3 - i)}"]\nreconnect_wait = "0.2s"\n')

    def ctop(self, i: int, *args: str) -> subprocess.CompletedProcess[str]:
        """A ctop command on director i (its control socket is a path: the host reaches it)."""
        from tests.helpers.vrrp_lab import CTOP

        return subprocess.run([str(CTOP), *args, "--config", str(self.path(i, "ctop.toml"))],
                              capture_output=True, text=True, timeout=30)

    # -- agents ------------------------------------------------------------------------------

    def start_agents(self) -> None:
        """agentd on the host, each reporting to both directors."""
        for node in NODES:
            self.agents.append(start_agent(
                "--config", "/dev/null", "--key-file", str(self.key), "--node-id", node,
                "--interval", "1", "--director", f"{self.ip(1)}:7117",
                "--director", f"{self.ip(2)}:7117"))
