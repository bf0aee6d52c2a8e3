"""What every check shares: the attempt clock, failures as exceptions, connecting, closing."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from probes.result import ProbeResult
from probes.spec import ProbeSpec

# Line protocols never need more; a longer "line" means the peer speaks something else.
LINE_LIMIT = 8192


class ProbeFailure(Exception):
    """Raised inside a check for an expected failure; the registry turns it into a fail result."""

    def __init__(self, detail: str, latency_ms: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.latency_ms = latency_ms


class Attempt:
    """One run of a check: its start time and what it is doing now (for timeout details)."""

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.started = time.monotonic()
        self.phase = "starting"

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def remaining(self) -> float:
        return max(0.0, self.spec.timeout - (time.monotonic() - self.started))


CheckFn: TypeAlias = Callable[[ProbeSpec, Attempt], Awaitable[ProbeResult]]


def describe(exc: BaseException) -> str:
    """A short operator-facing text for an exception from sockets, TLS or libraries."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{exc.strerror or name} ({name})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def where(spec: ProbeSpec) -> str:
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{host}:{spec.port}"


async def connect(
    spec: ProbeSpec, attempt: Attempt
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection bounded by the spec's connect timeout."""
    attempt.phase = f"connecting to {where(spec)}"
    limit = min(spec.connect_limit, attempt.remaining())
    try:
        async with asyncio.timeout(limit):
            return await asyncio.open_connection(spec.host, spec.port, limit=LINE_LIMIT)
    except TimeoutError:
        raise ProbeFailure(f"connect timeout after {limit:g}s to {where(spec)}") from None
    except OSError as exc:
        raise ProbeFailure(f"connect to {where(spec)} failed: {describe(exc)}") from None


def close(writer: asyncio.StreamWriter) -> None:
    """Close without waiting: a check must not hang on a peer that never acknowledges FIN."""
    with contextlib.suppress(Exception):  # closing a broken transport may raise; nothing to do
        writer.close()
