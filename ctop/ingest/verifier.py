"""The director's verification of datagrams: envelope, tag, body, freshness and order.

`Verifier.verify` checks everything and returns a fully parsed message; the receiver uses
`verify_deferred`, which leaves a report's body for `decode_report` at the tick
(docs/protocol.md, "Deferred body checks"). Total: any byte string yields a message or a
`Rejected` with its reason.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from msgpack import Unpacker as _Unpacker
from msgpack import unpackb as _unpackb

from agentd.keys import node_key
from agentd.metrics import MAX_INT64
from agentd.protocol import (
    HEADER_BYTES,
    KIND_REPORT,
    MAGIC,
    MAX_DATAGRAM,
    TAG_BYTES,
    VERSION,
    Header,
    Join,
    Leave,
    Message,
    RawReport,
    Reason,
    Rejected,
    Report,
)
from ctop.ingest.decode import _INF, _BadField, _decode_body, _tuple_new, parse_body
from ctop.ingest.tags import Tagger

_compare = hmac.compare_digest
_SMALLEST = HEADER_BYTES + TAG_BYTES + 1  # bytes of the shortest datagram that can be genuine


@dataclass(slots=True)
class _NodeClock:
    boot: int
    boot_ts: float  # timestamp of the first accepted message of this boot
    seq: int
    at: float = 0.0  # receiver's clock when the last message was accepted


# How far a sequence may move ahead of the last accepted one: SEQ_SLACK, plus SEQ_RATE for
# every second since then (an agent sends a few messages a second; a partition of an hour at
# 100/s is 360,000). Past it the message is refused (`seq_jump`): one forged datagram can no
# longer pin a node's sequence at 2^63-1 and silence it until its agent restarts.
SEQ_RATE = 100
SEQ_SLACK = 100
NODE_KEYS_CACHED = 100_000  # derived per-node keys kept (a flood of invented ids clears it)


class Mark(NamedTuple):
    """A node's replay high-water mark, as the director persists it across restarts."""

    node: str
    boot: int
    boot_ts: float
    seq: int
    at: float


_Ordered = TypeVar("_Ordered", Join, Report, Leave, RawReport)


