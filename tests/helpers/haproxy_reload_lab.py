"""A real HAProxy in master-worker mode that is reloaded as operators reload it (SIGUSR2 to the
master: a new worker reads the config, and the server-state file, again).

Session fixture `reload_lab`: its config keeps state in a file (global `server-state-file`,
`load-server-state-from-file global` in defaults), so whether a reload keeps a drain depends
only on whether someone saved `show servers state` there — which is what ctop must do.
Function fixture `reloadable`: every server ready / weight 1 and no state file left over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.haproxy_peer import SERVERS, NamedHTTPServer, _haproxy_binary, free_port
from tests.helpers.processes import stop_process

BACKENDS = ("app1", "app2", "app3", "app4")


@dataclass
class ReloadLab:
    config: Path
    admin_socket: str
    state_file: Path
    frontends: dict[str, int]
    servers: dict[str, NamedHTTPServer]
    proc: subprocess.Popen[bytes]
    log: Path

    def cmd(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.admin_socket)
            s.sendall(line.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def worker_pid(self) -> int:
        for line in self.cmd("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split()[1])
        raise AssertionError("no Pid in show info")

    def reload(self) -> None:
        """Reload as systemd's `systemctl reload haproxy` does: SIGUSR2 to the master; returns
        when the new worker answers on the admin socket."""
        old = self.worker_pid()
        os.kill(self.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.worker_pid() != old:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"haproxy did not reload: {self.log.read_text()[-2000:]}")

    def live(self, backend: str, server: str) -> tuple[str, int]:
        """(admin state, weight) straight from `show servers state`."""
        for line in self.cmd(f"show servers state {backend}").splitlines():
            f = line.split()
            if len(f) > 7 and f[1] == backend and f[3] == server:
                return ("drain" if int(f[6]) & 0x08 else "ready"), int(f[7])
        raise AssertionError(f"{backend}/{server} not in show servers state")

    def reset(self) -> None:
        self.state_file.unlink(missing_ok=True)
        for b in BACKENDS:
            for s in SERVERS:
                for line in (f"set server {b}/{s} weight 1", f"set server {b}/{s} state ready"):
                    assert not self.cmd(line).strip(), line


def _config(tmp: Path, admin: str, state: Path, frontends: dict[str, int],
            servers: dict[str, NamedHTTPServer]) -> str:
    lines = ["global", f"  stats socket {admin} mode 600 level admin",
             f"  server-state-file {state}",
             "defaults", "  mode http", "  load-server-state-from-file global",
             "  timeout connect 2s", "  timeout client 10s", "  timeout server 10s"]
    for b, port in frontends.items():
        lines += [f"frontend fe_{b}", f"  bind 127.0.0.1:{port}", f"  default_backend {b}",
                  f"backend {b}", "  balance roundrobin"]
        lines += [f"  server {s} 127.0.0.1:{srv.port} weight 1" for s, srv in servers.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def reload_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReloadLab]:
    binary = _haproxy_binary()
    if binary is None:
        pytest.fail("haproxy is not installed (Debian package haproxy)")
    tmp = tmp_path_factory.mktemp("haproxy-reload")
    servers = {name: NamedHTTPServer(name, free_port()) for name in SERVERS}
    for srv in servers.values():
        srv.start()
    admin, state = str(tmp / "admin.sock"), tmp / "server-state"
    frontends = {b: free_port() for b in BACKENDS}
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(_config(tmp, admin, state, frontends, servers))
    log_path = tmp / "haproxy.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([binary, "-W", "-db", "-f", str(cfg)], stdout=log, stderr=log)
    lab = ReloadLab(cfg, admin, state, frontends, servers, proc, log_path)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                lab.worker_pid()
                httpx.get(f"http://127.0.0.1:{frontends[BACKENDS[0]]}/", timeout=2)
                break
            except (OSError, httpx.HTTPError, AssertionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"haproxy did not come up: {log_path.read_text()}") from None
                time.sleep(0.05)
        yield lab
    finally:
        stop_process(proc, timeout=5)
        log.close()
        for srv in servers.values():
            srv.stop()


@pytest.fixture
def reloadable(reload_lab: ReloadLab) -> Iterator[ReloadLab]:
    reload_lab.reset()
    yield reload_lab
    reload_lab.reset()
