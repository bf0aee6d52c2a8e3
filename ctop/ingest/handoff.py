"""What a receiver worker hands the engine: verified messages in compact batches, each
report's body checked and converted but packed, for the engine to unpack when it folds it.

A worker (ctop/ingest/worker.py) checks each datagram completely (tag, header, age, order,
and a report's body with `decode_report`) and sends the engine one frame every
`FLUSH_EVERY` seconds: a 4-byte length and a pickle of `(entries, drops, counts, keys)`.

A report's entry carries its header fields as builtins and its checked body packed apart
(`pack_body`: `marshal`, format 2, of the Report's group, metric values, services and
indexed services, ServiceStatus as plain tuples). The engine hands the report to
`ClusterModel.apply` as a `RawReport` whose body is `(keys, packed)`: like the in-process
receiver's deferred bodies, it is unpacked only when the model folds the node's newest body
in (`unpack_report`, through `decode_report`), so of the reports a node sends between two
folds only the newest costs the engine more than its header. Unpacking is one
`marshal.loads` (C) and one `dict(zip(...))` with the metric names as shared strings: a
worker sends each set of metric names once (`keys`: (id, names) new in this frame), and its
reports name theirs by that id. No check or conversion runs again in the engine
(docs/performance.md, "Receiver processes").

The format does not depend on what the metrics hold: a dict of builtins takes the names
table; anything else marshals as it is, and what marshal cannot hold is pickled.

The channel is a private socketpair between the engine and a child it started, so pickle and
marshal read only what our own worker wrote; a frame that does not load is counted and dropped,
a body that does not unpack is refused at the fold (`malformed`) like a bad body in-process.
"""

from __future__ import annotations

import marshal
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
    RawReport,
    Reason,
    Rejected,
    Report,
    ServiceStatus,
)

FLUSH_EVERY = 0.05  # seconds a worker holds accepted messages before sending them on
FLUSH_ENTRIES = 2048  # ...or this many, whichever comes first (a frame stays ~1 MiB)
LENGTH = struct.Struct("!I")
MAX_FRAME = 64 << 20  # a length past this is a broken stream, not a frame

# Entry kinds (the first field of each entry).
REPORT = 0  # (REPORT, node, boot, seq, ts, interval, source, now, keys_id, packed)
BEACON = 1  # (BEACON, node, boot, seq, gap, source, now)
OTHER = 2  # (OTHER, join_or_leave, source, now, (addr, port))

# keys_id of a body without a names table: its metrics marshalled as they are, or the
# whole body pickled (something marshal cannot hold).
AS_IS = -1
PICKLED = -2
MAX_KEY_SETS = 4096  # names tables a worker keeps; past that, bodies go AS_IS

_new = tuple.__new__
_loads = marshal.loads
# Format 2: no back-references; for these small bodies of distinct values about half the
# cost of format 4 to dump and a third less to load (bench/ingest_workers.py --stages).
MARSHAL_VERSION = 2


def _dumps(value: Any) -> bytes:
    return marshal.dumps(value, MARSHAL_VERSION)


class Packer:
    """A worker's side of the body format: its metric-names tables (each sent once)."""

    def __init__(self) -> None:
        self.key_ids: dict[tuple[str, ...], int] = {}
        self.new_keys: list[tuple[int, tuple[str, ...]]] = []  # since the last frame

    def report_entry(self, msg: Report, source: str, now: float) -> tuple[Any, ...]:
        h = msg.header
        kid, packed = self.pack_body(msg)
        return (REPORT, h.node, h.boot, h.seq, h.ts, msg.interval, source, now, kid, packed)

    def pack_body(self, msg: Report) -> tuple[int, bytes]:
        services = msg.services
        indexed = msg.indexed
        flat_services = None if services is UNSENT else tuple(map(tuple, services))
        flat_indexed = None if indexed is None else (
            indexed.digest, tuple(map(tuple, indexed.services)))
        metrics = msg.metrics
        kid = AS_IS
        values: Any = metrics
        if type(metrics) is dict:
            names = tuple(metrics)
            found = self.key_ids.get(names)
            if found is None and len(self.key_ids) < MAX_KEY_SETS:
                found = self.key_ids[names] = len(self.key_ids)
                self.new_keys.append((found, names))
            if found is not None:
                kid, values = found, tuple(metrics.values())
        try:
            return kid, _dumps((msg.group, values, flat_services, flat_indexed))
        except ValueError:  # not builtins only (a newer metric's own type)
            return PICKLED, pickle.dumps((msg.group, metrics, flat_services, flat_indexed),
                                         protocol=pickle.HIGHEST_PROTOCOL)

    def taken(self) -> list[tuple[int, tuple[str, ...]]]:
        """The names tables new since the last frame, for the next frame."""
        new, self.new_keys = self.new_keys, []
        return new


def beacon_entry(b: Beacon, source: str, now: float) -> tuple[Any, ...]:
    return (BEACON, b.node, b.boot, b.seq, b.gap, source, now)


def other_entry(msg: Join | Leave, source: str, now: float,
                addr: tuple[str, int]) -> tuple[Any, ...]:
    return (OTHER, msg, source, now, addr[:2])


def frame(entries: list[tuple[Any, ...]], drops: dict[tuple[str, str], int],
          counts: tuple[int, int], keys: list[tuple[int, tuple[str, ...]]]) -> bytes:
    """One length-prefixed frame. `drops`: (reason, source) -> datagrams refused since the
    last frame; `counts`: (datagrams read, beacons accepted) since the last frame; `keys`:
    the metric-names tables the entries use for the first time."""
    body = pickle.dumps((entries, drops, counts, keys), protocol=pickle.HIGHEST_PROTOCOL)
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
                               tuple[int, int], list[tuple[int, tuple[str, ...]]]]:
    entries, drops, counts, keys = pickle.loads(body)
    return entries, drops, counts, keys


def raw_report(e: tuple[Any, ...], names: dict[int, tuple[str, ...]]) -> RawReport:
    """A REPORT entry -> the RawReport the engine applies; its body stays packed, with the
    names table it needs (an unknown id is kept as is: the fold refuses it)."""
    kid = e[8]
    return _new(RawReport, (_new(Header, (e[1], e[2], e[3], e[4])), e[5],
                            (names.get(kid, kid) if kid >= 0 else kid, e[9])))


def is_packed(body: Any) -> bool:
    return type(body) is tuple


def unpack_report(raw: RawReport) -> Report | Rejected:
    """The Report a worker checked, from a `raw_report`'s body (no check runs again). Total:
    a body that does not unpack (a worker bug) is refused, never raised."""
    try:
        keys, packed = raw.body  # type: ignore[misc]
        if type(keys) is tuple:
            group, values, services, indexed = _loads(packed)
            metrics = dict(zip(keys, values, strict=True))
        elif keys == AS_IS:
            group, metrics, services, indexed = _loads(packed)
        elif keys == PICKLED:
            group, metrics, services, indexed = pickle.loads(packed)
        else:
            return Rejected(Reason.MALFORMED, f"internal: unknown metric names table {keys}")
        return _new(Report, (
            raw.header, raw.interval, group, metrics,
            UNSENT if services is None else tuple([_new(ServiceStatus, s) for s in services]),
            None if indexed is None else _new(IndexedServices, (
                indexed[0], tuple([_new(ServiceStatus, s) for s in indexed[1]]))),
        ))
    except Exception as e:
        return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")


def beacon_of(e: tuple[Any, ...]) -> Beacon:
    return _new(Beacon, (e[1], e[2], e[3], e[4]))
