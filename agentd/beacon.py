"""Liveness beacons: a few signed bytes several times a second between full reports.

A report once a second cannot give both a fast and a loss-proof death verdict: at loss p, k
silent intervals in a row happen by chance with probability p^k, so "dead after ~3 s" is
"dead after 3 lost datagrams". Beacons put 4 datagrams into every second (3 beacons and the
report), so the same 2.6 s of silence takes 10 lost in a row (docs/director.md has the sums).

    offset  size  field
    0       2     magic b"CT"
    2       1     b"B" (0x42): a beacon, not a msgpack message (those carry version 1 here)
    3       8     boot id, big-endian (the 63-bit boot id of the agent's messages)
    11      4     sequence number, low 32 bits, big-endian (the agent's one sequence)
    15      2     gap: the longest time in ms until the agent's next datagram (its pattern)
    17      16    tag: HMAC-SHA256 over bytes 0-16 with the node's key (the cluster key, or
                        its per-node key), truncated

33 bytes, no msgpack: the director checks it with one HMAC and a dict lookup.

Beacons carry no node id and no timestamp. The boot id names the node: the director accepts a
beacon only for the boot of a node whose messages (timestamped and replay-checked by
`ctop.ingest.Verifier`) it has accepted in the last `max_age` seconds, and only with a sequence
number after every message of that boot it has seen (beacons and messages share the agent's
sequence). A captured beacon is therefore worthless once a later datagram of its boot got
through, and the boot's freshness comes from its timestamped messages.

This module is the beacon's format and the agent's encoding; the director checks beacons with
`ctop.ingest.BeaconVerifier`.
"""

from __future__ import annotations

import hmac
import struct
from typing import NamedTuple

from agentd.protocol import MAGIC

BEACON_TYPE = 0x42  # byte 2: "B"
BEACON_BYTES = 33
SIGNED_BYTES = 17  # bytes covered by the tag
BEACON_TAG_BYTES = 16
_MAX_GAP_MS = 65_535
# A beacon may run ahead of the last seen message by at most this many sequence numbers (~2^20
# datagrams = days of silence at 5 a second): a 32-bit sequence is extended from the last
# one seen, so a far jump cannot be told from a wrap and is refused.
MAX_AHEAD = 1 << 20
_PREFIX = MAGIC + bytes((BEACON_TYPE,))
BEACON_FIELDS = struct.Struct(">QIH")  # boot, low 32 bits of the sequence, gap ms
_digest = hmac.digest


class Beacon(NamedTuple):
    node: str
    boot: int
    seq: int  # the full sequence number, extended from the low 32 bits on the wire
    gap: float  # seconds until the agent's next datagram at the latest


def encode_beacon(key: bytes, boot: int, seq: int, gap: float) -> bytes:
    """One signed beacon. `gap` is the sender's longest spacing between datagrams (seconds)."""
    gap_ms = max(1, min(_MAX_GAP_MS, round(gap * 1000)))
    payload = _PREFIX + BEACON_FIELDS.pack(boot, seq & 0xFFFFFFFF, gap_ms)
    return payload + _digest(key, payload, "sha256")[:BEACON_TAG_BYTES]


def is_beacon(data: bytes) -> bool:
    """The receiver's one-byte dispatch: byte 2 says beacon (messages carry version 1)."""
    return len(data) > 2 and data[2] == BEACON_TYPE
