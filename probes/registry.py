"""The one place that maps probe type names to check functions, and the never-raising `check`."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator, Mapping

from probes.checks.base import Attempt, CheckFn, ProbeFailure, describe
from probes.result import ProbeResult, fail
from probes.spec import TYPES, ProbeSpec

# type -> "module:function". Imported on first use: a node that only checks TCP and SMTP
# never loads httpx (~6 MB of agentd's resident size).
_CHECK_PATHS = {
    "http": "probes.checks.http:check_http",
    "https": "probes.checks.http:check_http",
    "smtp": "probes.checks.lines:check_smtp",
    "pop3": "probes.checks.lines:check_pop3",
    "imap": "probes.checks.lines:check_imap",
    "ftp": "probes.checks.lines:check_ftp",
    "nntp": "probes.checks.lines:check_nntp",
    "ssh": "probes.checks.lines:check_ssh",
    "telnet": "probes.checks.stream:check_telnet",
    "tcp": "probes.checks.stream:check_tcp",
    "dns": "probes.checks.dns:check_dns",
    "command": "probes.checks.command:check_command",
}


class _LazyChecks(Mapping[str, CheckFn]):
    """The registry: type name -> check function, importing each check module when needed."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._loaded: dict[str, CheckFn] = {}

    def __getitem__(self, name: str) -> CheckFn:
        fn = self._loaded.get(name)
        if fn is None:
            module, _, attr = self._paths[name].partition(":")
            fn = self._loaded[name] = getattr(importlib.import_module(module), attr)
        return fn

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


CHECKS: Mapping[str, CheckFn] = _LazyChecks(_CHECK_PATHS)
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
