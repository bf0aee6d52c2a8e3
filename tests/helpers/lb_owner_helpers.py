"""`ctop serve` and `ctop lb` as real subprocesses on a real HAProxy, for the ownership tests."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ctop.control.client import fetch_status, hello
from ctop.control.wire import ControlError
from tests.helpers.agent_helpers import write_key
from tests.helpers.haproxy_peer import HAProxyLab

CTOP = Path(sys.executable).with_name("ctop")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without a SUDO_USER of its own (the tests say whom they claim)."""
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    return {**env, **(extra or {})}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_stat(haproxy: HAProxyLab, backend: str, server: str) -> tuple[int, str]:
    """(weight now, DRAIN | MAINT | UP) as HAProxy reports them (a drained server's weight
    is 0 in `show stat`)."""
    text = haproxy.cmd("show stat").lstrip("# ")
    for row in csv.DictReader(io.StringIO(text)):
        if row["pxname"] == backend and row["svname"] == server:
            status = row["status"].upper()
            kind = next((k for k in ("DRAIN", "MAINT") if k in status), "UP")
            return int(row["weight"]), kind
    raise AssertionError(f"{backend}/{server} not in show stat")


def configured_weight(haproxy: HAProxyLab, backend: str, server: str) -> int:
    return int(haproxy.cmd(f"get weight {backend}/{server}").split()[0])


@dataclass
class Director:
    """A director's files (world-readable dir: other uids run clients in it)."""

    root: Path
    config: Path
    db: Path
    socket: Path

    def lb(self, *args: str, env: dict[str, str] | None = None,
           as_user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*(as_user or []), str(CTOP), "lb", *args, "--config",
                               str(self.config)], capture_output=True, text=True, timeout=60,
                              env=clean_env(env))

    def lb_async(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(CTOP), "lb", *args, "--config", str(self.config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env())

    def status(self, as_user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*(as_user or []), str(CTOP), "status", "--json", "--config",
                               str(self.config)], capture_output=True, text=True, timeout=30)

    def events(self) -> list[str]:
        """The daemon's action events (its status, read in this process: `status()` runs the
        command, for the tests of who may read it)."""
        return [e[3] for e in fetch_status(str(self.socket))["events"] if e[1] == "action"]

    def journal(self) -> list[tuple]:
        """(user, sudo_user, origin, action, weight_after, result), oldest first."""
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return db.execute("SELECT user, sudo_user, origin, action, weight_after, result"
                              " FROM lb_actions ORDER BY id").fetchall()


@contextlib.contextmanager
def director(haproxy: HAProxyLab, extra: str = "", *, lb_extra: str = "") -> Iterator[Director]:
    root = Path(tempfile.mkdtemp(prefix="ctop-owner-"))
    root.chmod(0o755)
    try:
        key = write_key(root / "cluster.key")
        d = Director(root, root / "ctop.toml", root / "ctop.db", root / "ctop.sock")
        d.config.write_text(
            f'cluster = "owner"\nlisten = "127.0.0.1:{free_udp_port()}"\nkey_file = "{key}"\n'
            f'control_socket = "{d.socket}"\nlb_every = 0.5\n{extra}\n'
            f'[store]\npath = "{d.db}"\n'
            f'[lb]\n{lb_extra}\n[lb.haproxy]\nsocket = "{haproxy.admin_socket}"\n')
        d.config.chmod(0o644)
        yield d
    finally:
        for p in sorted(root.rglob("*"), reverse=True):
            with contextlib.suppress(OSError):
                p.unlink() if not p.is_dir() else p.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


@contextlib.contextmanager
def serving(d: Director, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`ctop serve` on the director's config until the block ends; ready when it answers."""
    serve = subprocess.Popen([str(CTOP), "serve", "--config", str(d.config), *args],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if serve.poll() is not None:
                raise AssertionError(f"ctop serve exited: {serve.stderr.read()}")
            with contextlib.suppress(ControlError):
                hello(str(d.socket))  # it answers: ready (in this process, no `ctop` run)
                break
            time.sleep(0.05)
        else:
            raise AssertionError("ctop serve did not answer")
        yield serve
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
