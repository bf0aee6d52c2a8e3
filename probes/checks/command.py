"""command: run a program mon-style: exit 0 ok, 1 warn, anything else fail.

The program runs in its own session (process group); when it times out, or when it exits and
leaves children behind, the whole group is killed so no check leaks processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal

from probes.checks.base import Attempt, ProbeFailure, describe
from probes.result import ProbeResult, fail, ok, warn
from probes.spec import ProbeSpec

OUTPUT_KEEP = 4096


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _drain(stream: asyncio.StreamReader) -> bytes:
    """Read to EOF but keep only the start: the first line is the summary, mon-style."""
    kept = b""
    while chunk := await stream.read(65536):
        if len(kept) < OUTPUT_KEEP:
            kept += chunk[: OUTPUT_KEEP - len(kept)]
    return kept


def _summary(output: bytes) -> str:
    for line in output.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


async def check_command(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    argv = list(spec.command)
    attempt.phase = f"starting {argv[0]}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise ProbeFailure(f"cannot run {shlex.join(argv)}: {describe(exc)}") from None
    assert proc.stdout is not None
    drain = asyncio.create_task(_drain(proc.stdout))
    attempt.phase = f"running {argv[0]} (its process group was killed)"
    try:
        code = await proc.wait()
    except BaseException:  # timeout or cancellation: nothing of the check may survive it
        _kill_group(proc.pid)
        drain.cancel()
        raise
    latency = attempt.elapsed_ms()
    _kill_group(proc.pid)  # children left behind after a normal exit
    try:
        async with asyncio.timeout(min(0.5, max(0.05, attempt.remaining()))):
            output = await drain
    except TimeoutError:  # a child escaped the group and still holds the pipe
        drain.cancel()
        output = b""
    summary = _summary(output)
    if code == 0:
        return ok(summary or "exit 0", latency)
    text = f"exit {code}" if code > 0 else f"killed by signal {-code}"
    text += f": {summary}" if summary else ""
    return warn(text, latency) if code == 1 else fail(text, latency)
