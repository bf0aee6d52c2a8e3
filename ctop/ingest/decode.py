"""The director's decoding of a signed body: msgpack -> a checked message, or why not.

Every field gets its type and bounds checked (the metric bounds from agentd/metrics.py, the
rest from agentd/protocol.py); a violation is `bad_field`. `parse_body` runs a fast path for
reports (`_fast_report`) and falls back to the reference checks, which name the fault.
`decode_report` is the deferred half of `Verifier.verify_deferred` (ctop/ingest/verifier.py).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import le, truediv
from typing import Any

from msgpack import unpackb as _unpackb

from agentd.metrics import ARP, COMPOUND, MAX_INT64, MAX_VALUE, PROCS, SCALARS, WATCH
from agentd.protocol import (
    KIND_JOIN,
    KIND_LEAVE,
    KIND_REPORT,
    MAX_ADDRESSES,
    MAX_CORES,
    MAX_DETAIL,
    MAX_PROBES,
    MAX_TEXT,
    SEQ_MOD,
    STATUS_NAMES,
    UNSENT,
    ConfigVersion,
    Header,
    IndexedServices,
    Join,
    Leave,
    Message,
    ProbeInfo,
    RawReport,
    Reason,
    Rejected,
    Report,
    ServiceStatus,
    TopProc,
    _Unsent,
)
from ctop.ingest import facts
from ctop.ingest.handoff import unpack_report

# Positional scalars: names, the scaled ones, and their bounds on the wire.
_SCALAR_NAMES = tuple(m.name for m in SCALARS)
_SCALED = tuple((i, m.name, m.scale) for i, m in enumerate(SCALARS) if m.scale != 1)
_SCALAR_LIMITS = tuple(m.limit for m in SCALARS)
# Scalars whose bound is not MAX_VALUE (by position): the fast path checks these one by one.
_BOUNDED_AT = tuple((i, limit) for i, limit in enumerate(_SCALAR_LIMITS) if limit != MAX_VALUE)
_WIDE_AT = tuple(i for i, limit in enumerate(_SCALAR_LIMITS) if limit > MAX_VALUE)

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


def _str(
    body: dict[Any, Any], key: str, what: str, default: str | None = None,
    longest: int = MAX_TEXT,
) -> str:
    v = body.get(key, default) if default is not None else _need(body, key, what)
    if type(v) is not str:
        raise _bad(key, v)
    if len(v) > longest:
        raise _BadField(f"field {key!r} is longer than {longest} characters")
    return v


def _int(body: dict[Any, Any], key: str, what: str, minimum: int, maximum: int) -> int:
    v = _need(body, key, what)
    if type(v) is not int:
        raise _bad(key, v)
    if not minimum <= v <= maximum:
        raise _BadField(f"field {key!r} = {v} is outside {minimum}..{maximum}")
    return v


def _finite(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and -_INF < v < _INF)


def _interval(body: dict[Any, Any]) -> float:
    v = _need(body, "i", "interval")
    if not _finite(v) or not 0.05 <= v <= 3600:
        raise _bad("i", v)
    return float(v)


def _numbers(values: Any, limit: float = MAX_VALUE) -> bool:
    """True for a list of finite numbers in 0..limit. Comparisons raise TypeError on anything
    else, NaN fails them (sum() carries a NaN anywhere to the end): all in C, no Python loop."""
    if type(values) is not list:
        return False
    return not values or (min(values) >= 0 and max(values) <= limit and sum(values) < _INF)


def _scalars_ok(values: list[Any]) -> bool:
    """The positional scalars each within their own metric's bound (extra ones: MAX_VALUE)."""
    return all(map(le, values, _SCALAR_LIMITS)) and (
        len(values) <= _SCALAR_COUNT or max(values[_SCALAR_COUNT:]) <= MAX_VALUE)


