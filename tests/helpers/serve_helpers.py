"""A real `ctop serve` subprocess for the daemon tests, and signed datagrams to feed it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentd.encoder import encode, new_boot_id
from agentd.protocol import Header, Join, Leave, Report, seal
from ctop.control.client import ControlError, fetch_status
from tests.helpers.agent_helpers import KEY, write_key

CTOP = Path(sys.executable).with_name("ctop")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_node(remote: Any, node_id: str, *, metrics: bool = False,
                  timeout: float = 15) -> None:
    """Poll a UI source (RemoteSource) until it shows `node_id`, with its raw metrics when
    `metrics` (the node detail's `watch`); fails with the source's last error."""
    def shown() -> bool:
        node = remote.snapshot().node(node_id)
        return node is not None and (not metrics or bool(node.metrics))

    deadline = time.monotonic() + timeout
    while not shown() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shown(), getattr(remote, "_error", None)


class Daemon:
    """`ctop serve` with its own config, key, database and control socket under `root`."""

    def __init__(self, root: Path, extra: str = "", *, db: Path | None = None,
                 port: int | None = None, key: bytes = KEY) -> None:
        self.root = root
        self.port = port or free_udp_port()
        self.key = key
        self.key_file = write_key(root / "cluster.key", key=key)
        self.db = db or root / "ctop.db"
        self.sock = root / "ctop.sock"
        self.config = root / "ctop.toml"
        self.config.write_text(
            f'cluster = "t"\nlisten = "127.0.0.1:{self.port}"\nkey_file = "{self.key_file}"\n'
            f'control_socket = "{self.sock}"\n{extra}\n[store]\npath = "{self.db}"\n')
        self.proc: subprocess.Popen[str] | None = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def again(self) -> Daemon:
        """A new daemon on the same config, key, port and database (after stop())."""
        other = Daemon.__new__(Daemon)
        other.__dict__.update(self.__dict__)
        other.proc = None
        other.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return other.start()

    def start(self, timeout: float = 20) -> Daemon:
        self.proc = subprocess.Popen([str(CTOP), "serve", "--config", str(self.config)],
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            if self.sock.exists():
                try:
                    self.status()
                    return self
                except RuntimeError:
                    pass
            time.sleep(0.05)
        raise AssertionError("ctop serve did not come up")

    def ctop(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CTOP), *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=30)

    def status(self) -> dict[str, Any]:
        """What `ctop status --json` prints, read in this process: the same request on the
        control socket, the same JSON (tests/test_director_cli.py runs the command itself).
        A `ctop` process per poll cost ~0.3 s of CPU: the polls were slow and loaded the
        machine under every timing-sensitive test beside them."""
        try:
            data = fetch_status(str(self.sock))
        except ControlError as e:
            raise RuntimeError(str(e)) from None
        return json.loads(json.dumps(data, default=str))

    def status_text(self) -> str:
        return self.ctop("status").stdout

    def send(self, data: bytes) -> None:
        self.udp.sendto(data, ("127.0.0.1", self.port))

    def wait_for(self, check: Any, timeout: float = 15, what: str = "") -> dict[str, Any]:
        """Poll the status until check(status) is true; return that status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            if check(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or check}: {status}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.udp.close()
        return self.proc.returncode, err


def node(status: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    return next((n for n in status["nodes"] if n["node_id"] == node_id), None)


class Sender:
    """Plays one agent: signed join / report / leave with its own boot and sequence."""

    def __init__(self, node_id: str, key: bytes = KEY, boot: int | None = None) -> None:
        self.node_id, self.key = node_id, key
        self.boot = boot if boot is not None else new_boot_id()
        self.seq = 0

    def header(self, ts: float | None = None) -> Header:
        self.seq += 1
        return Header(self.node_id, self.boot, self.seq, time.time() if ts is None else ts)

    def report(self, interval: float = 1.0, **metrics: Any) -> bytes:
        base = {"cpu_percent": 10.0, "mem_percent": 20.0, "tcp_established": 3}
        return encode(self.key, Report(self.header(), interval, "",
                                                 {**base, **metrics}))

    def join(self) -> bytes:
        return encode(self.key, Join(self.header(), self.node_id, ("127.0.0.9",), 2,
                                               1 << 30, "test", 1.0))

    def leave(self) -> bytes:
        return encode(self.key, Leave(self.header(), "test"))

    def raw(self, body: dict[str, Any]) -> bytes:
        """A signed datagram with any body at all (what a holder of the key could send)."""
        return seal(self.key, body)


def samples(db: Path, node_id: str) -> int:
    import sqlite3

    with sqlite3.connect(db) as c:
        row = c.execute("SELECT count(*) FROM samples JOIN nodes ON nodes.id = samples.node "
                        "WHERE nodes.node_id = ?", (node_id,)).fetchone()
    return int(row[0])


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@contextmanager
def tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    """A small tmpfs mounted at `where` (needs root): a real disk that fills up."""
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Fill the file system of `where` to the last byte; returns the file to delete."""
    filler = where / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:  # ENOSPC: full
        pass
    return filler
