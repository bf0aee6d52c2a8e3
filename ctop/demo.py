"""`ctop --demo`: a real small cluster on this machine, nothing simulated.

What runs: N real HTTP servers (one per demo node, each on its own loopback address
127.0.1.N, answering with a small real delay), N real agentd processes with distinct node
ids that probe those servers and report to a real engine over UDP, and — when the haproxy
binary is installed — a real HAProxy in front of the servers with a little generated traffic,
so drain and re-weight visibly move connections. Every figure on screen is measured.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ctop.config import DirectorConfig, StoreConfig
from ctop.lb.config import parse_config

GROUPS = ("rack-a", "rack-b")
WEB_PORT = 8080


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _SlowHandler(BaseHTTPRequestHandler):
    """A web page that takes a little while, so connections overlap and shares show."""

    def do_GET(self) -> None:
        time.sleep(random.uniform(0.05, 0.4))
        body = f"served by {self.server.server_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up early is normal here; never print over the UI


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when ctop dies, however it dies (SSH dropped,
    SIGKILL), so a demo never leaves agents or HAProxy behind."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class DemoCluster:
    """Start with `start()`, stop with `stop()`; `config` is the engine's configuration."""

    nodes: int = 6
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ctop-demo-")))
    traffic_per_s: float = 25.0
    interval: float = 1.0  # agent report interval
    probe_interval: float = 2.0
    haproxy: bool = True
    extra_probes: tuple[str, ...] = ()  # more probe URLs per agent; "{addr}" is its address
    agent_config: str = ""  # agentd.toml text for every agent (e.g. [[probes]] tables)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    haproxy_proc: subprocess.Popen[bytes] | None = None
    frontend_port: int = 0
    director_port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def key_file(self) -> Path:
        return self.workdir / "cluster.key"

    @property
    def admin_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    def address(self, i: int) -> str:
        return f"127.0.1.{i + 1}"

    def stop_web(self, i: int) -> None:
        """Take node i's web service down (the agent keeps running): for failure drills."""
        self.servers[i].shutdown()
        self.servers[i].server_close()

    def start_web_again(self, i: int) -> None:
        httpd = _QuietHTTPServer((self.address(i), WEB_PORT), _SlowHandler)
        threading.Thread(target=httpd.serve_forever, args=(0.2,), daemon=True).start()
        self.servers[i] = httpd

    def restart_haproxy(self) -> None:
        """Stop HAProxy and start it again from its config, without a state file: every
        runtime change (drain, weight) is gone, as after a reload outside ctop."""
        assert self.haproxy_proc is not None
        self.haproxy_proc.terminate()
        self.haproxy_proc.wait(timeout=5)
        self.admin_socket.unlink(missing_ok=True)
        self._launch_haproxy()

    def config(self) -> DirectorConfig:
        lb: dict = {}
        if self.haproxy_proc is not None:
            lb = {"haproxy": {"socket": str(self.admin_socket)},
                  "automation": {"web": {"quiesce_after": 3, "restore_after": 2}}}
        return DirectorConfig(
            cluster="demo",
            listen=("127.0.0.1", self.director_port),
            key_file=str(self.key_file),
            store=StoreConfig(path=str(self.workdir / "ctop.db")),
            control_socket=str(self.workdir / "ctop.sock"),
            lb=parse_config(lb),
        )

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        self.key_file.write_bytes(os.urandom(32).hex().encode())
        self.key_file.chmod(0o600)
        self.director_port = _free_port()
        for i in range(self.nodes):
            self._start_web(i)
        if self.haproxy and shutil.which("haproxy"):
            self._start_haproxy()
            threading.Thread(target=self._traffic, name="demo-traffic", daemon=True).start()
        for i in range(self.nodes):
            self.agents.append(self._start_agent(i))

    def _start_web(self, i: int) -> None:
        httpd = _QuietHTTPServer((self.address(i), WEB_PORT), _SlowHandler)
        threading.Thread(target=httpd.serve_forever, args=(0.2,), daemon=True).start()
        self.servers.append(httpd)

    def _start_agent(self, i: int) -> subprocess.Popen[bytes]:
        agentd = Path(sys.executable).with_name("agentd")
        cmd = [str(agentd) if agentd.exists() else sys.executable, *(
            [] if agentd.exists() else ["-m", "agentd.main"])]
        web = f"http://{self.address(i)}:{WEB_PORT}/"
        cmd += [
            "--config", str(self.workdir / "agentd.toml"),
            "--director", f"127.0.0.1:{self.director_port}",
            "--key-file", str(self.key_file),
            "--node-id", f"web-{i + 1:02d}",
            "--group", GROUPS[i % len(GROUPS)],
            "--interval", str(self.interval),
            "--address", self.address(i),
            "--probe", f"{web}?name=http&interval={self.probe_interval}&timeout=2",
            "--probe",
            f"tcp://{self.address(i)}:{WEB_PORT}?name=tcp&interval={self.probe_interval}&timeout=1",
        ]
        for url in self.extra_probes:
            cmd += ["--probe", url.replace("{addr}", self.address(i))]
        (self.workdir / "agentd.toml").write_text(self.agent_config)
        log = open(self.workdir / f"agent-{i + 1}.log", "wb")  # noqa: SIM115 - lives with the process
        return subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=_die_with_parent)

    def _start_haproxy(self) -> None:
        self.frontend_port = _free_port()
        servers = "\n".join(
            f"    server web-{i + 1:02d} {self.address(i)}:{WEB_PORT} weight 10 check inter 2s"
            for i in range(self.nodes)
        )
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(f"""global
    stats socket {self.admin_socket} mode 600 level admin
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend www
    bind 127.0.0.1:{self.frontend_port}
    default_backend web
backend web
    balance leastconn
{servers}
""")
        self._launch_haproxy()

    def _launch_haproxy(self) -> None:
        cfg = self.workdir / "haproxy.cfg"
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - lives with the process
        self.haproxy_proc = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=log,
                                             stderr=log, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not self.admin_socket.exists():
            if time.monotonic() > deadline or self.haproxy_proc.poll() is not None:
                raise RuntimeError(f"haproxy did not start; see {self.workdir / 'haproxy.log'}")
            time.sleep(0.05)

    def _traffic(self) -> None:
        """A steady, bounded stream of real requests through the frontend (loopback only)."""
        pool: list[threading.Thread] = []
        url_host = ("127.0.0.1", self.frontend_port)
        while not self._stop.is_set():
            pool = [t for t in pool if t.is_alive()]
            if len(pool) < 64:
                t = threading.Thread(target=_one_request, args=(url_host,), daemon=True)
                t.start()
                pool.append(t)
            self._stop.wait(random.expovariate(self.traffic_per_s))

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        for p in self.agents:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # agents say goodbye
        for p in self.agents:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.haproxy_proc is not None and self.haproxy_proc.poll() is None:
            self.haproxy_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.haproxy_proc.wait(timeout=5)
        for httpd in self.servers:
            httpd.shutdown()
            httpd.server_close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _one_request(addr: tuple[str, int]) -> None:
    with contextlib.suppress(OSError), socket.create_connection(addr, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
        while s.recv(4096):
            pass
