"""What a receiver worker hands the engine: verified, decoded messages in compact batches.

A worker (ctop/ingest/worker.py) checks each datagram completely (tag, header, age, order,
and a report's body with `decode_report`) and sends the engine one frame every
`FLUSH_EVERY` seconds: a 4-byte length and a pickle of `(entries, drops, counts)`. The engine
(ctop/ingest/workers.py) rebuilds each message without checking or decoding it again.

Entries are flat tuples of builtins, not the NamedTuples themselves: pickle rebuilds a
NamedTuple through its Python `__new__` (~1 µs each, 8 per report with its services), while
`tuple.__new__` on a plain tuple costs ~0.1 µs. Measured choices (docs/performance.md,
"Receiver workers"): pickle of flat tuples loads in ~16 µs per report, msgpack ~24 µs,
marshal ~17 µs, pickle of the NamedTuples ~22 µs; the body's own decode + checks ~40 µs.

The channel is a private socketpair between the engine and a child it started, so pickle
reads only what our own worker wrote; a frame that does not load is counted and dropped.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Iterator
from typing import Any

from agentd.beacon import Beacon
from agentd.protocol import (
    UNSENT,
    Header,
    IndexedServices,
    Join,
    Leave,
    Report,
    ServiceStatus,
)

FLUSH_EVERY = 0.05  # seconds a worker holds accepted messages before sending them on
FLUSH_ENTRIES = 2048  # ...or this many, whichever comes first (a frame stays ~1 MiB)
LENGTH = struct.Struct("!I")
MAX_FRAME = 64 << 20  # a length past this is a broken stream, not a frame

# Entry kinds (the first field of each entry).
REPORT = 0  # (REPORT, node, boot, seq, ts, interval, group, metrics, services, indexed,
#             source, now); services None = UNSENT; indexed None or (digest, services)
BEACON = 1  # (BEACON, node, boot, seq, gap, source, now)
OTHER = 2  # (OTHER, join_or_leave, source, now, (addr, port))

_new = tuple.__new__


def report_entry(msg: Report, source: str, now: float) -> tuple[Any, ...]:
    h = msg.header
    services = msg.services
    indexed = msg.indexed
    return (REPORT, h.node, h.boot, h.seq, h.ts, msg.interval, msg.group, msg.metrics,
            None if services is UNSENT else tuple(map(tuple, services)),
            None if indexed is None else (indexed.digest, tuple(map(tuple, indexed.services))),
            source, now)


def beacon_entry(b: Beacon, source: str, now: float) -> tuple[Any, ...]:
    return (BEACON, b.node, b.boot, b.seq, b.gap, source, now)


def other_entry(msg: Join | Leave, source: str, now: float,
                addr: tuple[str, int]) -> tuple[Any, ...]:
    return (OTHER, msg, source, now, addr[:2])


def frame(entries: list[tuple[Any, ...]], drops: dict[tuple[str, str], int],
          counts: tuple[int, int]) -> bytes:
    """One length-prefixed frame. `drops`: (reason, source) -> datagrams refused since the
    last frame; `counts`: (datagrams read, beacons accepted) since the last frame."""
    body = pickle.dumps((entries, drops, counts), protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


def split_frames(buffer: bytearray) -> Iterator[bytes]:
    """Take each whole frame out of `buffer` (a partial one stays). ValueError: not frames."""
    while len(buffer) >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        end = LENGTH.size + size
        if len(buffer) < end:
            return
        body = bytes(buffer[LENGTH.size:end])
        del buffer[:end]
        yield body


def load(body: bytes) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str], int],
                               tuple[int, int]]:
    entries, drops, counts = pickle.loads(body)
    return entries, drops, counts


def report_of(e: tuple[Any, ...]) -> Report:
    """A REPORT entry -> the Report the worker decoded (no checks: they were made)."""
    services = e[8]
    indexed = e[9]
    return _new(Report, (
        _new(Header, (e[1], e[2], e[3], e[4])), e[5], e[6], e[7],
        UNSENT if services is None else tuple([_new(ServiceStatus, s) for s in services]),
        None if indexed is None else _new(IndexedServices, (
            indexed[0], tuple([_new(ServiceStatus, s) for s in indexed[1]]))),
    ))


def beacon_of(e: tuple[Any, ...]) -> Beacon:
    return _new(Beacon, (e[1], e[2], e[3], e[4]))
