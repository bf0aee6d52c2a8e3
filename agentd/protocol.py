"""The ctop message format: what both sides of the wire agree on.

One signed UDP datagram per message:

    magic b"CT" | version (1 byte) | msgpack body | HMAC-SHA256 tag (16 bytes, truncated)

The tag covers everything before it (magic, version and body) and is keyed with the cluster
key (or the node's own key, agentd/keys.py). Bodies are msgpack maps with short keys to keep a
16-core, 7-service report under 600 bytes; the messages below are their readable form, and
the metric keys, scales and bounds come from the metric registry (agentd/metrics.py).

The agent's encoding is agentd/encoder.py; the director's verification (decoding, bounds,
replay) is ctop/ingest/. Both import this module and nothing of each other. Liveness beacons
have their own fixed layout (agentd/beacon.py). See docs/protocol.md for the specification.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import msgpack

# The bounds of every number, re-exported with the other limits (agentd/metrics.py says why).
from agentd.metrics import MAX_INT64 as MAX_INT64
from agentd.metrics import MAX_VALUE as MAX_VALUE

MAGIC = b"CT"
VERSION = 1
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits, as RFC 4868 does for IPsec
HEADER_BYTES = len(MAGIC) + 1
MAX_DATAGRAM = 1200  # never more: stays below any path MTU, so no IP fragmentation
TARGET_REPORT_BYTES = 600
DEFAULT_PORT = 7117
DETAIL_CHARS = 60  # probe detail carried on the wire (only for non-ok results)
MAX_PROBES = 16  # probes a join describes (the rest are not mapped to real servers)
PROBE_NAME_CHARS = 64  # of a probe's name in a join
TOP_PROCS = 5  # busiest processes per report
PROC_NAME_CHARS = 15  # the kernel's comm length: longer names are cut to it
# Bounds every decoded field must keep (a violation is `bad_field`): MAX_VALUE and MAX_INT64
# for numbers (agentd/metrics.py says why); strings stay short enough to display.
MAX_CORES = 65536
MAX_TEXT = 255  # hostname, group, version, service names, leave reason
MAX_DETAIL = 255  # probe detail
MAX_ADDRESSES = 64

KIND_JOIN = "j"
KIND_REPORT = "r"
KIND_LEAVE = "l"
# Body keys, in the order the encoder writes them (types and bounds: docs/protocol.md). The
# header comes first and a report's interval right after it: the director's receiver decodes
# only these of a report on arrival (ctop/ingest/verifier.py). Report metrics are keyed by the
# metric registry (agentd/metrics.py).
HEADER_KEYS = ("k", "n", "b", "q", "t")
BODY_KEYS: dict[str, tuple[str, ...]] = {
    KIND_JOIN: ("h", "a", "cr", "mt", "v", "i", "g", "p", "cv"),
    KIND_REPORT: ("i", "g", "m", "s"),
    KIND_LEAVE: ("r",),
}


class Reason(StrEnum):
    """Why a datagram was dropped. The director counts drops by reason."""

    OVERSIZE = "oversize"
    MALFORMED = "malformed"  # too short or not our magic: not a ctop datagram at all
    BAD_VERSION = "bad_version"
    BAD_TAG = "bad_tag"
    NOT_MSGPACK = "not_msgpack"
    BAD_FIELD = "bad_field"
    STALE = "stale"
    REPLAY = "replay"
    UNKNOWN_BOOT = "unknown_boot"  # a liveness beacon of a boot no accepted message announced
    SEQ_JUMP = "seq_jump"  # further ahead than the node could have sent since its last message


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str = ""


# ---------------------------------------------------------------------------------------------
# Messages. NamedTuples rather than dataclasses: immutable, and about five times cheaper to
# build, which matters at 60,000 decoded reports per second on the director.


class Header(NamedTuple):
    """Identity and ordering carried by every message."""

    node: str  # stable node id (defaults to the hostname)
    boot: int  # random per agent start: a new boot id is a restart of the same node
    seq: int  # strictly increasing within one boot
    ts: float  # sender's wall clock, seconds since the epoch


class Join(NamedTuple):
    header: Header
    hostname: str
    addresses: tuple[str, ...]
    cores: int
    mem_total: int
    version: str
    interval: float
    group: str = ""
    probes: tuple[ProbeInfo, ...] = ()  # what each service check checks (director-side checks)
    # The pushed configuration the node runs (agentd/push.py): serial, content hash, pushes it
    # refused. None: an agent from before pushes; (0, "", n): none accepted yet.
    config: ConfigVersion | None = None


class ConfigVersion(NamedTuple):
    serial: int
    digest: str
    refused: int = 0


class ProbeInfo(NamedTuple):
    """A configured probe as the join announces it: enough for the director to map it to a
    real server (by port) and to run the same kind of check itself."""

    name: str
    type: str  # probes/ check type: http, https, tcp, ssh, ...
    port: int | None  # None: no port (command checks)
    interval: float  # seconds between results
    path: str = ""  # http/https only, when not "/"


class ServiceStatus(NamedTuple):
    name: str
    status: str  # "ok" | "warn" | "fail" | "unknown"
    latency_ms: float | None
    detail: str = ""
    # The probe's own result number modulo SEQ_MOD (None: an agent older than this field, or
    # no result yet): the director counts probe results, not reports that repeat one.
    seq: int | None = None


SEQ_MOD = 128  # result numbers wrap here: one msgpack byte on the wire


# One of a node's busiest processes; metric "top_procs" is a list of them, busiest first:
# (name: command name (comm), at most PROC_NAME_CHARS; pid; cpu_percent: share of one core
# over the agent's last two process scans; rss_bytes). Plain tuples, not a NamedTuple: a
# NamedTuple costs the director's decoder 0.15 µs more per entry, and the snapshot codec
# (JSON, msgpack) turns either into a plain list anyway.
TopProc = tuple[str, int, float, int]


class _Unsent(tuple):  # type: ignore[type-arg]
    """The type of UNSENT: an empty tuple that is not the () singleton."""

    __slots__ = ()


# A report's services when it carries none ("s" left out): the agent sends its probe results
# only when they changed, and again every refresh period (docs/protocol.md); the director keeps
# the ones it has. An empty list ("s": []) still means "no probes configured".
UNSENT: tuple[ServiceStatus, ...] = _Unsent()


@functools.lru_cache(maxsize=1024)  # the director names every node's lists from a few
def _digest(names: tuple[str, ...]) -> int:
    return zlib.crc32("\n".join(name[:PROBE_NAME_CHARS] for name in names).encode())


def probe_digest(names: Iterable[str]) -> int:
    """A 32-bit digest of a node's probe names in order: the join's `p` list and an indexed
    service list (`sx`) name the same probes when their digests agree."""
    return _digest(tuple(names))


class IndexedServices(NamedTuple):
    """A report's services by position in the join's probe list, without their names (`sx`):
    the probe names (often URLs) are most of a service list's bytes. The agent's statuses
    carry their names; decoded ones have name "" until the director names them from the
    node's join (`named`)."""

    digest: int
    services: tuple[ServiceStatus, ...]

    def named(self, probe_names: tuple[str, ...]) -> tuple[ServiceStatus, ...] | None:
        """The services with the join's names, or None if that join named other probes."""
        if len(probe_names) != len(self.services) or probe_digest(probe_names) != self.digest:
            return None
        return tuple([_named(s, n) for s, n in zip(self.services, probe_names, strict=True)])


