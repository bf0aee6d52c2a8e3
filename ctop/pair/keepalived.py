"""Talking to the local keepalived: ask for a JSON dump by its signal, read the notify FIFO.

Nothing here keeps state between calls except the FIFO's descriptor and a partial line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Callable
from functools import cache

from ctop.pair.view import InstanceView
from ctop.pair.vrrp import FifoLine, KeepalivedError, parse_fifo_line, parse_json_dump

DUMP_WAIT = 2.0  # seconds keepalived may take to write the dump after the signal


@cache
def json_signal(keepalived: str = "keepalived") -> int:
    """The signal keepalived dumps its JSON state on, as keepalived itself says (it is a
    real-time signal whose number depends on the libc: 36 on Debian 12)."""
    try:
        done = subprocess.run([keepalived, "--signum=JSON"], capture_output=True, text=True,
                              timeout=5)
        return int(done.stdout.strip())
    except (OSError, subprocess.TimeoutExpired, ValueError):
        raise KeepalivedError(f"cannot learn the JSON dump signal from "
                              f"`{keepalived} --signum=JSON` (built without --enable-json?)"
                              ) from None


def running_pid(pid_file: str) -> int:
    """keepalived's main pid; KeepalivedError when it does not run."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip() or 0)
    except FileNotFoundError:
        raise KeepalivedError(f"keepalived is not running (no pid file {pid_file})") from None
    except (OSError, ValueError) as e:
        raise KeepalivedError(f"cannot read the pid file {pid_file}: {e}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise KeepalivedError(f"keepalived is not running (pid {pid} of {pid_file} is gone)"
                              ) from None
    except PermissionError:
        pass  # it runs; the dump signal will say whether we may signal it
    return pid


def dump_state(pid_file: str, json_file: str,
               meanwhile: Callable[[], None] = lambda: None) -> tuple[InstanceView, ...]:
    """Signal keepalived for a JSON dump, wait for the new file, parse it. The main pid is
    signalled: it passes SIGJSON on to its VRRP process (keepalived/core/main.c). `meanwhile` runs
    at each look while waiting (the FIFO is read on: a slow dump never delays a transition)."""
    pid = running_pid(pid_file)
    before = _stamp(json_file)
    try:
        os.kill(pid, json_signal())
    except PermissionError:
        raise KeepalivedError(f"not allowed to signal keepalived (pid {pid}): run ctop serve "
                              "as root") from None
    except ProcessLookupError:
        raise KeepalivedError(f"keepalived (pid {pid}) stopped") from None
    deadline = time.monotonic() + DUMP_WAIT
    while time.monotonic() < deadline:
        now = _stamp(json_file)
        if now is not None and now != before:
            time.sleep(0.02)  # keepalived writes with stdio: let it finish the file
            with contextlib.suppress(KeepalivedError):
                return _read(json_file)
        meanwhile()
        time.sleep(0.02)
    # keepalived writes nothing without a vrrp_instance (vrrp_print_json returns at once)
    raise KeepalivedError(f"keepalived (pid {pid}) wrote no JSON dump to {json_file} within "
                          f"{DUMP_WAIT:g} s (no vrrp_instance configured, or json_file is not "
                          "its $TMPDIR/keepalived.json)")


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read(path: str) -> tuple[InstanceView, ...]:
    try:
        with open(path) as f:
            return parse_json_dump(f.read())
    except OSError as e:
        raise KeepalivedError(f"cannot read {path}: {e}") from None


class NotifyFifo:
    """keepalived's notify_fifo, read without blocking. Created (mode 0600) if missing:
    keepalived then opens ours and does not remove it when it stops. Opened read-write so
    that a keepalived restart (the writer closing) is no end of file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._partial = b""
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.mkfifo(path, 0o600)
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise KeepalivedError(f"notify_fifo {path} exists and is not a FIFO")
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def lines(self) -> list[FifoLine]:
        """The VRRP lines written since the last call (others skipped)."""
        data = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        if not data:
            return []
        *whole, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > 4096:  # no newline for that long: not keepalived's; drop it
            self._partial = b""
        out = []
        for raw in whole:
            line = parse_fifo_line(raw.decode("utf-8", "replace"))
            if line is not None:
                out.append(line)
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
