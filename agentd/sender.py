"""UDP delivery to one or more directors that never blocks and never raises.

Each director gets its own connected, non-blocking UDP socket. Connecting matters: only a
connected UDP socket reports the ICMP "port unreachable" of a stopped director (as
ECONNREFUSED on a later send), which lets the log say why nothing arrives. Every send error is
counted and logged at most once a minute per director; the agent keeps sending regardless.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentd.config import Director

log = logging.getLogger("agentd")

LOG_EVERY = 60.0  # seconds between repeated error lines for one director
RECOVERED_AFTER = 5  # clean sends in a row before a failing director counts as reachable again


@dataclass
class _Target:
    director: Director
    sock: socket.socket | None = None
    failures: int = 0  # since the last log line about this director
    failing: bool = False
    clean_sends: int = 0
    last_log: float = field(default=float("-inf"))


class Sender:
    def __init__(self, directors: tuple[Director, ...], clock=time.monotonic,
                 on_datagram: Callable[[bytes], None] | None = None) -> None:
        self._targets = [_Target(d) for d in directors]
        self._clock = clock
        # What a director sends back (a configuration push, agentd/push.py) arrives on the
        # connected socket: the kernel delivers only datagrams from that director's address.
        self.on_datagram = on_datagram
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.dropped = 0

    async def resolve(self) -> None:
        """(Re)open sockets for directors that have none yet. Names resolve in a worker
        thread; numeric addresses resolve inline (no thread, no DNS)."""
        loop = self._loop = asyncio.get_running_loop()
        for t in self._targets:
            if t.sock is not None:
                continue
            d = t.director
            # An ASCII name as bytes: getaddrinfo runs a str through the idna codec, whose
            # import (unicodedata, stringprep) costs the agent ~0.2 MB for a plain address.
            host: str | bytes = d.host.encode() if d.host.isascii() else d.host
            try:
                try:
                    infos = socket.getaddrinfo(
                        host, d.port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
                    )
                except socket.gaierror:
                    infos = await loop.getaddrinfo(host, d.port, type=socket.SOCK_DGRAM)
                family, kind, proto, _, addr = infos[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    sock.connect(addr)
                except OSError:
                    sock.close()
                    raise
                t.sock = sock
                if self.on_datagram is not None:
                    loop.add_reader(sock.fileno(), self._read, t)
                log.info("sending to director %s (%s)", d, addr[0])
            except OSError as e:
                self._failed(t, f"cannot resolve or connect: {e}")

    def send(self, data: bytes) -> int:
        """Send one datagram to every director; returns how many took it. Never blocks."""
        ok = 0
        for t in self._targets:
            if t.sock is None:
                self.dropped += 1
                continue
            try:
                t.sock.send(data)
            except OSError as e:  # ECONNREFUSED, ENETUNREACH, EAGAIN (buffer full), ...
                self.dropped += 1
                self._failed(t, e.strerror or str(e))
                continue
            ok += 1
            self.sent += 1
            if t.failing:
                t.clean_sends += 1
                if t.clean_sends >= RECOVERED_AFTER:
                    log.info("director %s: sending works again", t.director)
                    t.failing, t.failures, t.clean_sends = False, 0, 0
                    t.last_log = float("-inf")
        return ok

    def _read(self, t: _Target) -> None:
        for _ in range(16):
            if t.sock is None:
                return
            try:
                data = t.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # the ICMP error of an earlier send (a stopped director)
                self.dropped += 1
                self._failed(t, e.strerror or str(e))
                return
            if self.on_datagram is not None:
                self.on_datagram(data)

    def _failed(self, t: _Target, why: str) -> None:
        t.failures += 1
        t.clean_sends = 0
        now = self._clock()
        if now - t.last_log >= LOG_EVERY:
            if t.failing:
                log.warning(
                    "director %s: still failing: %s (%d failed sends in the last %.0f s)",
                    t.director,
                    why,
                    t.failures,
                    now - t.last_log,
                )
            else:
                log.warning("director %s: %s; will keep trying", t.director, why)
            t.last_log = now
            t.failures = 0
        t.failing = True

    @property
    def unresolved(self) -> bool:
        return any(t.sock is None for t in self._targets)

    def close(self) -> None:
        for t in self._targets:
            if t.sock is not None:
                if self._loop is not None and self.on_datagram is not None:
                    self._loop.remove_reader(t.sock.fileno())
                t.sock.close()
                t.sock = None