def _parse_header(body: dict[Any, Any]) -> Header:
    node = _str(body, "n", "node id")
    if not 0 < len(node) <= 128:
        raise _BadField("node id is empty or longer than 128 characters")
    ts = _need(body, "t", "timestamp")
    if not _finite(ts):
        raise _bad("t", ts)
    return Header(node, _int(body, "b", "boot id", -(2**63), MAX_INT64),
                  _int(body, "q", "sequence", 0, MAX_INT64), ts)


# wire key -> (readable name, divisor or 0 when sent unscaled, kind)
_DECODE = {m.key: (m.name, m.scale if m.scale != 1 else 0, m.kind, m.limit) for m in COMPOUND}


def _parse_metrics(raw: Any) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _BadField("metrics are not a map")
    scalars = raw.get("v", [])
    try:
        if not _numbers(scalars, MAX_INT64) or not _scalars_ok(scalars):
            raise TypeError
    except TypeError:
        raise _BadField("scalar metrics are not a list of numbers within their bounds") from None
    out: dict[str, Any] = dict(zip(_SCALAR_NAMES, scalars, strict=False))  # versions differ
    n = len(scalars)
    for i, name, scale in _SCALED:
        if i < n:
            out[name] = scalars[i] / scale
    for key, value in raw.items():
        entry = _DECODE.get(key)
        if entry is None:
            continue  # "v", or a newer agent's metric: ignore
        name, scale, kind, limit = entry
        try:
            if kind == "list":
                if not _numbers(value, limit):
                    raise TypeError
                out[name] = [v / scale for v in value] if scale else value
            elif kind == "map":
                if type(value) is not dict:
                    raise TypeError
                for k, vs in value.items():
                    if type(k) is not str or len(k) > MAX_TEXT or not _numbers(vs, limit):
                        raise TypeError
                out[name] = value
            elif kind in _FACTS:
                out[name] = _FACTS[kind](value, scale, limit)
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
            or type(item[0]) is not str or len(item[0]) > MAX_TEXT or type(item[1]) is not int
            or not _numbers(item[1:4])
        ):
            raise TypeError
        procs.append((item[0], item[1], item[2] / scale, item[3] * 1024))
    return procs


def _parse_service(item: Any) -> ServiceStatus:
    if type(item) is not list or len(item) < 3:
        raise _BadField("service entry is not [name, status, latency, detail?]")
    name, code, latency = item[0], item[1], item[2]
    if type(name) is not str or type(code) is not int or len(name) > MAX_TEXT \
            or not 0 <= code <= 255:
        raise _BadField("service entry has a bad name or status")
    if len(item) > 3 and type(item[3]) is str and len(item[3]) > MAX_DETAIL:
        raise _BadField(f"service {name} has a detail longer than {MAX_DETAIL} characters")
    if latency is not None:
        try:
            if not 0 <= latency <= MAX_VALUE:
                raise TypeError
        except TypeError:
            raise _BadField(f"service {name} has a bad latency") from None
        latency = latency / 10
    detail = item[3] if len(item) > 3 and type(item[3]) is str else ""
    return ServiceStatus(name, STATUS_NAMES.get(code, "unknown"), latency, detail,
                         _result_seq(item))


def _result_seq(item: list[Any]) -> int | None:
    """The result number: an int after [name, status, latency(, detail)], if any."""
    if len(item) < 4:
        return None
    last = item[-1]
    return last if type(last) is int and 0 <= last < SEQ_MOD else None


def _parse_config_version(item: Any) -> ConfigVersion | None:
    """A join's `cv`: [serial, content hash, pushes refused]; absent from older agents."""
    if item is None:
        return None
    if (type(item) is not list or len(item) < 3 or type(item[0]) is not int
            or not 0 <= item[0] <= MAX_INT64 or type(item[1]) is not str
            or len(item[1]) > MAX_TEXT or type(item[2]) is not int
            or not 0 <= item[2] <= MAX_VALUE):
        raise _bad("cv", item)
    return ConfigVersion(item[0], item[1], item[2])
