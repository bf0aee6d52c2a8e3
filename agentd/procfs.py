"""Cheap Linux readers for the metrics that psutil only offers at a high cost.

psutil.net_connections() maps every socket to its process by scanning /proc/PID/fd of every
process (thousands of readlink calls on a busy real server), and psutil.process_iter() builds a
Process object and reads several files per process. The agent only needs counts, sums and a
short top list, so on Linux it reads the kernel's tables directly; other systems fall back to
psutil (see collect.py).
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections import Counter
from typing import NamedTuple

from agentd.watch import Seen

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
# One C-level findall anchored on the newline beats splitting lines in Python and an unanchored
# pattern (docs/performance.md, "Figures behind constants").
_STATE_RE = re.compile(rb"\n *\d+: \S+ \S+ ([0-9A-F]{2})")
PAGE = _PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", getattr(time, "CLOCK_MONOTONIC", 1))


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


class ProcScan(NamedTuple):
    """One pass over /proc/PID/stat."""

    rss: int  # bytes, sum over all processes
    top: list[tuple[str, int, float, int]]  # (comm, pid, cpu % of one core, rss bytes)
    # comm -> its processes, for the comms in `watch` only (agentd/watch.py)
    watched: dict[bytes, list[Seen]] = {}  # noqa: RUF012 - never mutated, a NamedTuple default
    per_tick: float = 0.0  # CPU % of one core per tick of `Seen.used` over this scan


class ProcScanner:
    """Total resident size and the busiest processes, from one read of /proc/PID/stat each.

    stat holds comm, utime + stime, start time and rss in one line. The kernel formats more
    than for statm, but read with os.open/os.read instead of open() (no buffered file object,
    no fstat) the whole scan costs no more than the statm-only one it replaced (docs/agentd.md,
    "top_procs"): the top list comes with the total.
    CPU shares are tick deltas since the previous scan: the first scan only sets the baseline.
    """

    def __init__(self, top: int = 5, watch: frozenset[bytes] = frozenset()) -> None:
        self.top = top
        self.watch = watch  # comms whose processes the scan hands over (agentd/watch.py)
        self._prev: dict[str, tuple[int, int]] = {}  # pid -> (start time, utime + stime)
        self._prev_at: float | None = None  # CLOCK_BOOTTIME of the previous scan, seconds

    def scan(self, pid_list: list[str] | None = None) -> ProcScan:
        # Boot-time clock: the kernel's process start times count from boot on it.
        now = time.clock_gettime(_BOOTTIME)
        prev, prev_at = self._prev, self._prev_at
        since = -1 if prev_at is None else int(prev_at * _CLK_TCK)
        cur: dict[str, tuple[int, int]] = {}
        rows: list[tuple[int, int, str, bytes]] = []
        watch = self.watch
        watched: dict[bytes, list[Seen]] = {}
        pages = 0
        for pid in pids() if pid_list is None else pid_list:
            try:
                fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
                try:
                    data = os.read(fd, 2048)
                finally:
                    os.close(fd)
                # "pid (comm) state ...": comm may hold spaces and parentheses, so split after
                # the last ")". Fields from there: utime 11, stime 12, starttime 19, rss 21.
                end = data.rindex(b")")
                f = data[end + 2 :].split(maxsplit=22)
                ticks = int(f[11]) + int(f[12])
                start = int(f[19])
                rss = int(f[21])
            except (OSError, ValueError, IndexError):
                continue  # exited since the listing, or not ours to read
            pages += rss
            cur[pid] = (start, ticks)
            old = prev.get(pid)
            if old is not None and old[0] == start:
                used = ticks - old[1]
            elif since >= 0 and start >= since:
                used = ticks  # born since the last scan (or a reused pid): all its time is new
            else:
                used = 0  # no baseline yet
            comm = data[len(pid) + 2 : end]
            rows.append((used, rss, pid, comm))
            if comm in watch:  # one set lookup per process: watching is nearly free
                watched.setdefault(comm, []).append(Seen(pid, start, used, rss, int(f[17])))
        self._prev, self._prev_at = cur, now
        elapsed = now - prev_at if prev_at is not None else 0.0
        # Busiest first; equal (or no) CPU use, as on an idle node or the first scan: largest.
        per_tick = 100.0 / _CLK_TCK / elapsed if elapsed > 0 else 0.0
        top = [
            (comm.decode(errors="replace"), int(pid), used * per_tick, rss * _PAGE)
            for used, rss, pid, comm in heapq.nlargest(self.top, rows)
        ]
        return ProcScan(pages * _PAGE, top, watched, per_tick)
