"""Starting and stopping the real servers of the test session: poll for readiness (never a
fixed sleep), fail at once with the server's log when it died, stop it politely then hard."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def wait_until_ready(what: str, proc: subprocess.Popen | None, ready: Callable[[], object],
                     log: Path | None, timeout: float, step: float = 0.05) -> None:
    """Poll `ready()` (exceptions count as not yet) until it is true; RuntimeError with the log's
    tail when `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if ready():
                return
        except Exception as exc:  # not listening yet, half-started: poll again
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s (last: {last!r}):\n"
                               f"{_tail(log)}")
        time.sleep(step)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