def _parse_indexed(value: Any) -> IndexedServices:
    """`sx`: [probe digest, [[status, latency, detail?, result?], ...]], by position in the
    join's probe list; the names stay "" until the director names them from the join."""
    if (
        type(value) is not list or len(value) != 2 or type(value[0]) is not int
        or not 0 <= value[0] <= 0xFFFFFFFF or type(value[1]) is not list
        or len(value[1]) > MAX_PROBES or any(type(item) is not list for item in value[1])
    ):
        raise _bad("sx", value)
    return IndexedServices(value[0], tuple([_indexed_status(item) for item in value[1]]))


def _indexed_status(item: list[Any]) -> ServiceStatus:
    """One `sx` entry, by value from the fast path's cache (its key for a name "")."""
    key = ("", *item)
    try:
        status = _SERVICE_CACHE.get(key)
    except TypeError:  # an unhashable element: not a valid entry
        raise _BadField("service entry is not [status, latency, detail?]") from None
    if status is None:
        status = _parse_service(list(key))
        if len(_SERVICE_CACHE) >= SERVICE_CACHE_SIZE:
            _SERVICE_CACHE.clear()
        _SERVICE_CACHE[key] = status
    return status


def _parse_probes(items: Any) -> tuple[ProbeInfo, ...]:
    if type(items) is not list or len(items) > MAX_PROBES:
        raise _bad("p", items)
    out = []
    for item in items:
        if (
            type(item) is not list or len(item) < 4 or type(item[0]) is not str
            or type(item[1]) is not str or not (item[2] is None or type(item[2]) is int)
            or type(item[3]) not in (int, float) or not 0 < item[3] < _INF
        ):
            raise _bad("p", item)
        path = item[4] if len(item) > 4 and type(item[4]) is str else ""
        out.append(ProbeInfo(item[0], item[1], item[2], float(item[3]), path))
    return tuple(out)


# The fast path for reports, the message the director decodes 10,000 times a second. It
# accepts exactly what the checks above accept and builds the same Report, but inline: in
# CPython a function call costs about as much as the checks themselves, and the reference path
# makes ~40 of them per report. On anything unexpected it returns None, and parse_body runs
# the reference path, which finds the fault and names it.
_tuple_new = tuple.__new__
_SCALAR_COUNT = len(SCALARS)
_LIST_KEYS = {m.key: (m.name, m.scale if m.scale != 1 else 0, m.limit) for m in COMPOUND
              if m.kind == "list"}
_MAP_KEYS = {m.key: m.name for m in COMPOUND if m.kind == "map"}
# Slow facts of their own shape (ctop/ingest/facts.py): wire key -> (name, decoder).
_FACTS: dict[str, Callable[[Any, int, int], Any]] = {
    WATCH: facts.watched, ARP: lambda value, _scale, _limit: facts.arp(value)}
_FACT_KEYS = {m.key: (m.name, _FACTS[m.kind], m.scale, m.limit) for m in COMPOUND
              if m.kind in _FACTS}
_TOP = next(m for m in COMPOUND if m.kind == PROCS)  # one such metric: the fast path inlines it
_TOP_KEY, _TOP_NAME, _TOP_SCALE = _TOP.key, _TOP.name, _TOP.scale
_UNKNOWN = "unknown"


def _named_scalars_source() -> str:
    """The source of `_named_scalars(v)`, from the registry: for a list of at least
    _SCALAR_COUNT positional scalars, (None, None) if a bounded one (a percentage, a wide
    counter) is outside 0..its bound, else (the scalars by name in readable units, a new
    list of the scalars that are not wide counters, newer agents' extra ones included)."""
    bounded = " and ".join(f"0 <= v[{i}] <= {limit}" for i, limit in _BOUNDED_AT) or "True"
    named = ", ".join(f"{m.name!r}: v[{i}]" + (f" / {m.scale}" if m.scale != 1 else "")
                      for i, m in enumerate(SCALARS))
    starts, ends = [0, *(i + 1 for i in _WIDE_AT)], [*_WIDE_AT, None]
    kept = " + ".join(f"v[{a}:{'' if b is None else b}]"
                      for a, b in zip(starts, ends, strict=True) if b is None or b > a)
    return (f"def _named_scalars(v):\n"
            f"    if not ({bounded}):\n"
            f"        return None, None\n"
            f"    return {{{named}}}, {kept}\n")


