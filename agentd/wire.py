"""The wire protocol between agentd (on every node) and ctop (on the director).

One signed UDP datagram per message:

    magic b"CT" | version (1 byte) | msgpack body | HMAC-SHA256 tag (16 bytes, truncated)

The tag covers everything before it (magic, version and body) and is keyed with the cluster
key. Bodies are msgpack maps with short keys to keep a 16-core, 7-service report under 600
bytes; this module maps them to and from plain Python objects with readable names, so nothing
else in the project sees the short keys. Unknown keys are ignored, so old and new agents mix.

Decoding is total: `Verifier.verify(data)` returns either a message or a `Rejected` with a
typed reason; no exception escapes. See docs/protocol.md for the full specification.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgpack
from msgpack import Unpacker as _Unpacker
from msgpack import unpackb as _unpackb

MAGIC = b"CT"
VERSION = 1
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits, as RFC 4868 does for IPsec
HEADER_BYTES = len(MAGIC) + 1
MAX_DATAGRAM = 1200  # never more: stays below any path MTU, so no IP fragmentation
TARGET_REPORT_BYTES = 600
DEFAULT_PORT = 7117
DETAIL_CHARS = 60  # probe detail carried on the wire (only for non-ok results)
TOP_PROCS = 5  # busiest processes per report
PROC_NAME_CHARS = 15  # the kernel's comm length: longer names are cut to it

KIND_JOIN = "j"
KIND_REPORT = "r"
KIND_LEAVE = "l"


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


class ServiceStatus(NamedTuple):
    name: str
    status: str  # "ok" | "warn" | "fail" | "unknown"
    latency_ms: float | None
    detail: str = ""


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


class Report(NamedTuple):
    header: Header
    interval: float
    group: str
    metrics: Mapping[str, Any]  # readable names, see METRICS
    services: tuple[ServiceStatus, ...] = ()


class Leave(NamedTuple):
    header: Header
    reason: str = ""


Message = Join | Report | Leave


class RawReport(NamedTuple):
    """A report that passed every arrival check of `Verifier.verify_deferred` (size, version,
    tag, header fields, interval, staleness, order) but whose metrics and services are not
    decoded nor checked yet: `decode_report` does that, once, when the director folds it into a
    snapshot. Only the director's receiver sees these; `Verifier.verify` never returns one."""

    header: Header
    interval: float
    # The signed msgpack body, still encoded: bytes are not tracked by the cyclic GC, where
    # ~20 decoded containers per node waiting for the tick made young collections cost
    # 100-250 ms a second at 10,000 nodes (docs/performance.md).
    body: bytes


# ---------------------------------------------------------------------------------------------
# Metric table. Scalar metrics travel as one positional list under "v" (no key bytes, and the
# director validates it with one C-level call); lists and maps travel under their own keys.
# Scaled values travel as integers (percent x10, load x100): a msgpack float costs 9 bytes, a
# small int 1-3. The scalar order is append-only: a newer agent appends, an older director
# ignores what it does not know, a newer director reads a shorter list as "not sent".


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    key: str  # wire key for lists and maps; "v" for positional scalars
    scale: int  # multiply before sending; 1 = sent as is
    kind: str  # "num" | "list" (of numbers) | "map" (str -> list of numbers) | "procs"
    unit: str = ""


