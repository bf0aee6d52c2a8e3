"""The agent's side of the wire: messages -> signed datagrams.

Reports shrink themselves to fit MAX_DATAGRAM; every number is clamped to its metric's bound
(agentd/metrics.py), so a collector's glitch never gets a node's reports refused. The format is
agentd/protocol.py; the director's checks are ctop/ingest/.
"""

from __future__ import annotations

import math
import os
from typing import Any

from agentd.arpfacts import MAX_IFACE_ADDRS, MAX_IFACES, ArpEntry
from agentd.metrics import ARP, COMPOUND, MAX_VALUE, SCALARS, WATCH, Metric
from agentd.protocol import (
    DETAIL_CHARS,
    KIND_JOIN,
    KIND_LEAVE,
    KIND_REPORT,
    MAX_CORES,
    MAX_DATAGRAM,
    MAX_PROBES,
    MAX_TEXT,
    PROBE_NAME_CHARS,
    PROC_NAME_CHARS,
    SEQ_MOD,
    STATUS_CODES,
    TOP_PROCS,
    UNSENT,
    Header,
    Join,
    Leave,
    Message,
    ProbeInfo,
    Report,
    ServiceStatus,
    seal,
)
from agentd.watch import MAX_LABEL, MAX_WATCHES, Watched


def new_boot_id() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1  # fits a signed 64-bit msgpack int


def _header_body(kind: str, h: Header) -> dict[str, Any]:
    return {"k": kind, "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3)}


def _scaled(m: Metric, value: Any) -> Any:
    limit = m.limit
    if m.kind == "num":
        return _num(value, m.scale, limit)
    if m.kind == "list":
        return [_num(v, m.scale, limit) for v in value]
    if m.kind == WATCH:
        return [_watched_body(w, m) for w in value[:MAX_WATCHES]]
    if m.kind == ARP:
        return [_arp_body(e) for e in value[:MAX_IFACES + 1]]
    if m.kind == "procs":
        return [
            [str(name)[:PROC_NAME_CHARS], _num(pid, 1), _num(cpu, m.scale, limit),
             _num(rss, 1) >> 10]
            for name, pid, cpu, rss in value[:TOP_PROCS]
        ]
    return {str(k)[:MAX_TEXT]: [_num(v, m.scale, limit) for v in vs] for k, vs in value.items()}


def _watched_body(w: Watched, m: Metric) -> list[Any]:
    label, count, low, high, restarts, cpu, rss, threads, fds = w
    return [str(label)[:MAX_LABEL], _num(count, 1), _num(low, 1),
            None if high is None else _num(high, 1), _num(restarts, 1),
            _num(cpu, m.scale, m.limit), _num(rss, 1) >> 10, _num(threads, 1),
            None if fds is None else _num(fds, 1)]


def _sysctl(value: int) -> int:
    return value if isinstance(value, int) and 0 <= value <= 255 else -1  # -1: unknown


def _arp_body(e: ArpEntry) -> list[Any]:
    iface, flags, ignore, announce, addrs = e
    return [str(iface)[:MAX_TEXT], _num(flags, 1, 255), _sysctl(ignore), _sysctl(announce),
            [str(a)[:MAX_TEXT] for a in addrs[:MAX_IFACE_ADDRS]]]


def _seconds(value: float) -> float | int:
    """A whole number of seconds travels as an int: 1 byte instead of a 9-byte float."""
    return int(value) if value == int(value) else value


def _num(value: float | int, scale: int, limit: int = MAX_VALUE) -> int:
    # Integers on the wire: negative or non-finite values are collector bugs, and so is a value
    # past the field's bound (which the director would refuse): clamp, never crash or go mute.
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0
    return min(round(value * scale), limit)


def _service_body(s: ServiceStatus, detail_chars: int) -> list[Any]:
    latency = None if s.latency_ms is None else _num(s.latency_ms, 10)
    item: list[Any] = [s.name[:MAX_TEXT], STATUS_CODES.get(s.status, 3), latency]
    if s.status != "ok" and s.detail and detail_chars > 0:
        item.append(s.detail[:detail_chars])
    if s.seq is not None:  # last, so older directors (which read a str detail at 3) skip it
        item.append(s.seq % SEQ_MOD)
    return item


def _probe_body(p: ProbeInfo) -> list[Any]:
    item: list[Any] = [p.name[:PROBE_NAME_CHARS], p.type[:16], p.port, p.interval]
    if p.path and p.path != "/":
        item.append(p.path[:64])
    return item


def encode(key: bytes, msg: Message) -> bytes:
    """Sign and encode one message. Reports shrink themselves to fit MAX_DATAGRAM."""
    if isinstance(msg, Join):
        body = _header_body(KIND_JOIN, msg.header)
        body.update(
            h=msg.hostname[:MAX_TEXT],
            a=list(msg.addresses)[:24],
            cr=min(max(msg.cores, 1), MAX_CORES),
            mt=_num(msg.mem_total, 1),
            v=msg.version[:MAX_TEXT],
            i=_seconds(msg.interval),
            g=msg.group[:MAX_TEXT],
        )
        if msg.probes:
            body["p"] = [_probe_body(p) for p in msg.probes[:MAX_PROBES]]
        if msg.config is not None:
            body["cv"] = list(msg.config)
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
        "v": [_num(given.get(m.name, 0), m.scale, m.limit) for m in SCALARS],
    }
    for m in COMPOUND:
        if m.name in given:
            metrics[m.key] = _scaled(m, given[m.name])
    # Fall-back steps if a report would exceed the datagram bound: drop the top processes,
    # then per-interface detail, then per-state TCP counts, then shorten and finally drop
    # probe details, then the ARP facts.
    attempts = (
        (DETAIL_CHARS, ()),
        (DETAIL_CHARS, ("tp",)),
        (DETAIL_CHARS, ("tp", "ni")),
        (24, ("tp", "ni", "ts")),
        (0, ("tp", "ni", "ts", "cc")),
        (0, ("tp", "ni", "ts", "cc", "ar")),  # a host with many addressed interfaces
    )
    data = b""
    body: dict[str, Any] = {}
    for detail_chars, drop in attempts:
        body = _header_body(KIND_REPORT, msg.header)
        body["i"] = _seconds(msg.interval)
        if msg.group:
            body["g"] = msg.group[:MAX_TEXT]
        body["m"] = {k: v for k, v in metrics.items() if k not in drop}
        if msg.services is not UNSENT:
            body["s"] = [_service_body(s, detail_chars) for s in msg.services]
        elif msg.indexed is not None:  # by position in the join's probe list: no names
            body["sx"] = [msg.indexed.digest,
                          [_service_body(s, detail_chars)[1:] for s in msg.indexed.services]]
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


def to_plain(msg: Message) -> dict[str, Any]:
    """A JSON-ready dict of a message (for `agentd --once --json` and debugging)."""
    out: dict[str, Any] = {"kind": {Join: "join", Report: "report", Leave: "leave"}[type(msg)]}
    for name, value in msg._asdict().items():
        if name == "header":
            out.update(value._asdict())
        elif name == "services":
            out[name] = [s._asdict() for s in value]
        elif name == "indexed":  # a wire form of the services (never in `--once` output)
            if value is not None:
                out["services"] = [s._asdict() for s in value.services]
        else:
            out[name] = value
    return out