_made: dict[str, Any] = {}
exec(_named_scalars_source(), _made)  # source made above from the registry, not input
_named_scalars: Callable[[list[Any]], tuple[dict[str, Any], list[Any]] | tuple[None, None]] = \
    _made["_named_scalars"]
_SERVICE_CACHE: dict[tuple[Any, ...], ServiceStatus] = {}
SERVICE_CACHE_SIZE = 50_000
_SERVICE_TYPES = (list, tuple, _Unsent)
_NO_METRICS: dict[str, Any] = {}  # read only


def _fast_report(body: dict[Any, Any]) -> Report | None:
    """A report body (a decoded map) -> the Report parse_body would give, or None for the
    reference path (which accepts or names the fault)."""
    try:
        get = body.get
        node, boot, seq, ts, interval = get("n"), get("b"), get("q"), get("t"), get("i")
        if (
            type(node) is not str or not 0 < len(node) <= 128
            or type(boot) is not int or not -(2**63) <= boot <= MAX_INT64
            or type(seq) is not int or not 0 <= seq <= MAX_INT64
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
    except Exception:
        return None
    return _fast_fields(body, _tuple_new(Header, (node, boot, seq, ts)), float(interval))


def _fast_fields(body: dict[Any, Any], header: Header, interval: float) -> Report | None:
    """The report of a body whose header and interval are checked already (`header`,
    `interval`): its group, metrics and services checked and converted, or None."""
    try:
        get = body.get
        group = get("g", "")
        raw = get("m", _NO_METRICS)
        services = get("s", UNSENT)
        if type(group) is not str or len(group) > MAX_TEXT or type(raw) is not dict \
                or type(services) not in _SERVICE_TYPES:
            return None

        scalars = raw.get("v", [])
        if type(scalars) is not list or len(scalars) < _SCALAR_COUNT:
            return None  # an older agent: the reference path
        # The percentages and the wide counters checked against their bounds, and the named
        # metrics made, in one call of code written out from the registry (no loops).
        # Every other number of the report goes into `flat`, checked once at the end with
        # one min() and one sum() in C instead of per list: all >= 0 and a total <=
        # MAX_VALUE (so each is; a NaN fails the comparison). A report whose total is larger
        # takes the reference path, which bounds each value.
        out, flat = _named_scalars(scalars)
        if out is None:
            return None
        for key, value in raw.items():
            if key == "v":
                continue
            entry = _LIST_KEYS.get(key)
            if entry is not None:
                if type(value) is not list:
                    return None
                name, scale, limit = entry
                if limit < MAX_VALUE and value and max(value) > limit:
                    return None
                flat += value
                # map() in C: a list comprehension is a function call per report in 3.11
                out[name] = list(map(truediv, value, repeat(scale))) if scale else value
                continue
            mname = _MAP_KEYS.get(key)
            if mname is not None:
                if type(value) is not dict:
                    return None
                for k, vs in value.items():
                    if type(k) is not str or type(vs) is not list or len(k) > MAX_TEXT:
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
                        or len(name) > MAX_TEXT or not 0 <= pid <= MAX_VALUE
                        or not 0 <= rss <= MAX_VALUE or not 0 <= cpu <= MAX_VALUE
                    ):
                        return None
                    procs.append((name, pid, cpu / _TOP_SCALE, rss << 10))
                out[_TOP_NAME] = procs
                continue
            fact = _FACT_KEYS.get(key)
            if fact is not None:  # sent on change only: a call is cheap enough here
                out[fact[0]] = fact[1](value, fact[2], fact[3])

        parsed = []
        cache = _SERVICE_CACHE
        for item in services:
            if type(item) is not list or len(item) < 3 or type(item[1]) is not int \
                    or not 0 <= item[1] <= 255:
                return None
            # Results by value: a node's services repeat their names and statuses and
            # latencies come in 0.1 ms steps. The key holds every element, and the status is
            # an exact int (so False cannot stand for 0), so a hit is what parsing would give.
            key = tuple(item)
            status = cache.get(key)
            if status is None:
                name, code, latency = item[0], item[1], item[2]
                if type(name) is not str or len(name) > MAX_TEXT:
                    return None
                if latency is not None:
                    if not 0 <= latency <= MAX_VALUE:  # TypeError for non-numbers lands below
                        return None
                    latency = latency / 10
                detail = item[3] if len(item) > 3 and type(item[3]) is str else ""
                if len(detail) > MAX_DETAIL:
                    return None
                status = _tuple_new(
                    ServiceStatus,
                    (name, STATUS_NAMES.get(code, _UNKNOWN), latency, detail, _result_seq(item)))
                if len(cache) >= SERVICE_CACHE_SIZE:
                    cache.clear()
                cache[key] = status
            parsed.append(status)
        # min() raises TypeError on anything but numbers; max() bounds each one, and sum()
        # carries a NaN anywhere in the list to a failed comparison.
        if flat and not (min(flat) >= 0 and sum(flat) <= MAX_VALUE):
            return None
        indexed = None
        if services is UNSENT:
            sx = get("sx")
            if sx is not None:  # only in reports whose probe results changed
                indexed = _parse_indexed(sx)
        return _tuple_new(Report, (
            header, interval, group, out, tuple(parsed) if services is not UNSENT else UNSENT,
            indexed,
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
        sx = body.get("sx")
        return Report(
            header,
            _interval(body),
            _str(body, "g", "group", ""),
            _parse_metrics(body.get("m", {})),
            tuple([_parse_service(s) for s in services]) if services is not UNSENT else UNSENT,
            _parse_indexed(sx) if sx is not None and services is UNSENT else None,
        )
    if kind == KIND_JOIN:
        addresses = body.get("a", [])
        if type(addresses) is not list or len(addresses) > MAX_ADDRESSES or any(
                type(a) is not str or len(a) > MAX_TEXT for a in addresses):
            raise _bad("a", addresses)
        return Join(
            header,
            _str(body, "h", "hostname"),
            tuple(addresses),
            _int(body, "cr", "cores", 1, MAX_CORES),
            _int(body, "mt", "memory", 0, MAX_VALUE),
            _str(body, "v", "version", ""),
            _interval(body),
            _str(body, "g", "group", ""),
            _parse_probes(body.get("p", [])),
            _parse_config_version(body.get("cv")),
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
    """The deferred half of `Verifier.verify_deferred`: check and convert a report's body.

    The body was decoded once on arrival (`raw.body`, the msgpack map) and its header and
    interval checked; here its group, metrics and services get the same checks
    `Verifier.verify` runs (through `parse_body`), so a body is refused here for the same
    reasons (`bad_field`). Total, like `verify`.

    A body that a receiver worker checked and packed (ctop/ingest/handoff.py) is unpacked,
    not checked again."""
    if type(raw.body) is tuple:
        return unpack_report(raw)
    try:
        msg = _fast_fields(raw.body, raw.header, raw.interval)  # type: ignore[arg-type]
        if msg is not None:
            return msg
        msg = parse_body(raw.body)
    except _BadField as e:
        return Rejected(Reason.BAD_FIELD, str(e))
    except Exception as e:  # a bug in the checks must not kill the caller's tick
        return Rejected(Reason.MALFORMED, f"internal: {type(e).__name__}: {e}")
    if type(msg) is not Report or msg.header != raw.header or msg.interval != raw.interval:
        return Rejected(Reason.BAD_FIELD, "report header differs from the one checked")
    return msg