SCALARS: tuple[Metric, ...] = (
    Metric("cpu_percent", "v", 10, "num", "%"),
    Metric("mem_percent", "v", 10, "num", "%"),
    Metric("mem_used", "v", 1, "num", "B"),
    Metric("mem_total", "v", 1, "num", "B"),
    Metric("swap_percent", "v", 10, "num", "%"),
    Metric("swap_used", "v", 1, "num", "B"),
    Metric("net_rx_bps", "v", 1, "num", "B/s"),
    Metric("net_tx_bps", "v", 1, "num", "B/s"),
    Metric("net_rx_pps", "v", 1, "num", "pkt/s"),
    Metric("net_tx_pps", "v", 1, "num", "pkt/s"),
    Metric("net_rx_bytes", "v", 1, "num", "B"),  # counters since boot, for totals
    Metric("net_tx_bytes", "v", 1, "num", "B"),
    Metric("disk_read_bps", "v", 1, "num", "B/s"),
    Metric("disk_write_bps", "v", 1, "num", "B/s"),
    Metric("disk_root_percent", "v", 10, "num", "%"),
    Metric("users", "v", 1, "num"),
    Metric("tcp_established", "v", 1, "num"),
    Metric("procs", "v", 1, "num"),
    Metric("procs_rss", "v", 1, "num", "B"),
    Metric("threads", "v", 1, "num"),
    Metric("uptime", "v", 1, "num", "s"),
)
COMPOUND: tuple[Metric, ...] = (
    Metric("cpu_cores", "cc", 1, "list", "%"),  # per core, whole percent
    Metric("load", "ld", 100, "list"),  # 1, 5, 15 minutes
    Metric("net_ifaces", "ni", 1, "map", "B/s"),  # name -> [rx_bps, tx_bps, rx_pps, tx_pps]
    Metric("tcp_states", "ts", 1, "map"),  # state name -> [count]
    # [[name, pid, cpu % of one core x 10, rss KiB], ...] busiest first; decodes to TopProcs
    Metric("top_procs", "tp", 10, "procs", "%"),
)
METRICS = SCALARS + COMPOUND
METRIC_BY_NAME = {m.name: m for m in METRICS}
_SCALAR_NAMES = tuple(m.name for m in SCALARS)
_SCALED = tuple((i, m.name, m.scale) for i, m in enumerate(SCALARS) if m.scale != 1)

STATUS_CODES = {"ok": 0, "warn": 1, "fail": 2, "unknown": 3}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}


# ---------------------------------------------------------------------------------------------
# Keys


class KeyError_(Exception):
    """The cluster key file is missing, unreadable, too open or too short."""


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read the cluster key: a file of mode 0600 (or stricter) holding at least 16 bytes.

    Text keys (hex or any printable secret) are used as their stripped bytes.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyError_(
            f"cluster key file {p} does not exist; create one with: "
            f"head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {p} && chmod 600 {p}"
        ) from None
    except OSError as e:
        raise KeyError_(f"cluster key file {p}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(
            f"cluster key file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}"
        )
    try:
        key = p.read_bytes().strip()
    except OSError as e:
        raise KeyError_(f"cluster key file {p}: {e.strerror}") from None
    if len(key) < 16:
        raise KeyError_(f"cluster key file {p} holds {len(key)} bytes; at least 16 are needed")
    return key


def new_boot_id() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1  # fits a signed 64-bit msgpack int


# ---------------------------------------------------------------------------------------------
# Encoding


def _sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]


def seal(key: bytes, body: Mapping[str, Any]) -> bytes:
    payload = MAGIC + bytes((VERSION,)) + msgpack.packb(body, use_bin_type=True)
    return payload + _sign(key, payload)


