"""Helpers for the agentd tests: a key file, a UDP receiver and a real agentd subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agentd.protocol import Message, Rejected
from ctop.ingest.verifier import Verifier

AGENTD = Path(sys.executable).with_name("agentd")
KEY = b"0123456789abcdef0123456789abcdef"


def write_key(path: Path, mode: int = 0o600, key: bytes = KEY) -> Path:
    path.write_bytes(key)
    path.chmod(mode)
    return path


class Receiver:
    """A UDP socket on 127.0.0.1 that plays the director: keeps every datagram it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.datagrams: list[tuple[float, bytes]] = []  # (monotonic arrival time, bytes)

    def receive(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65535)
        except TimeoutError:
            return None
        self.datagrams.append((time.monotonic(), data))
        return data

    def collect(self, count: int, timeout: float) -> list[bytes]:
        """Up to `count` datagrams, waiting at most `timeout` seconds in total."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            data = self.receive(left)
            if data is not None:
                got.append(data)
        return got

    def close(self) -> None:
        self.sock.close()


def verified(verifier: Verifier, data: bytes) -> Message:
    msg = verifier.verify(data)
    assert not isinstance(msg, Rejected), msg
    return msg


def start_agent(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(AGENTD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stop_agent(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the agent, wait for it to exit; returns (exit code, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err
