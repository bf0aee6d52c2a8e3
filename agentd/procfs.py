"""Cheap Linux readers for the metrics that psutil only offers at a high cost.

psutil.net_connections() maps every socket to its process by scanning /proc/PID/fd of every
process (thousands of readlink calls on a busy real server), and psutil.process_iter() builds a
Process object and reads several files per process. The agent only needs counts and sums, so on
Linux it reads the kernel's tables directly; other systems fall back to psutil (see collect.py).
"""

from __future__ import annotations

import os
import re
from collections import Counter

LINUX = os.path.isdir("/proc/self") and os.path.exists("/proc/net/tcp")

# Kernel TCP state numbers (include/net/tcp_states.h) -> short readable names for the wire.
TCP_STATES = {
    0x01: "established",
    0x02: "syn_sent",
    0x03: "syn_recv",
    0x04: "fin_wait1",
    0x05: "fin_wait2",
    0x06: "time_wait",
    0x07: "close",
    0x08: "close_wait",
    0x09: "last_ack",
    0x0A: "listen",
    0x0B: "closing",
    0x0C: "new_syn_recv",
}

# In /proc/net/tcp{,6} the state is the 4th field of each line ("sl: local remote st ...").
# One C-level findall anchored on the newline is about 5 times faster than splitting lines in
# Python and 6 times faster than an unanchored pattern (0.5 ms for 2,000 sockets).
_STATE_RE = re.compile(rb"\n *\d+: \S+ \S+ ([0-9A-F]{2})")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tcp_states(paths: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> dict[str, int]:
    """Count TCP sockets by state over IPv4 and IPv6 (a missing file, e.g. no IPv6, is skipped)."""
    counts: Counter[bytes] = Counter()
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        counts.update(_STATE_RE.findall(data))
    out: dict[str, int] = {}
    for code, n in counts.items():
        name = TCP_STATES.get(int(code, 16), f"state_{int(code, 16)}")
        out[name] = n
    return out


def pids() -> list[str]:
    """Process ids as they appear in /proc (kernel threads included, like psutil.pids())."""
    return [name for name in os.listdir("/proc") if name.isdigit()]


def threads_total() -> int:
    """All scheduling entities (threads of all processes) from /proc/loadavg's 4th field."""
    with open("/proc/loadavg", "rb") as f:
        fields = f.read().split()
    return int(fields[3].partition(b"/")[2])


def rss_total(pid_list: list[str] | None = None) -> int:
    """Sum of resident set sizes of all processes, in bytes, from /proc/PID/statm.

    statm is the cheapest per-process file (the kernel formats seven numbers); processes that
    exit during the scan or that we may not read are skipped.
    """
    pages = 0
    for pid in pids() if pid_list is None else pid_list:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                pages += int(f.read().split(maxsplit=2)[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages * _PAGE
