"""Checks that only need a connection and maybe the first bytes: tcp and telnet."""

from __future__ import annotations

import re

from probes.checks.base import Attempt, ProbeFailure, close, connect
from probes.result import ProbeResult, fail, ok
from probes.spec import ProbeSpec

IAC = 0xFF
# Greetings of other services: a telnet check that meets one of these is at the wrong port.
_FOREIGN = (
    (re.compile(rb"^SSH-\d"), "SSH"),
    (re.compile(rb"^\d{3}[ -]"), "SMTP/FTP/NNTP-style"),
    (re.compile(rb"^\+OK"), "POP3"),
    (re.compile(rb"^\* (OK|PREAUTH)"), "IMAP"),
    (re.compile(rb"^HTTP/\d"), "HTTP"),
)


async def check_tcp(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    _reader, writer = await connect(spec, attempt)
    close(writer)
    return ok("connected", attempt.elapsed_ms())


async def check_telnet(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    """Alive when the server sends IAC negotiation or text (a banner or login prompt)."""
    reader, writer = await connect(spec, attempt)
    try:
        attempt.phase = "waiting for telnet negotiation or prompt"
        try:
            data = await reader.read(512)
        except ConnectionError as exc:
            raise ProbeFailure(f"connection lost ({type(exc).__name__})") from None
    finally:
        close(writer)
    if not data:
        raise ProbeFailure("connection closed before the server sent anything")
    latency = attempt.elapsed_ms()
    if data[0] == IAC:
        return ok(f"IAC negotiation ({len(data)} bytes)", latency)
    text = data.decode("utf-8", "replace").strip()
    for pattern, proto in _FOREIGN:
        if pattern.match(data.lstrip()):
            return fail(f"{proto} greeting, not telnet: {text!r}", latency)
    return ok(f"text: {text}", latency)
