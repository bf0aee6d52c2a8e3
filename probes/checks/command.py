"""command: run a program mon-style: exit 0 ok, 1 warn, anything else fail.

The program runs in its own session (process group); when it times out, or when it exits and
leaves children behind, the whole group is killed so no check leaks processes. Output goes to an
unnamed temporary file, not a pipe: a background child holding a pipe open would otherwise keep
the check waiting after the program itself has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import tempfile

from probes.checks.base import Attempt, ProbeFailure, describe
from probes.result import ProbeResult, fail, ok, warn
from probes.spec import ProbeSpec

OUTPUT_KEEP = 4096  # the first line is the summary, mon-style; the rest is not shown
REAP_WAIT = 1.0  # SIGKILL is instant unless the process is stuck in the kernel


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Collect the killed process so its transport closes now, not at garbage collection."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(REAP_WAIT):
            await proc.wait()


def _summary(output: bytes) -> str:
    for line in output.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


async def check_command(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    argv = list(spec.command)
    attempt.phase = f"starting {argv[0]}"
    with tempfile.TemporaryFile() as output:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProbeFailure(f"cannot run {shlex.join(argv)}: {describe(exc)}") from None
        attempt.phase = f"running {argv[0]} (its process group was killed)"
        try:
            code = await proc.wait()
        except BaseException:  # timeout or cancellation: nothing of the check may survive it
            _kill_group(proc.pid)
            await _reap(proc)
            raise
        latency = attempt.elapsed_ms()
        _kill_group(proc.pid)  # children left behind after a normal exit
        output.seek(0)
        summary = _summary(output.read(OUTPUT_KEEP))
    if code == 0:
        return ok(summary or "exit 0", latency)
    text = f"exit {code}" if code > 0 else f"killed by signal {-code}"
    text += f": {summary}" if summary else ""
    return warn(text, latency) if code == 1 else fail(text, latency)
