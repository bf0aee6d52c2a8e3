"""The one place that maps probe type names to check functions, and the never-raising `check`."""

from __future__ import annotations

import asyncio

from probes.checks import command, dns, http, lines, stream
from probes.checks.base import Attempt, CheckFn, ProbeFailure, describe
from probes.result import ProbeResult, fail
from probes.spec import TYPES, ProbeSpec

CHECKS: dict[str, CheckFn] = {
    "http": http.check_http,
    "https": http.check_http,
    "smtp": lines.check_smtp,
    "pop3": lines.check_pop3,
    "imap": lines.check_imap,
    "ftp": lines.check_ftp,
    "nntp": lines.check_nntp,
    "ssh": lines.check_ssh,
    "telnet": stream.check_telnet,
    "tcp": stream.check_tcp,
    "dns": dns.check_dns,
    "command": command.check_command,
}
if set(CHECKS) != set(TYPES):  # pragma: no cover - a programming error, caught at import
    raise RuntimeError(f"probe registry and spec types differ: {set(CHECKS) ^ set(TYPES)}")


async def check(spec: ProbeSpec) -> ProbeResult:
    """Run one check, bounded by spec.timeout. Never raises (cancellation still propagates)."""
    attempt = Attempt(spec)
    try:
        async with asyncio.timeout(spec.timeout):
            return await CHECKS[spec.type](spec, attempt)
    except ProbeFailure as exc:
        return fail(exc.detail, exc.latency_ms)
    except TimeoutError:
        return fail(f"timeout after {spec.timeout:g}s {attempt.phase}")
    except Exception as exc:  # a check must never take its caller down
        return fail(f"{attempt.phase}: {describe(exc)}")


async def run_many(specs: list[ProbeSpec] | tuple[ProbeSpec, ...]) -> list[ProbeResult]:
    """Run all checks concurrently; in spec order; bounded by the largest timeout."""
    return list(await asyncio.gather(*(check(spec) for spec in specs)))
