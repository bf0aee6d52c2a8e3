"""A real HAProxy on loopback with three real HTTP servers, for the load-balancer tests.

Session fixture `haproxy_lab`: one HAProxy process (foreground, -db) with several identical
backends (web1..webN, each with servers s1, s2, s3 = the same three HTTP servers), one frontend
per backend, an admin UNIX socket, an admin TCP socket and a user-level (read-only) socket.
Function fixture `haproxy`: the lab with every server set back to ready / weight 1 and all
HTTP servers running, so tests don't see each other's changes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import stop_process, wait_until_ready

SERVERS = ("s1", "s2", "s3")
BACKENDS = tuple(f"web{i}" for i in range(1, 9))
# mode tcp: a connection through it holds a server connection open while it stays open (the
# long-lived sessions that `maint --cut-sessions` cuts)
TCP_BACKENDS = ("tcp1",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class NamedHTTPServer:
    """An HTTP server answering its own name; can be stopped and started on the same port."""

    def __init__(self, name: str, port: int, host: str = "127.0.0.1") -> None:
        self.name, self.port, self.host = name, port, host
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        if self._httpd is not None:
            return
        ThreadingHTTPServer.allow_reuse_address = True
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True
        httpd.name = self.name  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._httpd = httpd

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    @property
    def running(self) -> bool:
        return self._httpd is not None


@dataclass
class HAProxyLab:
    admin_socket: str
    user_socket: str
    tcp_socket: str  # "127.0.0.1:PORT", admin level
    frontends: dict[str, int]  # backend name -> frontend port
    servers: dict[str, NamedHTTPServer]
    check_backend: str = "chk"
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)
    argv: tuple[str, ...] = ()  # how the process was started (restart() starts it again)

    def cmd(self, line: str, sock: str | None = None) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock or self.admin_socket)
            s.sendall(line.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def url(self, backend: str) -> str:
        return f"http://127.0.0.1:{self.frontends[backend]}/"

    def hits(self, backend: str, n: int) -> Counter[str]:
        """Send n real requests through the frontend; count answers by server name."""
        counts: Counter[str] = Counter()
        # A new connection per request keeps HAProxy balancing every request on its own.
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            for _ in range(n):
                r = client.get(self.url(backend))
                counts[r.text if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
        return counts

    def restart(self) -> None:
        """Stop HAProxy and start it again from its config file without a state file: every
        runtime change (drain, weight) is lost, as after a reload outside ctop."""
        assert self.proc is not None and self.log is not None
        self.proc.terminate()
        self.proc.wait(timeout=5)
        for sock in (self.admin_socket, self.user_socket):
            Path(sock).unlink(missing_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - kept by the process, like the first one
        self.proc = subprocess.Popen([*self.argv], stdout=log, stderr=log)
        _wait_ready(self)

    def reset(self) -> None:
        for srv in self.servers.values():
            srv.start()
        for b in BACKENDS + TCP_BACKENDS:
            for s in SERVERS:
                for line in (f"set server {b}/{s} weight 1", f"set server {b}/{s} state ready"):
                    answer = self.cmd(line).strip()
                    assert not answer, f"{line}: {answer}"
        for s in ("s1", "s2"):
            answer = self.cmd(f"set server {self.check_backend}/{s} state ready").strip()
            assert not answer, answer


def _haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )


def _config(tmp: Path, lab: HAProxyLab, dead_port: int) -> str:
    ports = {name: srv.port for name, srv in lab.servers.items()}
    lines = [
        "global",
        f"  stats socket {lab.admin_socket} mode 600 level admin",
        f"  stats socket {lab.user_socket} mode 600 level user",
        f"  stats socket ipv4@{lab.tcp_socket} level admin",
        f"  pidfile {tmp}/haproxy.pid",
        "defaults",
        "  mode http",
        "  retries 0",  # a refused connection answers 503 at once (no 1 s retry delay)
        "  timeout connect 2s",
        "  timeout client 10s",
        "  timeout server 10s",
    ]
    for b, fport in lab.frontends.items():
        if b in TCP_BACKENDS:
            continue
        lines += [f"frontend fe_{b}", f"  bind 127.0.0.1:{fport}", f"  default_backend {b}"]
        lines += [f"backend {b}", "  balance roundrobin"]
        lines += [f"  server {s} 127.0.0.1:{ports[s]} weight 1" for s in SERVERS]
    for b in TCP_BACKENDS:
        lines += [f"frontend fe_{b}", "  mode tcp", f"  bind 127.0.0.1:{lab.frontends[b]}",
                  f"  default_backend {b}", f"backend {b}", "  mode tcp", "  balance roundrobin"]
        lines += [f"  server {s} 127.0.0.1:{ports[s]} weight 1" for s in SERVERS]
    # A backend with real health checks: s1 is alive, s2 points at a closed port (DOWN).
    lines += [
        f"backend {lab.check_backend}",
        "  mode tcp",
        "  balance roundrobin",
        f"  server s1 127.0.0.1:{ports['s1']} check inter 200ms fall 1 rise 1",
        f"  server s2 127.0.0.1:{dead_port} check inter 200ms fall 1 rise 1",
    ]
    return "\n".join(lines) + "\n"


def start_lab(tmp: Path) -> HAProxyLab:
    """A HAProxy process with its own three HTTP servers under `tmp` (stop it with
    stop_lab). The session's `haproxy_lab` is one; a director pair test starts one per
    director."""
    binary = _haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    servers = {name: NamedHTTPServer(name, free_port()) for name in SERVERS}
    for srv in servers.values():
        srv.start()
    lab = HAProxyLab(
        admin_socket=str(tmp / "admin.sock"),
        user_socket=str(tmp / "user.sock"),
        tcp_socket=f"127.0.0.1:{free_port()}",
        frontends={b: free_port() for b in BACKENDS + TCP_BACKENDS},
        servers=servers,
        log=tmp / "haproxy.log",
    )
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(_config(tmp, lab, free_port()))
    lab.argv = (binary, "-f", str(cfg), "-db")
    with open(lab.log, "wb") as log:  # the process keeps its own descriptor
        lab.proc = subprocess.Popen([*lab.argv], stdout=log, stderr=log)
    try:
        _wait_ready(lab)
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def stop_lab(lab: HAProxyLab) -> None:
    stop_process(lab.proc, timeout=5)
    for srv in lab.servers.values():
        srv.stop()


@pytest.fixture(scope="session")
def haproxy_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxyLab]:
    lab = start_lab(tmp_path_factory.mktemp("haproxy"))
    try:
        yield lab
    finally:
        stop_lab(lab)


def _wait_ready(lab: HAProxyLab) -> None:
    assert lab.proc is not None and lab.log is not None

    def answering() -> bool:
        if "Name: HAProxy" not in lab.cmd("show info"):
            return False
        httpx.get(lab.url(BACKENDS[0]), timeout=2).raise_for_status()
        return True

    wait_until_ready("haproxy", lab.proc, answering, lab.log, timeout=10)


@pytest.fixture
def haproxy(haproxy_lab: HAProxyLab) -> Iterator[HAProxyLab]:
    haproxy_lab.reset()
    yield haproxy_lab
    haproxy_lab.reset()
