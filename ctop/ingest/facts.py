"""Decoding the slow facts of watched processes and ARP (agentd/watch.py, agentd/arpfacts.py).

Both travel rarely (on change, agentd/slowfacts.py), so plain checks are fast enough; every
value is bounded and anything else raises TypeError, which the report decoder turns into
`bad_field` naming the metric (ctop/ingest/decode.py).
"""

from __future__ import annotations

from typing import Any

from agentd.arpfacts import MAX_IFACE_ADDRS, MAX_IFACES
from agentd.metrics import MAX_VALUE
from agentd.protocol import MAX_TEXT
from agentd.watch import MAX_LABEL, MAX_WATCHES


def _count(v: Any, limit: int = MAX_VALUE) -> int:
    if type(v) is not int or not 0 <= v <= limit:
        raise TypeError
    return v


def _optional(v: Any) -> int | None:
    return None if v is None else _count(v)


def watched(value: Any, scale: int, limit: int) -> list[tuple[Any, ...]]:
    """[[label, count, low, high|nil, restarts, cpu, rss KiB, threads, fds|nil], ...] ->
    (label, count, low, high, restarts, cpu_percent, rss_bytes, threads, open_files)."""
    if type(value) is not list or len(value) > MAX_WATCHES:
        raise TypeError
    out = []
    for item in value:
        if type(item) is not list or len(item) < 9:
            raise TypeError
        label = item[0]
        if type(label) is not str or not 0 < len(label) <= MAX_LABEL:
            raise TypeError
        count, low, high = _count(item[1]), _count(item[2]), _optional(item[3])
        if high is not None and high < low:
            raise TypeError
        out.append((label, count, low, high, _count(item[4]), _count(item[5], limit) / scale,
                    _count(item[6]) << 10, _count(item[7]), _optional(item[8])))
    return out


def arp(value: Any) -> list[tuple[Any, ...]]:
    """[[iface, flags, arp_ignore, arp_announce, [address, ...]], ...] -> tuples (a sysctl
    the agent could not read is -1)."""
    if type(value) is not list or len(value) > MAX_IFACES + 1:
        raise TypeError
    out = []
    for item in value:
        if type(item) is not list or len(item) < 5:
            raise TypeError
        iface, flags, ignore, announce, addrs = item[:5]
        if type(iface) is not str or not 0 < len(iface) <= MAX_TEXT or type(addrs) is not list \
                or len(addrs) > MAX_IFACE_ADDRS:
            raise TypeError
        for v in (ignore, announce):
            if type(v) is not int or not -1 <= v <= 255:
                raise TypeError
        if any(type(a) is not str or len(a) > MAX_TEXT for a in addrs):
            raise TypeError
        out.append((iface, _count(flags, 255), ignore, announce, tuple(addrs)))
    return out
