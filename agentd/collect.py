"""Sample the node: one metrics dict per report, named as in agentd/metrics.py (the registry)."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from agentd import arpfacts, procfs
from agentd.cadence import Cadence
from agentd.protocol import PROC_NAME_CHARS, TOP_PROCS, TopProc
from agentd.rates import RateMeter, busy_percent
from agentd.watch import Watched, Watcher, WatchSpec

MAX_IFACES = 4  # per-interface detail for the busiest few only: reports must stay small
EXCLUDED_IFACES = frozenset({"lo"})


class Slow(NamedTuple):
    """Readings refreshed on their own cadence rather than every report."""

    procs_rss: int
    top_procs: list[TopProc]
    users: int
    disk_root_percent: float
    watched: list[Watched]
    arp: list[arpfacts.ArpEntry]


def _cpu_split(t: Any) -> tuple[float, float]:
    """(idle seconds, total seconds) of one psutil cpu_times entry.

    guest and guest_nice are already counted in user and nice on Linux, so they are left out
    of the total (as psutil.cpu_percent does); iowait is idle time.
    """
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return t.idle + getattr(t, "iowait", 0.0), total


def _tcp_states_psutil() -> dict[str, int]:
    # Fallback off Linux only: psutil.net_connections maps each socket to its process by
    # scanning every process's file descriptors, which costs far more than the count we need.
    counts: dict[str, int] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return counts
    for c in conns:
        if c.status and c.status != psutil.CONN_NONE:
            name = c.status.lower()
            counts[name] = counts.get(name, 0) + 1
    return counts


def _procs_psutil() -> tuple[int, int]:
    return len(psutil.pids()), sum(
        p.info["num_threads"] or 0 for p in psutil.process_iter(["num_threads"])
    )


class _PsutilProcs:
    """procfs.ProcScanner off Linux: the same total and top list from psutil.process_iter."""

    def __init__(self, top: int) -> None:
        self.top = top
        self._prev: dict[int, tuple[float, float]] = {}  # pid -> (create time, cpu seconds)
        self._prev_at: float | None = None  # monotonic time of the previous scan
        self._prev_wall = 0.0  # and its wall clock time, as create_time uses

    def scan(self) -> procfs.ProcScan:
        now, wall = time.monotonic(), time.time()
        prev, cur = self._prev, {}
        rows: list[tuple[float, int, int, str]] = []
        total = 0
        attrs = ["name", "cpu_times", "memory_info", "create_time"]
        for p in psutil.process_iter(attrs):  # vanished processes are skipped by psutil
            info = p.info
            mem, times, born = info["memory_info"], info["cpu_times"], info["create_time"]
            rss = mem.rss if mem is not None else 0
            total += rss
            if times is None or born is None:
                continue
            used = times.user + times.system
            cur[p.pid] = (born, used)
            old = prev.get(p.pid)
            if old is not None and old[0] == born:
                used -= old[1]
            elif self._prev_at is None or born < self._prev_wall:
                used = 0.0  # no baseline yet
            rows.append((used, rss, p.pid, info["name"] or "?"))
        elapsed = now - self._prev_at if self._prev_at is not None else 0.0
        self._prev, self._prev_at, self._prev_wall = cur, now, wall
        share = 100.0 / elapsed if elapsed > 0 else 0.0
        top = [(name, pid, used * share, rss)
               for used, rss, pid, name in heapq.nlargest(self.top, rows)]
        return procfs.ProcScan(total, top)


class Collector:
    """Call `sample()` once per report. Rates cover the time since the previous call.

    The first call only primes the counters (its rates are 0), so call it once at start.
    Costly readings run on a Cadence: the process scan (total RSS, top processes) and the
    logged-in users at most every `slow_period` seconds (5 s by default, longer if the scan
    itself gets costly; the second scan comes one report after the first),
    and the TCP state table every report unless reading it costs more than 0.1 % of a core.
    """

    def __init__(
        self,
        interval: float = 1.0,
        slow_period: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        linux: bool = procfs.LINUX,
        watch: tuple[WatchSpec, ...] = (),
    ) -> None:
        self.clock = clock
        self.linux = linux
        self._net = RateMeter()
        self._disk = RateMeter()
        self._cpu_prev: list[tuple[float, float]] = []
        self._boot = psutil.boot_time()
        # Watched processes ride on the /proc scan (Linux only: off Linux none are reported).
        self._watcher = Watcher(watch) if watch and linux else None
        self._procs: procfs.ProcScanner | _PsutilProcs = (
            procfs.ProcScanner(TOP_PROCS, self._watcher.comms if self._watcher else frozenset())
            if linux else _PsutilProcs(TOP_PROCS)
        )
        self._slow_period = slow_period
        self._slow = Cadence(self._read_slow, slow_period, 60.0)
        self._scans = 0
        self._scanned_at = 0.0
        self._prime_gap = 0.9 * min(interval, slow_period)
        tcp_reader = procfs.tcp_states if linux else _tcp_states_psutil
        self._tcp = Cadence(tcp_reader, interval, 30.0)

    def set_watch(self, watch: tuple[WatchSpec, ...]) -> None:
        """Watch these processes from the next process scan on (a push or SIGHUP changed the
        list); watches that stay keep their restart counts. Called on the agent's one thread,
        so never within a scan."""
        if not self.linux or not isinstance(self._procs, procfs.ProcScanner):
            return  # off Linux no process is watched
        if self._watcher is None:
            self._watcher = Watcher(watch)
        else:
            self._watcher.retarget(watch)
        self._procs.watch = self._watcher.comms
        self._slow.expire()  # the next report carries the new list, not the cached one

    # -- readings -------------------------------------------------------------------------

    def _read_slow(self) -> Slow:
        scan = self._procs.scan()
        self._scans += 1
        self._scanned_at = self.clock()
        # As the wire carries them: names cut to comm's length, CPU to 0.1 %.
        top: list[TopProc] = [
            (name[:PROC_NAME_CHARS], pid, round(cpu, 1), rss) for name, pid, cpu, rss in scan.top
        ]
        try:
            users = len(psutil.users())
        except OSError:  # no utmp (containers)
            users = 0
        try:
            root = psutil.disk_usage("/").percent
        except OSError:
            root = 0.0
        watched = (self._watcher.update(scan.watched, procfs.PAGE, scan.per_tick)
                   if self._watcher is not None else [])
        arp = arpfacts.read() if self.linux else []
        return Slow(scan.rss, top, users, root, watched, arp)

    def _cpu(self) -> tuple[float, list[int]]:
        cur = [_cpu_split(t) for t in psutil.cpu_times(percpu=True)]
        prev = self._cpu_prev if len(self._cpu_prev) == len(cur) else cur  # hot-plug: restart
        self._cpu_prev = cur
        cores = [round(busy_percent(p, c)) for p, c in zip(prev, cur, strict=True)]
        total = busy_percent(
            (sum(p[0] for p in prev), sum(p[1] for p in prev)),
            (sum(c[0] for c in cur), sum(c[1] for c in cur)),
        )
        return round(total, 1), cores

    def _network(self, now: float) -> dict[str, Any]:
        nics = psutil.net_io_counters(pernic=True, nowrap=False)  # resets: see rates.py
        ifaces: list[tuple[str, list[int]]] = []
        rx_bytes = tx_bytes = 0
        sums = [0.0, 0.0, 0.0, 0.0]
        for name, c in nics.items():
            if name in EXCLUDED_IFACES:
                continue
            rates = self._net.update(
                name, now, (c.bytes_recv, c.bytes_sent, c.packets_recv, c.packets_sent)
            )
            rx_bytes += c.bytes_recv
            tx_bytes += c.bytes_sent
            for i, r in enumerate(rates):
                sums[i] += r
            ifaces.append((name, [round(r) for r in rates]))
        self._net.keep_only(set(nics))
        ifaces.sort(key=lambda item: (-(item[1][0] + item[1][1]), item[0]))
        return {
            "net_rx_bps": round(sums[0]),
            "net_tx_bps": round(sums[1]),
            "net_rx_pps": round(sums[2]),
            "net_tx_pps": round(sums[3]),
            "net_rx_bytes": rx_bytes,
            "net_tx_bytes": tx_bytes,
            "net_ifaces": dict(ifaces[:MAX_IFACES]),
        }

    def _disk_io(self, now: float) -> tuple[int, int]:
        try:
            io = psutil.disk_io_counters(perdisk=False, nowrap=False)
        except (OSError, RuntimeError):  # no /proc/diskstats in some containers
            io = None
        if io is None:
            return 0, 0
        read, write = self._disk.update("all", now, (io.read_bytes, io.write_bytes))
        return round(read), round(write)

    def _procs_threads(self) -> tuple[int, int]:
        if self.linux:
            return len(procfs.pids()), procfs.threads_total()
        return _procs_psutil()

    # -- the report -----------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        now = self.clock()
        cpu_total, cores = self._cpu()
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        disk_read, disk_write = self._disk_io(now)
        if self._scans == 1 and now - self._scanned_at >= self._prime_gap:
            # The first process scan only set each process's CPU baseline: take the second a
            # report later, whatever the cadence says, so CPU shares show from the second
            # report on (and in `agentd --once`). A fresh Cadence runs at once.
            self._slow = Cadence(self._read_slow, self._slow_period, 60.0)
        slow = self._slow.get(now)
        tcp = self._tcp.get(now)
        procs, threads = self._procs_threads()
        metrics: dict[str, Any] = {
            "cpu_percent": cpu_total,
            "cpu_cores": cores,
            "load": [round(x, 2) for x in os.getloadavg()],
            "mem_percent": vm.percent,
            "mem_used": vm.used,
            "mem_total": vm.total,
            "swap_percent": sw.percent,
            "swap_used": sw.used,
        }
        metrics.update(self._network(now))
        metrics.update(
            disk_read_bps=disk_read,
            disk_write_bps=disk_write,
            disk_root_percent=slow.disk_root_percent,
            users=slow.users,
            tcp_established=tcp.get("established", 0),
            tcp_states={state: [n] for state, n in tcp.items()},  # wire: name -> [count]
            procs=procs,
            procs_rss=slow.procs_rss,
            top_procs=slow.top_procs,
            threads=threads,
            uptime=max(0, round(time.time() - self._boot)),
        )
        # Empty when nothing is watched (or not Linux): slow facts, so ~3 bytes every refresh.
        metrics["watched"] = slow.watched
        metrics["arp"] = slow.arp
        return metrics

    def costs(self) -> dict[str, float]:
        """CPU seconds the last slow readings took, and their current periods (for -v logs)."""
        return {
            "proc_scan_cost": self._slow.cost,
            "proc_scan_period": self._slow.period,
            "tcp_scan_cost": self._tcp.cost,
            "tcp_scan_period": self._tcp.period,
        }