@dataclass
class Verifier:
    """Checks datagrams for one cluster key and remembers what each node sent last.

    A message is accepted when it is well formed, correctly signed, not older than `max_age`
    seconds against the receiver's clock (nor further ahead than `max_skew`), and its sequence
    number is newer than the last accepted one of the same boot. A different boot id is
    accepted only if it is newer than the boot we know, so an old boot cannot be replayed.
    """

    key: bytes
    max_age: float = 30.0
    max_skew: float = 30.0
    clock: Callable[[], float] = time.time
    # Per-node mode: the master secret each node's key is derived from (`node_key`); the
    # cluster key is then not accepted. None: one cluster key for every node.
    master: bytes | None = None
    # Each node's replay high-water mark (its boot and last accepted sequence), by node id:
    # what `check_order` judges against. Read by the engine to seed receiver workers.
    nodes: dict[str, _NodeClock] = field(default_factory=dict)
    _node_keys: dict[str, bytes] = field(default_factory=dict)
    _taggers: dict[bytes, Tagger] = field(default_factory=dict)  # by key
    # Nodes whose boot changed (or that are new) since the last `marks(changed_only=True)`.
    _new_boots: set[str] = field(default_factory=set)

    def verify(self, data: bytes) -> Message | Rejected:
        try:
            return self._verify(data)
        except Exception as e:  # decoding is total: a bug here must still not kill the receiver
            return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")

    def _verify(self, data: bytes) -> Message | Rejected:
        n = len(data)
        if n > MAX_DATAGRAM:
            return Rejected(Reason.OVERSIZE, f"{n} bytes")
        if n < HEADER_BYTES + TAG_BYTES + 1 or data[:2] != MAGIC:
            return Rejected(Reason.MALFORMED, "not a ctop datagram")
        if data[2] != VERSION:
            return Rejected(Reason.BAD_VERSION, f"version {data[2]}")
        payload, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        key = self.key if self.master is None else self._key_of(payload)
        if key is None or not self._signed(key, payload, tag):
            return Rejected(Reason.BAD_TAG, self._tag_problem())
        return self._decode_checked(payload[HEADER_BYTES:])

    def _signed(self, key: bytes, payload: bytes, tag: bytes) -> bool:
        """`tag` is `payload`'s under `key`. A key's pads are hashed once (ctop/ingest/tags.py)
        and kept only once a datagram was signed with it: forged node ids (per-node keys)
        must not fill the cache, so an unknown key is checked the one-shot way."""
        tagger = self._taggers.get(key)
        if tagger is not None:
            return hmac.compare_digest(tagger.digest(payload)[:TAG_BYTES], tag)
        if not hmac.compare_digest(hmac.digest(key, payload, "sha256")[:TAG_BYTES], tag):
            return False
        if len(self._taggers) >= NODE_KEYS_CACHED:
            self._taggers.clear()
        self._taggers[key] = Tagger(key)
        return True

    def _tag_problem(self) -> str:
        if self.master is None:
            return "signature does not match the cluster key"
        return "signature does not match the node's key (ctop keys issue NODE)"

    def _key_of(self, payload: bytes) -> bytes | None:
        """Per-node mode: the key of the node id the body names (read before the tag is
        checked: a wrong id simply fails the check). None if the body names no node."""
        try:
            unpacker = _Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(payload[HEADER_BYTES:])
            node = None
            for _ in range(min(unpacker.read_map_header(), 8)):
                k = unpacker.unpack()
                v = unpacker.unpack()
                if k == "n":
                    node = v
                    break
        except Exception:
            return None
        if type(node) is not str or not 0 < len(node) <= 128:
            return None
        return self.key_for(node)

    def key_for(self, node: str) -> bytes:
        """The key a datagram of `node` must be signed with: the cluster key, or in per-node
        mode that node's derived key (cached). For checks that know the node another way,
        e.g. a liveness beacon by its boot id."""
        if self.master is None:
            return self.key
        key = self._node_keys.get(node)
        if key is None:
            if len(self._node_keys) >= NODE_KEYS_CACHED:
                self._node_keys.clear()
            key = self._node_keys[node] = node_key(self.master, node)
        return key

    def verify_deferred(self, data: bytes) -> Join | Leave | RawReport | Rejected:
        """`verify` for the director's receiver, with a report's body checks left for later.

        Everything that decides whether a datagram is genuine, fresh and in order runs here,
        with the same reasons as `verify`: size, magic, version, tag, msgpack, the header
        fields and the interval, staleness and replay. A report then comes back as a
        `RawReport` holding its decoded body; `decode_report` checks and converts the metrics
        and services (~60 % of `verify`'s Python work) when, and if, they are needed. Joins,
        leaves and any report whose header fails a check take the full `verify` path.
        """
        # One function, no helper calls on the way of a genuine, in-order report: it runs for
        # every datagram (docs/performance.md, "Distinct nodes").
        try:
            n = len(data)
            if n > MAX_DATAGRAM or n < _SMALLEST or data[:2] != MAGIC or data[2] != VERSION:
                return self._verify(data)  # names the reason
            payload = data[:-TAG_BYTES]
            key = self.key if self.master is None else self._key_of(payload)
            tagger = self._taggers.get(key)  # type: ignore[arg-type]
            if tagger is not None:
                if not _compare(tagger.digest(payload)[:TAG_BYTES], data[-TAG_BYTES:]):
                    return Rejected(Reason.BAD_TAG, self._tag_problem())
            elif key is None or not self._signed(key, payload, data[-TAG_BYTES:]):
                return Rejected(Reason.BAD_TAG, self._tag_problem())
            # One decode of the whole body, kept in the RawReport: the fold (decode_report)
            # checks and converts the decoded map and never decodes these bytes again.
            try:
                body = _unpackb(payload[HEADER_BYTES:], strict_map_key=False)
            except Exception as e:
                return Rejected(Reason.NOT_MSGPACK, type(e).__name__)
            if type(body) is dict and body.get("k") == KIND_REPORT:
                get = body.get
                node, boot, seq, ts, interval = get("n"), get("b"), get("q"), get("t"), get("i")
                # The header checks of _parse_header and _interval, inline. Anything they
                # would refuse drops to the full path below, which names the fault.
                if (
                    type(node) is str and 0 < len(node) <= 128
                    and type(boot) is int and -(2**63) <= boot <= MAX_INT64
                    and type(seq) is int and 0 <= seq <= MAX_INT64
                    and (type(ts) is int or (type(ts) is float and -_INF < ts < _INF))
                    and (type(interval) is int or (type(interval) is float
                                                   and -_INF < interval < _INF))
                    and 0.05 <= interval <= 3600
                ):
                    raw = _tuple_new(RawReport, (
                        _tuple_new(Header, (node, boot, seq, ts)), float(interval), body))
                    # check_order's common case inline: fresh, same boot, the next sequence
                    # numbers. Anything else (new node or boot, stale, replay, jump) goes
                    # through check_order, which decides it and names the reason.
                    now = self.clock()
                    known = self.nodes.get(node)
                    if (
                        known is not None and boot == known.boot and seq > known.seq
                        and now - self.max_age <= ts <= now + self.max_skew
                        and seq - known.seq <= SEQ_SLACK + SEQ_RATE * (now - known.at)
                    ):
                        known.seq = seq
                        known.at = now
                        return raw
                    return self.check_order(raw)
            try:
                msg = parse_body(body)
            except _BadField as e:
                return Rejected(Reason.BAD_FIELD, str(e))
            return self.check_order(msg)
        except Exception as e:  # total, like verify()
            return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")

    def _decode_checked(self, encoded: bytes) -> Message | Rejected:
        """Body bytes of a genuine datagram -> a fully checked message, or why not."""
        msg = _decode_body(encoded)
        return msg if type(msg) is Rejected else self.check_order(msg)

    def check_order(self, msg: _Ordered) -> _Ordered | Rejected:
        """`msg` if it is fresh and in order for its node, else why not (`stale`, `replay`,
        `seq_jump`); accepting it moves the node's mark. Every verify path ends here, and
        the engine judges receiver workers' messages with it again (ctop/ingest/workers.py):
        only this verifier's marks persist."""
        h = msg.header
        now = self.clock()
        if h.ts < now - self.max_age:
            return Rejected(Reason.STALE, f"{now - h.ts:.1f} s old")
        if h.ts > now + self.max_skew:
            return Rejected(Reason.STALE, f"{h.ts - now:.1f} s in the future")
        known = self.nodes.get(h.node)
        if known is None or (h.boot != known.boot and h.ts > known.boot_ts):
            self.nodes[h.node] = _NodeClock(h.boot, h.ts, h.seq, now)
            self._new_boots.add(h.node)
            return msg
        if h.boot != known.boot:
            return Rejected(Reason.REPLAY, "message from an earlier boot")
        if h.seq <= known.seq:
            return Rejected(Reason.REPLAY, f"sequence {h.seq} not after {known.seq}")
        if h.seq - known.seq > SEQ_SLACK + SEQ_RATE * (now - known.at):
            return Rejected(Reason.SEQ_JUMP, f"sequence {h.seq} jumps from {known.seq}")
        known.seq = h.seq
        known.at = now
        return msg

    def forget(self, node: str) -> None:
        self.nodes.pop(node, None)

    # -- persistence of the replay state (the director keeps it in its database) ----------

    def marks(self, *, changed_only: bool = False) -> list[Mark]:
        """Each node's high-water mark; `changed_only`: only nodes that are new or restarted
        since the last such call (cheap enough for every tick)."""
        nodes = self.nodes
        if changed_only:
            names, self._new_boots = self._new_boots, set()
            return [Mark(n, c.boot, c.boot_ts, c.seq, c.at)
                    for n in names if (c := nodes.get(n)) is not None]
        self._new_boots = set()
        return [Mark(n, c.boot, c.boot_ts, c.seq, c.at) for n, c in nodes.items()]

    def urgent(self, node: str) -> None:
        """Save this node's mark at the next `marks(changed_only=True)` (e.g. it left)."""
        self._new_boots.add(node)

    def restore(self, marks: list[Mark]) -> None:
        """Start from persisted marks: nothing at or below them is accepted after a restart."""
        for m in marks:
            if m.node not in self.nodes:
                self.nodes[m.node] = _NodeClock(m.boot, m.boot_ts, m.seq, m.at)

