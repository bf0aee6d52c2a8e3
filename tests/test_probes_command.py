"""command checks: mon-style exit codes, output summary, and process-group kills."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from probes import check, from_table, from_url


def gone(pid: int, within: float = 3.0) -> bool:
    """True once pid has exited (a zombie awaiting its new parent counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


async def test_exit_0_is_ok() -> None:
    result = await check(from_url("command:sh -c 'echo all good; echo more'"))
    assert result.status == "ok" and result.detail == "all good"
    assert result.latency_ms is not None


async def test_exit_1_is_warn() -> None:
    result = await check(from_url("command:sh -c 'echo disk 91% full >&2; exit 1'"))
    assert result.status == "warn" and result.detail == "exit 1: disk 91% full"


async def test_exit_2_is_fail() -> None:
    result = await check(from_url("command:sh -c 'echo backend down; exit 2'"))
    assert result.status == "fail" and result.detail == "exit 2: backend down"


async def test_killed_by_signal_is_fail() -> None:
    result = await check(from_url("command:sh -c 'kill -TERM $$'"))
    assert result.status == "fail" and result.detail == "killed by signal 15"


async def test_missing_program() -> None:
    result = await check(from_url("command:///nonexistent/check --flag"))
    assert result.status == "fail"
    assert result.detail.startswith("cannot run /nonexistent/check --flag: No such file")


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    spec = from_table({"type": "command", "command": ["sh", "-c", script], "timeout": 0.5})
    started = time.monotonic()
    result = await check(spec)
    assert time.monotonic() - started < 1.5
    assert result.status == "fail"
    assert result.detail.startswith("timeout after 0.5s running sh")
    assert gone(int(pidfile.read_text()))


async def test_children_left_behind_are_killed() -> None:
    result = await check(from_url("command:sh -c 'sleep 30 & echo $!'"))
    assert result.ok
    assert gone(int(result.detail))


async def test_runs_a_real_program_with_arguments() -> None:
    spec = from_table({"type": "command", "command": [sys.executable, "-c", "print(6*7)"]})
    result = await check(spec)
    assert result.ok and result.detail == "42"
