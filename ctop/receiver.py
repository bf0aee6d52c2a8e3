"""The UDP receiver: reads datagrams in batches, verifies them, hands messages on.

The stock asyncio datagram transport allocates a 256 KiB buffer per recvfrom (~20 µs per
datagram). This receiver registers the socket with `loop.add_reader` and drains it with
non-blocking `recvfrom(2048)` until EAGAIN, so one wake-up handles a whole burst.

Liveness beacons (agentd/beacon.py) are told apart by their third byte and checked on the
spot with one HMAC: no msgpack, no message object, ~4x cheaper than a report.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable

from agentd.beacon import BEACON_TYPE, Beacon
from agentd.protocol import MAX_DATAGRAM, Join, Message, RawReport, Rejected
from ctop.ingest import BeaconVerifier, Verifier

log = logging.getLogger(__name__)

# Bytes of socket receive buffer asked for (the kernel doubles it for its bookkeeping): enough
# reports of headroom to ride out the engine's once-a-second snapshot at 60,000 reports/s
# (figures: docs/performance.md, "Figures behind constants"). Above net.core.rmem_max only
# with CAP_NET_ADMIN.
RECV_BUFFER = 16 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; not exported by Python 3.11
MAX_SOURCES = 1024  # distinct source addresses we keep drop counts for (per reason)
TOP_SOURCES = 5  # sources shown per reject reason (status, Prometheus, UI)
BATCH = 512  # datagrams per wake-up before yielding to the loop
# Cyclic GC generation 0 threshold for a director process. Every report allocates ~40
# containers, and the model keeps the newest ones per node, so with the default (700) young
# collections run every ~20 reports and keep promoting short-lived metrics into the old
# generations, whose full scans grow with the cluster (measured with bench/ingest.py:
# docs/performance.md, "What was changed for speed"). Nearly everything
# here is freed by reference counting; the collector only has to find rare cycles.
GC_GEN0 = 100_000
GC_GEN1 = 50


def grow_receive_buffer(sock: socket.socket, size: int = RECV_BUFFER) -> int:
    """Ask for a large receive buffer, past rmem_max when privileged; return what we got."""
    options = [socket.SO_RCVBUF]
    if sys.platform.startswith("linux"):
        options.insert(0, SO_RCVBUFFORCE)
    for option in options:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:  # EPERM without CAP_NET_ADMIN: the plain option, capped by the kernel
            continue
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def tune_gc() -> None:
    """Raise the cyclic GC thresholds for ingest (never lowers what someone else set)."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GC_GEN0:
        gc.set_threshold(GC_GEN0, max(gen1, GC_GEN1), gen2)


