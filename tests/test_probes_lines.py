"""Line protocols, telnet and tcp against real servers: healthy, closed, silent, wrong protocol."""

from __future__ import annotations

import pytest

from probes import ProbeResult, check, from_url
from tests.helpers.peers import Peer

SILENT_TIMEOUT = 0.5

# type -> (fixture of the real server, detail the healthy check shows)
HEALTHY = {
    "smtp": ("smtp_server", "220 "),
    "pop3": ("pop3_server", "+OK"),
    "imap": ("imap_server", "* OK"),
    "ftp": ("ftp_server", "220"),
    "nntp": ("nntp_server", "201 "),
    "ssh": ("ssh_server", "SSH-2.0-"),
    "telnet": ("telnet_server", "IAC negotiation"),
    "tcp": ("smtp_server", "connected"),
}
# type -> (a server that answers with another protocol, what the detail must say)
WRONG = {
    "smtp": ("ftp_server", "EHLO: expected 250, got '5"),  # FTP also greets with 220
    "ftp": ("smtp_server", "NOOP: expected 200, got '250"),  # SMTP also says 220 and 221
    "pop3": ("imap_server", "greeting: expected +OK, got '* OK"),
    "imap": ("pop3_server", "greeting: expected * OK, got '+OK"),
    "nntp": ("smtp_server", "greeting: expected 200/201, got '220"),
    "ssh": ("smtp_server", "greeting: expected SSH-2.0-, got '220"),
    "telnet": ("ssh_server", "SSH greeting, not telnet"),
}
SPEAK_FIRST = ["smtp", "pop3", "imap", "ftp", "nntp", "ssh", "telnet"]


async def run(url: str, timeout: float = 3.0) -> ProbeResult:
    sep = "&" if "?" in url else "?"
    return await check(from_url(f"{url}{sep}timeout={timeout}"))


@pytest.mark.parametrize("kind", list(HEALTHY))
async def test_healthy(kind: str, request: pytest.FixtureRequest) -> None:
    fixture, shown = HEALTHY[kind]
    peer: Peer = request.getfixturevalue(fixture)
    result = await run(peer.url(kind))
    assert result.status == "ok", result
    assert shown in result.detail
    assert result.latency_ms is not None and 0 < result.latency_ms < 3000


@pytest.mark.parametrize("kind", list(HEALTHY))
async def test_closed_port(kind: str, closed_port: int) -> None:
    result = await run(f"{kind}://127.0.0.1:{closed_port}")
    assert result.status == "fail"
    assert result.detail == f"connect to 127.0.0.1:{closed_port} failed: connection refused"
    assert result.latency_ms is None


@pytest.mark.parametrize("kind", SPEAK_FIRST)
async def test_silent_server_times_out(kind: str, silent_server: Peer) -> None:
    result = await run(silent_server.url(kind), SILENT_TIMEOUT)
    assert result.status == "fail"
    assert result.detail.startswith(f"timeout after {SILENT_TIMEOUT:g}s waiting for")


@pytest.mark.parametrize("kind", list(WRONG))
async def test_wrong_protocol_fails(kind: str, request: pytest.FixtureRequest) -> None:
    fixture, says = WRONG[kind]
    peer: Peer = request.getfixturevalue(fixture)
    result = await run(peer.url(kind))
    assert result.status == "fail", result
    assert says in result.detail


@pytest.mark.parametrize("kind", SPEAK_FIRST)
async def test_http_server_is_not_a_greeting_server(kind: str, http_server: Peer) -> None:
    # A web server waits for the client to speak: the greeting never comes.
    result = await run(http_server.url(kind), SILENT_TIMEOUT)
    assert result.status == "fail"
    assert "timeout" in result.detail and "waiting for" in result.detail


@pytest.mark.parametrize("kind", ["tcp", "smtp", "telnet"])
async def test_connect_timeout_is_separate_from_overall(kind: str, blackhole_server: Peer) -> None:
    spec = from_url(blackhole_server.url(kind, "?timeout=2&connect_timeout=0.3"))
    result = await check(spec)
    assert result.status == "fail"
    assert result.detail == f"connect timeout after 0.3s to 127.0.0.1:{blackhole_server.port}"
