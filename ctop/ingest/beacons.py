"""The director's check of liveness beacons (agentd/beacon.py has their layout).

One HMAC and a dict lookup, no msgpack: the receiver's fast path for the datagrams that are
most of its traffic at the default beacon rate.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from agentd.beacon import (
    BEACON_BYTES,
    BEACON_FIELDS,
    BEACON_TAG_BYTES,
    MAX_AHEAD,
    SIGNED_BYTES,
    Beacon,
)
from agentd.protocol import MAGIC, Header, Reason, Rejected
from ctop.ingest.tags import Tagger

TAGGERS_KEPT = 100_000  # keys whose pads are kept (per-node keys: one per node)

_unpack = BEACON_FIELDS.unpack_from
_compare = hmac.compare_digest
_tuple_new = tuple.__new__


@dataclass(slots=True)
class _Boot:
    node: str
    seq: int  # highest sequence number seen of this boot (messages and beacons)
    fresh: float  # receiver time of the last accepted timestamped message of this boot
    tagger: Tagger  # the node's key (per-node keys: the beacon names its node by the boot alone)


@dataclass
class BeaconVerifier:
    """Checks beacons against the boots the director's messages established.

    `note(header, now)` must be called for every message `Verifier` accepted; `verify`
    then accepts a beacon of that boot with a later sequence number while the boot's last
    message is at most `max_age` seconds old. Rejects use the wire's reasons: `malformed`
    (wrong length), `bad_tag`, `unknown_boot` (no accepted message of this boot: the director
    restarted, the node restarted, or an old boot's beacon replayed), `replay` (sequence not
    after the last seen, or impossibly far ahead) and `stale` (no message of the boot for
    `max_age` seconds).
    """

    key: bytes  # the cluster key; in per-node mode `key_for` gives each node's own
    max_age: float = 30.0
    key_for: Callable[[str], bytes] | None = None
    _boots: dict[int, _Boot] = field(default_factory=dict)
    _by_node: dict[str, int] = field(default_factory=dict)
    _taggers: dict[bytes, Tagger] = field(default_factory=dict)

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
        self._boots[h.boot] = _Boot(h.node, h.seq, now, self._tagger(h.node))
        self._by_node[h.node] = h.boot

    def rekey(self, key: bytes) -> None:
        """New keys (SIGHUP): the cluster key, and every known boot's beacons checked with its
        node's key from now (`key_for` already gives the new ones)."""
        self.key = key
        self._taggers.clear()
        for boot in self._boots.values():
            boot.tagger = self._tagger(boot.node)

    def _tagger(self, node: str) -> Tagger:
        key = self.key_for(node) if self.key_for is not None else self.key
        tagger = self._taggers.get(key)
        if tagger is None:  # one per key: the cluster key's is shared by every boot
            if len(self._taggers) >= TAGGERS_KEPT:
                self._taggers.clear()
            tagger = self._taggers[key] = Tagger(key)
        return tagger

    def forget(self, node: str) -> None:
        boot = self._by_node.pop(node, None)
        if boot is not None:
            self._boots.pop(boot, None)

    def verify(self, data: bytes, now: float) -> Beacon | Rejected:
        """Total: a Beacon, or why not. No msgpack, one HMAC."""
        if len(data) != BEACON_BYTES or data[:2] != MAGIC:
            return Rejected(Reason.MALFORMED, f"beacon of {len(data)} bytes")
        # The boot names the node and so its key: look it up before the one HMAC. An
        # unknown boot is refused unsigned-checked; that costs a forger nothing it lacks.
        boot, low, gap_ms = _unpack(data, 3)
        known = self._boots.get(boot)
        if known is None:
            return Rejected(Reason.UNKNOWN_BOOT, f"beacon of boot {boot:x}, no message of it")
        payload = data[:SIGNED_BYTES]
        tag = known.tagger.digest(payload)[:BEACON_TAG_BYTES]
        if not _compare(tag, data[SIGNED_BYTES:]):
            return Rejected(Reason.BAD_TAG, f"beacon signature does not match {known.node}'s key")
        last = known.seq
        seq = (last & ~0xFFFFFFFF) | low
        if seq <= last:
            seq += 1 << 32
        if seq - last > MAX_AHEAD:  # before the last seen (a replay) or absurdly far ahead
            return Rejected(Reason.REPLAY, f"beacon sequence not after {last} ({known.node})")
        if now - known.fresh > self.max_age:
            return Rejected(Reason.STALE, f"beacon of {known.node}: no message for "
                                          f"{now - known.fresh:.0f} s")
        known.seq = seq
        return _tuple_new(Beacon, (known.node, boot, seq, gap_ms / 1000))