def _named(s: ServiceStatus, name: str) -> ServiceStatus:
    return tuple.__new__(ServiceStatus, (name, *s[1:]))  # _replace costs 3x as much


class Report(NamedTuple):
    header: Header
    interval: float
    group: str
    metrics: Mapping[str, Any]  # readable names, see agentd/metrics.py
    services: tuple[ServiceStatus, ...] = ()
    indexed: IndexedServices | None = None  # with services UNSENT: the list by position


class Leave(NamedTuple):
    header: Header
    reason: str = ""


Message = Join | Report | Leave


class RawReport(NamedTuple):
    """A report that passed every arrival check of `Verifier.verify_deferred` (size, version,
    tag, header fields, interval, staleness, order) but whose metrics and services are not
    checked nor converted yet: `decode_report` does that, once, when the director folds it into
    a snapshot. Only the director's receiver sees these; `Verifier.verify` never returns one."""

    header: Header
    interval: float
    # The signed msgpack body as decoded on arrival (the whole map, decoded once): the fold
    # checks and converts it without decoding the bytes again.
    body: Mapping[str, Any]


STATUS_CODES = {"ok": 0, "warn": 1, "fail": 2, "unknown": 3}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}

# ---------------------------------------------------------------------------------------------
# Signing


def sign(key: bytes, payload: bytes) -> bytes:
    """The tag of a datagram: HMAC-SHA256 of everything before it, truncated."""
    return hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]


def seal(key: bytes, body: Mapping[str, Any]) -> bytes:
    """A complete datagram of a msgpack body: envelope, body, tag."""
    payload = MAGIC + bytes((VERSION,)) + msgpack.packb(body, use_bin_type=True)
    return payload + sign(key, payload)
