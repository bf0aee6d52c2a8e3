"""The line-protocol family (SMTP, POP3, IMAP, FTP, NNTP, SSH): greeting, then command/reply steps.

Each protocol is a Dialogue: data, not code. One reader handles multi-line numeric replies
("250-..." continues until "250 ...") and IMAP's untagged lines before a tagged reply.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from probes.checks.base import Attempt, ProbeFailure, close, connect
from probes.result import ProbeResult, ok
from probes.spec import ProbeSpec

_CONTINUATION = re.compile(r"^\d{3}-")
HELO_NAME = "ctop-probe.invalid"


@dataclass(frozen=True, slots=True)
class Reply:
    """A good reply starts with one of `prefixes`; `label` names it in failure details."""

    prefixes: tuple[str, ...]
    label: str
    skip_untagged: bool = False  # IMAP: "* BYE" may precede the tagged "a1 OK"


@dataclass(frozen=True, slots=True)
class Dialogue:
    protocol: str
    greeting: Reply
    steps: tuple[tuple[str, Reply], ...]  # (command sent, reply expected)


DIALOGUES: dict[str, Dialogue] = {
    "smtp": Dialogue(
        "SMTP",
        Reply(("220",), "220"),
        ((f"EHLO {HELO_NAME}", Reply(("250",), "250")), ("QUIT", Reply(("221",), "221"))),
    ),
    "pop3": Dialogue("POP3", Reply(("+OK",), "+OK"), (("QUIT", Reply(("+OK",), "+OK")),)),
    "imap": Dialogue(
        "IMAP",
        Reply(("* OK", "* PREAUTH"), "* OK"),
        (("a1 LOGOUT", Reply(("a1 OK",), "a1 OK", skip_untagged=True)),),
    ),
    # NOOP tells FTP (200) from SMTP (250), which share the 220 greeting and 221 goodbye.
    "ftp": Dialogue(
        "FTP",
        Reply(("220",), "220"),
        (("NOOP", Reply(("200",), "200")), ("QUIT", Reply(("221",), "221"))),
    ),
    "nntp": Dialogue("NNTP", Reply(("200", "201"), "200/201"), (("QUIT", Reply(("205",), "205")),)),
    # SSH: only the identification line; the probe leaves before key exchange.
    "ssh": Dialogue("SSH", Reply(("SSH-2.0-", "SSH-1.99-"), "SSH-2.0-"), ()),
}


async def _read_line(reader: asyncio.StreamReader, what: str) -> str:
    try:
        raw = await reader.readline()
    except ValueError:  # LimitOverrunError and friends: no newline within LINE_LIMIT bytes
        raise ProbeFailure(f"{what}: endless line, not a line protocol") from None
    except ConnectionError as exc:
        raise ProbeFailure(f"{what}: connection lost ({type(exc).__name__})") from None
    if not raw:
        raise ProbeFailure(f"{what}: connection closed by peer")
    return raw.decode("utf-8", "replace").rstrip("\r\n")


async def read_reply(reader: asyncio.StreamReader, expect: Reply, what: str) -> str:
    """Read one reply; return its first line. Multi-line replies are consumed whole."""
    first = await _read_line(reader, what)
    line = first
    seen = 1
    while _CONTINUATION.match(line) or (expect.skip_untagged and line.startswith("* ")):
        if seen >= 100:
            raise ProbeFailure(f"{what}: reply longer than 100 lines")
        line = await _read_line(reader, what)
        seen += 1
    if not line.startswith(expect.prefixes):
        raise ProbeFailure(f"{what}: expected {expect.label}, got {line!r}")
    return first if not expect.skip_untagged else line


async def converse(spec: ProbeSpec, attempt: Attempt, dialogue: Dialogue) -> ProbeResult:
    reader, writer = await connect(spec, attempt)
    try:
        attempt.phase = f"waiting for {dialogue.protocol} greeting"
        greeting = await read_reply(reader, dialogue.greeting, "greeting")
        for command, expect in dialogue.steps:
            verb = command.split()[0] if not command.startswith("a1 ") else command[3:]
            attempt.phase = f"waiting for reply to {verb}"
            writer.write(command.encode("ascii") + b"\r\n")
            await writer.drain()
            await read_reply(reader, expect, verb)
    finally:
        close(writer)
    return ok(greeting, attempt.elapsed_ms())


def _make(kind: str):
    dialogue = DIALOGUES[kind]

    async def check(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
        return await converse(spec, attempt, dialogue)

    check.__name__ = f"check_{kind}"
    check.__doc__ = f"{dialogue.protocol}: {dialogue.greeting.label}" + "".join(
        f", {cmd.split()[-1]} -> {exp.label}" for cmd, exp in dialogue.steps
    )
    return check


check_smtp = _make("smtp")
check_pop3 = _make("pop3")
check_imap = _make("imap")
check_ftp = _make("ftp")
check_nntp = _make("nntp")
check_ssh = _make("ssh")
