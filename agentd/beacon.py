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
    17      16    tag: HMAC-SHA256 over bytes 0-16 with the cluster key, truncated

33 bytes, no msgpack: the director checks it with one HMAC and a dict lookup.

Beacons carry no node id and no timestamp. The boot id names the node: the director accepts a
beacon only for the boot of a node whose messages (timestamped and replay-checked by
`wire.Verifier`) it has accepted in the last `max_age` seconds, and only with a sequence
number after every message of that boot it has seen (beacons and messages share the agent's
sequence). A captured beacon is therefore worthless once a later datagram of its boot got
through, and the boot's freshness comes from its timestamped messages.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import NamedTuple

from agentd.wire import MAGIC, Header, Reason, Rejected

BEACON_TYPE = 0x42  # byte 2: "B"
BEACON_BYTES = 33
_SIGNED = 17  # bytes covered by the tag
_TAG = 16
_MAX_GAP_MS = 65_535
# A beacon may run ahead of the last seen message by at most this many sequence numbers (~2^20
# datagrams = days of silence at 5 a second): a 32-bit sequence is extended from the last
# one seen, so a far jump cannot be told from a wrap and is refused.
MAX_AHEAD = 1 << 20
_PREFIX = MAGIC + bytes((BEACON_TYPE,))
_from_bytes = int.from_bytes
_digest = hmac.digest
_compare = hmac.compare_digest


class Beacon(NamedTuple):
    node: str
    boot: int
    seq: int  # the full sequence number, extended from the low 32 bits on the wire
    gap: float  # seconds until the agent's next datagram at the latest


def encode_beacon(key: bytes, boot: int, seq: int, gap: float) -> bytes:
    """One signed beacon. `gap` is the sender's longest spacing between datagrams (seconds)."""
    gap_ms = max(1, min(_MAX_GAP_MS, round(gap * 1000)))
    payload = (
        _PREFIX
        + boot.to_bytes(8, "big")
        + (seq & 0xFFFFFFFF).to_bytes(4, "big")
        + gap_ms.to_bytes(2, "big")
    )
    return payload + _digest(key, payload, "sha256")[:_TAG]


def is_beacon(data: bytes) -> bool:
    """The receiver's one-byte dispatch: byte 2 says beacon (messages carry version 1)."""
    return len(data) > 2 and data[2] == BEACON_TYPE


@dataclass(slots=True)
class _Boot:
    node: str
    seq: int  # highest sequence number seen of this boot (messages and beacons)
    fresh: float  # receiver time of the last accepted timestamped message of this boot


@dataclass
class BeaconVerifier:
    """Checks beacons against the boots the director's messages established.

    `note(header, now)` must be called for every message `wire.Verifier` accepted; `verify`
    then accepts a beacon of that boot with a later sequence number while the boot's last
    message is at most `max_age` seconds old. Rejects use the wire's reasons: `malformed`
    (wrong length), `bad_tag`, `unknown_boot` (no accepted message of this boot: the director
    restarted, the node restarted, or an old boot's beacon replayed), `replay` (sequence not
    after the last seen, or impossibly far ahead) and `stale` (no message of the boot for
    `max_age` seconds).
    """

    key: bytes
    max_age: float = 30.0
    _boots: dict[int, _Boot] = field(default_factory=dict)
    _by_node: dict[str, int] = field(default_factory=dict)

    def note(self, h: Header, now: float) -> None:
        """An accepted message: its boot is current for its node, its sequence seen."""
        known = self._boots.get(h.boot)
        if known is not None and known.node == h.node:
            if h.seq > known.seq:
                known.seq = h.seq
            known.fresh = now
            return
        old = self._by_node.get(h.node)
        if old is not None:
            self._boots.pop(old, None)
        self._boots[h.boot] = _Boot(h.node, h.seq, now)
        self._by_node[h.node] = h.boot

    def forget(self, node: str) -> None:
        boot = self._by_node.pop(node, None)
        if boot is not None:
            self._boots.pop(boot, None)

    def verify(self, data: bytes, now: float) -> Beacon | Rejected:
        """Total: a Beacon, or why not. No msgpack, one HMAC."""
        if len(data) != BEACON_BYTES or data[:2] != MAGIC:
            return Rejected(Reason.MALFORMED, f"beacon of {len(data)} bytes")
        payload = data[:_SIGNED]
        if not _compare(_digest(self.key, payload, "sha256")[:_TAG], data[_SIGNED:]):
            return Rejected(Reason.BAD_TAG, "beacon signature does not match the cluster key")
        boot = _from_bytes(data[3:11], "big")
        known = self._boots.get(boot)
        if known is None:
            return Rejected(Reason.UNKNOWN_BOOT, f"beacon of boot {boot:x}, no message of it")
        last = known.seq
        seq = (last & ~0xFFFFFFFF) | _from_bytes(data[11:15], "big")
        if seq <= last:
            seq += 1 << 32
        if seq - last > MAX_AHEAD:  # before the last seen (a replay) or absurdly far ahead
            return Rejected(Reason.REPLAY, f"beacon sequence not after {last} ({known.node})")
        if now - known.fresh > self.max_age:
            return Rejected(Reason.STALE, f"beacon of {known.node}: no message for "
                                          f"{now - known.fresh:.0f} s")
        known.seq = seq
        return Beacon(known.node, boot, seq, _from_bytes(data[15:17], "big") / 1000)
