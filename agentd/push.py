"""The director -> agent configuration push (docs/protocol.md, "Configuration push").

The one message that flows the other way: the director sends a node its group's probe set
and watch list, as one signed datagram to the UDP address the node's join came from (the
agent's connected socket, so no listener is opened on the node and only the director's
address:port can reach it). Both sides import this module; neither imports the other's half.

    "CT" | 0x43 ("C") | msgpack body | HMAC-SHA256 tag (16 bytes)

The tag is keyed with the node's *push key*, HMAC-SHA256(push master, label | node id): only
the director holds the push master, each node holds its own push key only, so a node (or a
holder of the cluster key) cannot push to another node. A distinct type byte keeps a push from
ever being read as a report, or a report as a push.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack

from agentd.protocol import MAGIC, MAX_DATAGRAM, TAG_BYTES, sign

PUSH_TYPE = 0x43  # "C": a configuration push; a message carries its version (1) here
PUSH_KEY_LABEL = b"ctop push key v1\0"
MAX_PUSH_ITEMS = 16  # probes (as a join describes at most 16) and watch entries each


class Push(NamedTuple):
    node: str
    group: str
    serial: int  # only a larger serial replaces the running configuration
    digest: str  # the content's hash: what `ctop groups` shows as the version
    ts: float
    probes: tuple[Any, ...]  # agentd.toml probe syntax: URL strings or tables
    watch: tuple[str, ...]


def push_key(master: bytes, node: str) -> bytes:
    """A node's push key, as hex text (what `ctop keys issue NODE --push` prints for its
    push_key_file): only the director's push master derives it."""
    return hmac.new(master, PUSH_KEY_LABEL + node.encode(), hashlib.sha256).hexdigest().encode()


def digest(probes: Sequence[Any], watch: Sequence[str]) -> str:
    """The version of a group's configuration: a hash of its canonical content, so the same
    content is the same version on every director and after restarts."""
    text = json.dumps({"p": list(probes), "w": list(watch)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_push(key: bytes, push: Push) -> bytes:
    body = {"n": push.node, "g": push.group, "cv": push.serial, "h": push.digest,
            "t": round(push.ts, 3), "p": list(push.probes), "w": list(push.watch)}
    payload = MAGIC + bytes((PUSH_TYPE,)) + msgpack.packb(body, use_bin_type=True)
    data = payload + sign(key, payload)
    if len(data) > MAX_DATAGRAM:
        raise ValueError(f"the pushed configuration is {len(data)} bytes; at most "
                         f"{MAX_DATAGRAM} fit in one datagram (fewer or shorter probes)")
    return data


class PushRefused(Exception):
    """Why a push was not applied; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_push(data: bytes) -> bool:
    return len(data) > 3 and data[:2] == MAGIC and data[2] == PUSH_TYPE


def decode_push(key: bytes, data: bytes) -> Push:
    """Check the tag and the fields; raises PushRefused (bad_tag, malformed, bad_field)."""
    if len(data) > MAX_DATAGRAM or len(data) < 3 + TAG_BYTES or not is_push(data):
        raise PushRefused("malformed", f"{len(data)} bytes")
    payload, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    if not hmac.compare_digest(sign(key, payload), tag):
        raise PushRefused("bad_tag", "not signed with this node's push key")
    try:
        body = msgpack.unpackb(payload[3:], raw=False)
    except Exception as e:
        raise PushRefused("malformed", type(e).__name__) from None
    try:
        probes, watch = body["p"], body["w"]
        push = Push(body["n"], body["g"], body["cv"], body["h"], float(body["t"]),
                    tuple(probes), tuple(watch))
    except (KeyError, TypeError, ValueError) as e:
        raise PushRefused("bad_field", str(e)) from None
    if (type(push.node) is not str or type(push.group) is not str
            or type(push.serial) is not int or push.serial < 0 or type(push.digest) is not str
            or type(probes) is not list or type(watch) is not list
            or len(probes) > MAX_PUSH_ITEMS or len(watch) > MAX_PUSH_ITEMS
            or not all(type(w) is str for w in watch)):
        raise PushRefused("bad_field", "a field has the wrong type or size")
    return push
