"""run_many: 200 checks against live and black-holed loopback peers finish on time."""

from __future__ import annotations

import time

from probes import ProbeSpec, from_url, run_many
from tests.helpers.peers import Peer

MAX_TIMEOUT = 1.0
MARGIN = 1.0  # two shared CPU cores; generous but far below a sequential run (~100 s)


async def test_200_checks_finish_within_largest_timeout(
    smtp_server: Peer,
    http_server: Peer,
    ftp_server: Peer,
    silent_server: Peer,
    blackhole_server: Peer,
    closed_port: int,
) -> None:
    peers = [
        (smtp_server.url("smtp"), "ok"),
        (http_server.url("http", "/health"), "ok"),
        (ftp_server.url("ftp"), "ok"),
        (smtp_server.url("tcp"), "ok"),
        (silent_server.url("smtp"), "fail"),  # accepts, never greets
        (silent_server.url("http", "/"), "fail"),  # accepts, never answers
        (blackhole_server.url("tcp"), "fail"),  # connect never completes
        (blackhole_server.url("ftp"), "fail"),
        (f"tcp://127.0.0.1:{closed_port}", "fail"),  # refused at once
    ]
    specs: list[ProbeSpec] = []
    expected: list[str] = []
    for i in range(200):
        url, status = peers[i % len(peers)]
        timeout = MAX_TIMEOUT if i % 2 else MAX_TIMEOUT / 2
        specs.append(from_url(f"{url}?timeout={timeout}"))
        expected.append(status)

    started = time.monotonic()
    results = await run_many(specs)
    elapsed = time.monotonic() - started

    assert len(results) == 200
    assert elapsed < MAX_TIMEOUT + MARGIN, f"200 checks took {elapsed:.2f}s"
    for spec, result, status in zip(specs, results, expected, strict=True):
        assert result.status == status, (spec.name, result)