class Receiver:
    """Owns the UDP socket. `on_message(msg, source, now)` is called for each accepted one.

    With `deferred=True` reports are checked with `Verifier.verify_deferred` and handed on as
    `RawReport`s (signature, header, staleness and order checked; body not yet): the consumer
    must accept them (`ClusterModel.apply` does) and report body rejects via `count_drop`.
    """

    def __init__(
        self,
        verifier: Verifier,
        on_message: Callable[[Message | RawReport, str, float], None],
        host: str = "0.0.0.0",
        port: int = 7117,
        *,
        tune_gc: bool = True,
        deferred: bool = False,
        on_beacon: Callable[[Beacon, str, float], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.on_message = on_message
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.accepted = 0  # messages and beacons
        self.beacons = 0  # of which beacons
        # Beacons are checked against the boots of the messages accepted here; without
        # on_beacon they are counted as drops like any datagram nobody asked for.
        self.on_beacon = on_beacon
        self.beacon_verifier = BeaconVerifier(verifier.key, verifier.max_age,
                                              key_for=verifier.key_for)
        self.drops: Counter[str] = Counter()  # by reason
        self.drops_by_source: Counter[str] = Counter()
        # reason -> source address -> rejects: which host sends the bad datagrams
        self.sources_by_reason: dict[str, Counter[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tune_gc = tune_gc
        self.deferred = deferred
        # Called each time the socket is drained empty (e.g. folding deferred report bodies
        # in small batches, so they don't pile up into the once-a-second tick).
        self.on_idle: Callable[[], object] | None = None
        # The (address, port) of the join being handled (ctop/grouppush.py answers to it).
        self.join_addr: tuple[str, int] | None = None
        # Called with the receiver's clock after a whole BATCH was read and more may wait: a
        # socket that never drains must not leave all deferred work to the tick (a stall of
        # seconds at 60,000 distinct nodes, with datagrams lost meanwhile).
        self.on_busy: Callable[[float], object] | None = None

    def open(self) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # No SO_REUSEADDR: a second director on the same port must fail loudly, not split
        # the stream.
        grow_receive_buffer(sock)
        sock.bind((self.host, self.port))
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        if self.tune_gc:
            tune_gc()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain)
        log.info("listening for agents on udp %s:%d", self.host, self.port)
        return self.host, self.port

    def close(self) -> None:
        if self.sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _drain(self) -> None:
        sock = self.sock
        if sock is None:
            return
        # Locals for everything touched per datagram: this loop runs 10,000+ times a second.
        recv = sock.recvfrom
        verify = self.verifier.verify_deferred if self.deferred else self.verifier.verify
        on_message = self.on_message
        on_beacon = self.on_beacon
        beacons = self.beacon_verifier
        verify_beacon, note = beacons.verify, beacons.note
        now = time.time()
        accepted = beaconed = 0
        try:
            for _ in range(BATCH):
                try:
                    data, addr = recv(MAX_DATAGRAM + 1)  # one byte more, so oversize is seen
                except (BlockingIOError, InterruptedError):
                    if self.on_idle is not None:  # drained: use the gap for deferred work
                        self.on_idle()
                    return
                except OSError as e:  # e.g. ICMP errors surfacing on the socket: never fatal
                    log.debug("recvfrom: %s", e)
                    return
                if len(data) > 2 and data[2] == BEACON_TYPE and on_beacon is not None:
                    beacon = verify_beacon(data, now)
                    if type(beacon) is Rejected:
                        self.count_drop(beacon, addr[0])
                        continue
                    beaconed += 1
                    try:
                        on_beacon(beacon, addr[0], now)  # type: ignore[arg-type]
                    except Exception:
                        log.exception("handling a beacon from %s failed", addr[0])
                    continue
                result = verify(data)
                if type(result) is Rejected:
                    self.count_drop(result, addr[0])
                    continue
                accepted += 1
                note(result.header, now)
                if type(result) is Join:  # rare: where a configuration push goes back to
                    self.join_addr = addr
                try:
                    on_message(result, addr[0], now)
                except Exception:  # a bug downstream must not stop the receiver
                    log.exception("handling a message from %s failed", addr[0])
            if self.on_busy is not None:  # a whole batch read: the socket may never drain
                try:
                    self.on_busy(now)
                except Exception:
                    log.exception("deferred work between batches failed")
        finally:
            self.accepted += accepted + beaconed
            self.beacons += beaconed

    def count_drop(self, rejected: Rejected, source: str, *, accepted: bool = False) -> None:
        """Count a reject by reason and source. `accepted=True` for a message counted as
        accepted on arrival and refused later (a deferred report body): it moves from
        `accepted` to the drops, so accepted + drops still add up to what was read."""
        if accepted:
            self.accepted -= 1
        reason = str(rejected.reason)
        self.drops[reason] += 1
        _count_source(self.drops_by_source, source)
        by_source = self.sources_by_reason.get(reason)
        if by_source is None:
            by_source = self.sources_by_reason[reason] = Counter()
        _count_source(by_source, source)

    def top_sources(self, n: int = TOP_SOURCES) -> dict[str, tuple[tuple[str, int], ...]]:
        """reason -> its n busiest sources, (address, rejects), busiest first."""
        return {reason: tuple(c.most_common(n)) for reason, c in self.sources_by_reason.items()}


def _count_source(counter: Counter[str], source: str) -> None:
    """Count one reject of `source`; past MAX_SOURCES addresses the rest go under "other"
    (a flood of spoofed addresses must not grow the director's memory)."""
    if source in counter or len(counter) < MAX_SOURCES:
        counter[source] += 1
    else:
        counter["other"] += 1