def _header_body(kind: str, h: Header) -> dict[str, Any]:
    return {"k": kind, "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3)}


def _scaled(m: Metric, value: Any) -> Any:
    if m.kind == "num":
        return _num(value, m.scale)
    if m.kind == "list":
        return [_num(v, m.scale) for v in value]
    if m.kind == "procs":
        return [
            [str(name)[:PROC_NAME_CHARS], _num(pid, 1), _num(cpu, m.scale), _num(rss, 1) >> 10]
            for name, pid, cpu, rss in value[:TOP_PROCS]
        ]
    return {str(k): [_num(v, m.scale) for v in vs] for k, vs in value.items()}


def _seconds(value: float) -> float | int:
    """A whole number of seconds travels as an int: 1 byte instead of a 9-byte float."""
    return int(value) if value == int(value) else value


def _num(value: float | int, scale: int) -> int:
    # Integers on the wire: negative or non-finite values are collector bugs; clamp, never crash.
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0
    return round(value * scale)


def _service_body(s: ServiceStatus, detail_chars: int) -> list[Any]:
    latency = None if s.latency_ms is None else round(s.latency_ms * 10)
    item: list[Any] = [s.name, STATUS_CODES.get(s.status, 3), latency]
    if s.status != "ok" and s.detail and detail_chars > 0:
        item.append(s.detail[:detail_chars])
    return item


def encode(key: bytes, msg: Message) -> bytes:
    """Sign and encode one message. Reports shrink themselves to fit MAX_DATAGRAM."""
    if isinstance(msg, Join):
        body = _header_body(KIND_JOIN, msg.header)
        body.update(
            h=msg.hostname,
            a=list(msg.addresses)[:24],
            cr=msg.cores,
            mt=msg.mem_total,
            v=msg.version,
            i=_seconds(msg.interval),
            g=msg.group,
        )
        return seal(key, body)
    if isinstance(msg, Leave):
        body = _header_body(KIND_LEAVE, msg.header)
        if msg.reason:
            body["r"] = msg.reason[:64]
        return seal(key, body)
    return _encode_report(key, msg)


def _encode_report(key: bytes, msg: Report) -> bytes:
    given = msg.metrics
    metrics: dict[str, Any] = {
        "v": [_num(given.get(m.name, 0), m.scale) for m in SCALARS],
    }
    for m in COMPOUND:
        if m.name in given:
            metrics[m.key] = _scaled(m, given[m.name])
    # Fall-back steps if a report would exceed the datagram bound: drop the top processes,
    # then per-interface detail, then per-state TCP counts, then shorten and finally drop
    # probe details.
    attempts = (
        (DETAIL_CHARS, ()),
        (DETAIL_CHARS, ("tp",)),
        (DETAIL_CHARS, ("tp", "ni")),
        (24, ("tp", "ni", "ts")),
        (0, ("tp", "ni", "ts", "cc")),
    )
    data = b""
    body: dict[str, Any] = {}
    for detail_chars, drop in attempts:
        body = _header_body(KIND_REPORT, msg.header)
        body["i"] = _seconds(msg.interval)
        if msg.group:
            body["g"] = msg.group
        body["m"] = {k: v for k, v in metrics.items() if k not in drop}
        if msg.services is not UNSENT:
            body["s"] = [_service_body(s, detail_chars) for s in msg.services]
        data = seal(key, body)
        if len(data) <= MAX_DATAGRAM:
            return data
    # Only reachable with an absurd number of services: keep the worst ones that fit.
    services = sorted(msg.services, key=lambda s: -STATUS_CODES.get(s.status, 3))
    while len(data) > MAX_DATAGRAM and services:
        services.pop()
        body["s"] = [_service_body(s, 0) for s in services]
        data = seal(key, body)
    return data


# ---------------------------------------------------------------------------------------------
# Decoding


class _BadField(Exception):
    pass


# Decoding runs for every datagram on the director, so the checks below are plain type tests
# rather than a schema library: about 4 µs for a full report instead of 30.
_NUM = (int, float)
_INF = float("inf")


def _need(body: dict[Any, Any], key: str, what: str) -> Any:
    try:
        return body[key]
    except KeyError:
        raise _BadField(f"missing {what} ({key!r})") from None


def _bad(key: str, value: Any) -> _BadField:
    return _BadField(f"field {key!r} has a bad value of type {type(value).__name__}")


def _str(body: dict[Any, Any], key: str, what: str, default: str | None = None) -> str:
    v = body.get(key, default) if default is not None else _need(body, key, what)
    if type(v) is not str:
        raise _bad(key, v)
    return v


def _int(body: dict[Any, Any], key: str, what: str, minimum: int) -> int:
    v = _need(body, key, what)
    if type(v) is not int or v < minimum:
        raise _bad(key, v)
    return v


def _finite(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and -_INF < v < _INF)


def _interval(body: dict[Any, Any]) -> float:
    v = _need(body, "i", "interval")
    if not _finite(v) or not 0.05 <= v <= 3600:
        raise _bad("i", v)
    return float(v)


def _numbers(values: Any) -> bool:
    """True for a list of finite non-negative numbers. Comparisons raise TypeError on
    anything else, NaN fails them, and sum() catches infinities: all in C, no Python loop."""
    if type(values) is not list:
        return False
    return not values or (min(values) >= 0 and sum(values) < _INF)


def _parse_header(body: dict[Any, Any]) -> Header:
    node = _str(body, "n", "node id")
    if not 0 < len(node) <= 128:
        raise _BadField("node id is empty or longer than 128 characters")
    ts = _need(body, "t", "timestamp")
    if not _finite(ts):
        raise _bad("t", ts)
    return Header(node, _int(body, "b", "boot id", -(2**63)), _int(body, "q", "sequence", 0), ts)


# wire key -> (readable name, divisor or 0 when sent unscaled, kind)
_DECODE = {m.key: (m.name, m.scale if m.scale != 1 else 0, m.kind) for m in COMPOUND}


def _parse_metrics(raw: Any) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _BadField("metrics are not a map")
    scalars = raw.get("v", [])
    try:
        if not _numbers(scalars):
            raise TypeError
    except TypeError:
        raise _BadField("scalar metrics are not a list of non-negative numbers") from None
    out: dict[str, Any] = dict(zip(_SCALAR_NAMES, scalars, strict=False))  # versions differ
    n = len(scalars)
    for i, name, scale in _SCALED:
        if i < n:
            out[name] = scalars[i] / scale
    for key, value in raw.items():
        entry = _DECODE.get(key)
        if entry is None:
            continue  # "v", or a newer agent's metric: ignore
        name, scale, kind = entry
        try:
            if kind == "list":
                if not _numbers(value):
                    raise TypeError
                out[name] = [v / scale for v in value] if scale else value
            elif kind == "map":
                if type(value) is not dict:
                    raise TypeError
                for k, vs in value.items():
                    if type(k) is not str or not _numbers(vs):
                        raise TypeError
                out[name] = value
            else:
                out[name] = _top_procs(value, scale)
        except TypeError:
            raise _BadField(f"metric {name} has a value of the wrong type or range") from None
    return out


def _top_procs(value: Any, scale: int) -> list[TopProc]:
    """[[name, pid, cpu, rss KiB, (later additions)...], ...] -> TopProcs; TypeError if bad."""
    if type(value) is not list:
        raise TypeError
    procs = []
    for item in value:
        if (
            type(item) is not list or len(item) < 4
            or type(item[0]) is not str or type(item[1]) is not int
            or not _numbers(item[1:4])
        ):
            raise TypeError
        procs.append((item[0], item[1], item[2] / scale, item[3] * 1024))
    return procs


def _parse_service(item: Any) -> ServiceStatus:
    if type(item) is not list or len(item) < 3:
        raise _BadField("service entry is not [name, status, latency, detail?]")
    name, code, latency = item[0], item[1], item[2]
    if type(name) is not str or type(code) is not int:
        raise _BadField("service entry has a bad name or status")
    if latency is not None:
        try:
            if not 0 <= latency < _INF:
                raise TypeError
        except TypeError:
            raise _BadField(f"service {name} has a bad latency") from None
        latency = latency / 10
    detail = item[3] if len(item) > 3 and type(item[3]) is str else ""
    return ServiceStatus(name, STATUS_NAMES.get(code, "unknown"), latency, detail)


# The fast path for reports, the message the director decodes 10,000 times a second. It
# accepts exactly what the checks above accept and builds the same Report, but inline: in
# CPython a function call costs about as much as the checks themselves, and the reference path
# makes ~40 of them per report. On anything unexpected it returns None, and parse_body runs
# the reference path, which finds the fault and names it.
_tuple_new = tuple.__new__
_SCALAR_COUNT = len(SCALARS)
_LIST_KEYS = {m.key: (m.name, m.scale if m.scale != 1 else 0) for m in COMPOUND
              if m.kind == "list"}
_MAP_KEYS = {m.key: m.name for m in COMPOUND if m.kind == "map"}
_TOP_KEY, _TOP_NAME, _TOP_SCALE = "tp", "top_procs", METRIC_BY_NAME["top_procs"].scale
_UNKNOWN = "unknown"
_SERVICE_CACHE: dict[tuple[Any, ...], ServiceStatus] = {}
SERVICE_CACHE_SIZE = 50_000


def _fast_report(body: dict[Any, Any]) -> Report | None:
    try:
        get = body.get
        node, boot, seq, ts, interval = get("n"), get("b"), get("q"), get("t"), get("i")
        if (
            type(node) is not str or not 0 < len(node) <= 128
            or type(boot) is not int or boot < -(2**63)
            or type(seq) is not int or seq < 0
        ):
            return None
        t = type(ts)
        if not (t is int or (t is float and -_INF < ts < _INF)):
            return None
        t = type(interval)
        if not (t is int or (t is float and -_INF < interval < _INF)):
            return None
        if not 0.05 <= interval <= 3600:
            return None
        group = get("g", "")
        raw = get("m", {})
        services = get("s", UNSENT)
        if type(group) is not str or type(raw) is not dict or type(services) not in (
            list, tuple, _Unsent,
        ):
            return None

        scalars = raw.get("v", [])
        if type(scalars) is not list:
            return None
        # Every number of the report goes into one list, checked once at the end with one
        # min() and one sum() in C (non-negative, no NaN, finite) instead of per list.
        flat = scalars.copy()
        out: dict[str, Any] = dict(zip(_SCALAR_NAMES, scalars, strict=False))
        if len(scalars) >= _SCALAR_COUNT:
            for i, name, scale in _SCALED:
                out[name] = scalars[i] / scale
        else:  # an older agent sent fewer scalars
            n = len(scalars)
            for i, name, scale in _SCALED:
                if i < n:
                    out[name] = scalars[i] / scale
        for key, value in raw.items():
            if key == "v":
                continue
            entry = _LIST_KEYS.get(key)
            if entry is not None:
                if type(value) is not list:
                    return None
                flat += value
                name, scale = entry
                out[name] = [v / scale for v in value] if scale else value
                continue
            mname = _MAP_KEYS.get(key)
            if mname is not None:
                if type(value) is not dict:
                    return None
                for k, vs in value.items():
                    if type(k) is not str or type(vs) is not list:
                        return None
                    flat += vs
                out[mname] = value
                continue
            if key == _TOP_KEY:
                if type(value) is not list:
                    return None
                procs = []
                for item in value:
                    if type(item) is not list:
                        return None
                    name, pid, cpu, rss = item  # ValueError for a newer agent's longer entry
                    if (
                        type(name) is not str or type(pid) is not int or type(rss) is not int
                        or pid < 0 or rss < 0 or not 0 <= cpu < _INF
                    ):
                        return None
                    procs.append((name, pid, cpu / _TOP_SCALE, rss << 10))
                out[_TOP_NAME] = procs

        parsed = []
        cache = _SERVICE_CACHE
        for item in services:
            if type(item) is not list or len(item) < 3 or type(item[1]) is not int:
                return None
            # Results by value: a node's services repeat their names and statuses and
            # latencies come in 0.1 ms steps. The key holds every element, and the status is
            # an exact int (so False cannot stand for 0), so a hit is what parsing would give.
            key = tuple(item)
            status = cache.get(key)
            if status is None:
                name, code, latency = item[0], item[1], item[2]
                if type(name) is not str:
                    return None
                if latency is not None:
                    if not 0 <= latency < _INF:  # TypeError for non-numbers lands below
                        return None
                    latency = latency / 10
                detail = item[3] if len(item) > 3 and type(item[3]) is str else ""
                status = _tuple_new(
                    ServiceStatus, (name, STATUS_NAMES.get(code, _UNKNOWN), latency, detail))
                if len(cache) >= SERVICE_CACHE_SIZE:
                    cache.clear()
                cache[key] = status
            parsed.append(status)
        # min() raises TypeError on anything but numbers; a total far below the float limit
        # means no single list can have summed to infinity either (all terms are >= 0).
        if flat and not (min(flat) >= 0 and sum(flat) < 1e300):
            return None
        return _tuple_new(Report, (
            _tuple_new(Header, (node, boot, seq, ts)),
            float(interval), group, out, tuple(parsed) if services is not UNSENT else UNSENT,
        ))
    except Exception:  # TypeError from comparing or dividing non-numbers, or anything odd
        return None


def parse_body(body: Any) -> Message:
    """Turn a decoded msgpack body into a message. Raises _BadField."""
    if type(body) is not dict:
        raise _BadField("body is not a map")
    if body.get("k") == KIND_REPORT:
        msg = _fast_report(body)
        if msg is not None:
            return msg
    kind = _str(body, "k", "kind")
    header = _parse_header(body)
    if kind == KIND_REPORT:
        services = body.get("s", UNSENT)
        if type(services) not in (list, tuple, _Unsent):
            raise _bad("s", services)
        return Report(
            header,
            _interval(body),
            _str(body, "g", "group", ""),
            _parse_metrics(body.get("m", {})),
            tuple([_parse_service(s) for s in services]) if services is not UNSENT else UNSENT,
        )
    if kind == KIND_JOIN:
        addresses = body.get("a", [])
        if type(addresses) is not list or any(type(a) is not str for a in addresses):
            raise _bad("a", addresses)
        return Join(
            header,
            _str(body, "h", "hostname"),
            tuple(addresses),
            _int(body, "cr", "cores", 1),
            _int(body, "mt", "memory", 0),
            _str(body, "v", "version", ""),
            _interval(body),
            _str(body, "g", "group", ""),
        )
    if kind == KIND_LEAVE:
        return Leave(header, _str(body, "r", "reason", ""))
    raise _BadField(f"unknown kind {kind!r}")


def _decode_body(encoded: bytes) -> Message | Rejected:
    """msgpack body bytes -> a checked message (order not judged), or why not."""
    try:
        body = _unpackb(encoded, raw=False, strict_map_key=False)
    except Exception as e:
        return Rejected(Reason.NOT_MSGPACK, type(e).__name__)
    try:
        return parse_body(body)
    except _BadField as e:
        return Rejected(Reason.BAD_FIELD, str(e))


def decode_report(raw: RawReport) -> Report | Rejected:
    """The deferred half of `Verifier.verify_deferred`: decode and check a report's body.

    The same msgpack decode and field checks `Verifier.verify` runs on a report (through
    `parse_body`), so a body is refused here for the same reasons (`not_msgpack`, `bad_field`),
    plus `bad_field` if its header is not the one checked on arrival (a duplicate key later in
    the map). Total, like `verify`."""
    try:
        msg = _decode_body(raw.body)
    except Exception as e:  # a bug in the checks must not kill the caller's tick
        return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")
    if type(msg) is Rejected:
        return msg
    if type(msg) is not Report or msg.header != raw.header or msg.interval != raw.interval:
        return Rejected(Reason.BAD_FIELD, "report header differs from the one checked")
    return msg


@dataclass(slots=True)
class _NodeClock:
    boot: int
    boot_ts: float  # timestamp of the first accepted message of this boot
    seq: int


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
    _nodes: dict[str, _NodeClock] = field(default_factory=dict)

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
        # hmac.digest is the one-shot C path: no HMAC object per datagram.
        if not hmac.compare_digest(hmac.digest(self.key, payload, "sha256")[:TAG_BYTES], tag):
            return Rejected(Reason.BAD_TAG, "signature does not match the cluster key")
        return self._decode_checked(payload[HEADER_BYTES:])

    def verify_deferred(self, data: bytes) -> Join | Leave | RawReport | Rejected:
        """`verify` for the director's receiver, with a report's body checks left for later.

        Everything that decides whether a datagram is genuine, fresh and in order runs here,
        with the same reasons as `verify`: size, magic, version, tag, msgpack, the header
        fields and the interval, staleness and replay. A report then comes back as a
        `RawReport` holding its decoded body; `decode_report` checks and converts the metrics
        and services (~60 % of `verify`'s Python work) when, and if, they are needed. Joins,
        leaves and any report whose header fails a check take the full `verify` path.
        """
        try:
            return self._verify_deferred(data)
        except Exception as e:  # total, like verify()
            return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")

    def _verify_deferred(self, data: bytes) -> Join | Leave | RawReport | Rejected:
        # The envelope checks of _verify, inline: this runs for every datagram.
        n = len(data)
        if n > MAX_DATAGRAM or n < HEADER_BYTES + TAG_BYTES + 1 or data[:2] != MAGIC \
                or data[2] != VERSION:
            return self._verify(data)  # names the reason
        payload = data[:-TAG_BYTES]
        if not hmac.compare_digest(
            hmac.digest(self.key, payload, "sha256")[:TAG_BYTES], data[-TAG_BYTES:]
        ):
            return Rejected(Reason.BAD_TAG, "signature does not match the cluster key")
        encoded = payload[HEADER_BYTES:]
        # Decode only the header: the encoder writes k, n, b, q, t, i first. Anything else
        # (another order, a short map, bytes that do not decode) takes the full path.
        head: dict[Any, Any] = {}
        try:
            unpacker = _Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(encoded)
            unpack = unpacker.unpack
            for _ in range(min(unpacker.read_map_header(), 6)):
                key = unpack()
                head[key] = unpack()
        except Exception:
            head = {}
        if head.get("k") == KIND_REPORT:
            get = head.get
            node, boot, seq, ts, interval = get("n"), get("b"), get("q"), get("t"), get("i")
            # The header checks of _parse_header and _interval, inline. Anything they would
            # refuse drops to the full path below, which names the fault.
            if (
                type(node) is str and 0 < len(node) <= 128
                and type(boot) is int and boot >= -(2**63)
                and type(seq) is int and seq >= 0
                and (type(ts) is int or (type(ts) is float and -_INF < ts < _INF))
                and (type(interval) is int or (type(interval) is float
                                               and -_INF < interval < _INF))
                and 0.05 <= interval <= 3600
            ):
                return self._check_order(_tuple_new(RawReport, (
                    _tuple_new(Header, (node, boot, seq, ts)), float(interval), encoded)))
        return self._decode_checked(encoded)

    def _decode_checked(self, encoded: bytes) -> Message | Rejected:
        """Body bytes of a genuine datagram -> a fully checked message, or why not."""
        msg = _decode_body(encoded)
        return msg if type(msg) is Rejected else self._check_order(msg)

    def _check_order(self, msg: _Ordered) -> _Ordered | Rejected:
        h = msg.header
        now = self.clock()
        if h.ts < now - self.max_age:
            return Rejected(Reason.STALE, f"{now - h.ts:.1f} s old")
        if h.ts > now + self.max_skew:
            return Rejected(Reason.STALE, f"{h.ts - now:.1f} s in the future")
        known = self._nodes.get(h.node)
        if known is None or (h.boot != known.boot and h.ts > known.boot_ts):
            self._nodes[h.node] = _NodeClock(h.boot, h.ts, h.seq)
            return msg
        if h.boot != known.boot:
            return Rejected(Reason.REPLAY, "message from an earlier boot")
        if h.seq <= known.seq:
            return Rejected(Reason.REPLAY, f"sequence {h.seq} not after {known.seq}")
        known.seq = h.seq
        return msg

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)


def to_plain(msg: Message) -> dict[str, Any]:
    """A JSON-ready dict of a message (for `agentd --once --json` and debugging)."""
    out: dict[str, Any] = {"kind": {Join: "join", Report: "report", Leave: "leave"}[type(msg)]}
    for name, value in msg._asdict().items():
        if name == "header":
            out.update(value._asdict())
        elif name == "services":
            out[name] = [s._asdict() for s in value]
        else:
            out[name] = value
    return out
