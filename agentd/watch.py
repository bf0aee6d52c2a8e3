"""Watched processes: `watch = ["nginx", "haproxy:2", "worker:2-8", "java:*tomcat*"]`.

A watch names a command (the kernel's comm, cut to 15 characters as the kernel cuts it),
optionally the number of such processes expected (`N` or `N-M`; default: at least one) and a
glob on the command line (`/proc/PID/cmdline`, arguments joined by spaces). The agent's
process scan (agentd/procfs.py) already reads every /proc/PID/stat: it hands the rows whose
comm is watched to `Watcher.update`, which reads cmdline (glob watches only) and counts
/proc/PID/fd for those few processes. Everything else costs one set lookup per process.

A restart is a watched process that started after one of the same watch ended (its start
time changed, or it came back after the watch had none): `restarts` counts them since the
agent started, and the director alerts when it grows (docs/director.md, process_restarted).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from agentd.protocol import PROC_NAME_CHARS

MAX_WATCHES = 16  # one report must stay well inside the datagram (docs/protocol.md)
MAX_LABEL = 64
MAX_EXPECTED = 100_000
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class WatchSpecError(ValueError):
    """A watch entry that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class WatchSpec:
    label: str  # the entry as written, less its count: names the watch on the wire and in alerts
    name: str  # comm to match (at most PROC_NAME_CHARS)
    low: int  # expected count, inclusive
    high: int | None  # None: no upper bound
    glob: str = ""  # on the command line; "" = any

    @property
    def comm(self) -> bytes:
        return self.name[:PROC_NAME_CHARS].encode()


def parse_watch(text: object) -> WatchSpec:
    """"name", "name:N", "name:N-M", "name:GLOB" or "name:N:GLOB" -> WatchSpec."""
    if not isinstance(text, str):
        raise WatchSpecError(f"expected a string like \"nginx\" or \"haproxy:2\", got {text!r}")
    name, _, rest = text.strip().partition(":")
    if not name:
        raise WatchSpecError(f"{text!r}: empty process name")
    if any(c.isspace() or c == "/" for c in name):
        raise WatchSpecError(f"{text!r}: a process name (comm) has no spaces or '/'")
    low, high, glob = 1, None, ""
    first, sep, after = rest.partition(":")
    if first and (first[0].isdigit() or first[0] == "-"):
        m = _RANGE.match(first)
        if not m:
            raise WatchSpecError(f"{text!r}: bad count {first!r} (expected N or N-M)")
        low = int(m[1])
        high = int(m[2]) if m[2] is not None else low
        if high < low or high > MAX_EXPECTED:
            raise WatchSpecError(f"{text!r}: bad count range {first!r} (N-M with N <= M"
                                 f" <= {MAX_EXPECTED})")
        if high == 0:
            raise WatchSpecError(f"{text!r}: a count of 0 watches nothing")
        glob = after if sep else ""
        if sep and not after:
            raise WatchSpecError(f"{text!r}: empty command-line glob")
    elif rest:
        glob = rest
    label = name + (f":{glob}" if glob else "")
    if len(label) > MAX_LABEL:
        raise WatchSpecError(f"{text!r}: longer than {MAX_LABEL} characters (name and glob)")
    return WatchSpec(label, name, low, high, glob)


def parse_watches(items: object) -> tuple[WatchSpec, ...]:
    """The `watch` list; WatchSpecError names the entry (1-based) that is wrong."""
    if not isinstance(items, list):
        raise WatchSpecError(f"expected a list of process names, got {items!r}")
    if len(items) > MAX_WATCHES:
        raise WatchSpecError(f"at most {MAX_WATCHES} watched processes, got {len(items)}")
    specs: list[WatchSpec] = []
    for i, item in enumerate(items):
        try:
            spec = parse_watch(item)
        except WatchSpecError as e:
            raise WatchSpecError(f"entry {i + 1}: {e}") from None
        if any(s.label == spec.label for s in specs):
            raise WatchSpecError(f"entry {i + 1}: {spec.label!r} is watched twice")
        specs.append(spec)
    return tuple(specs)


def merged_watches(local: tuple[WatchSpec, ...], pushed: tuple[WatchSpec, ...]
                   ) -> tuple[WatchSpec, ...]:
    """The node's own watches, then the pushed ones; a pushed watch labelled like a local one
    is left out (the node's file wins, as for probes), and the list stops at MAX_WATCHES (a
    report carries no more)."""
    labels = {s.label for s in local}
    return (local + tuple(s for s in pushed if s.label not in labels))[:MAX_WATCHES]


class Seen(NamedTuple):
    """A process whose comm is watched, as the scan read it from /proc/PID/stat."""

    pid: str
    start: int  # clock ticks after boot
    used: int  # CPU ticks since the previous scan
    rss: int  # pages
    threads: int


# One watch on the wire (agentd/metrics.py "watched"): label, count, expected low, expected
# high (None: unbounded), restarts since the agent started, CPU % of one core, RSS bytes,
# threads, open files (None: not readable by the agent's user).
Watched = tuple[str, int, int, int | None, int, float, int, int, int | None]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def _open_files(pid: str) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Watcher:
    """Aggregates the watched processes of each process scan; keeps restart counts."""

    def __init__(self, specs: tuple[WatchSpec, ...]) -> None:
        self.specs = specs
        self.comms: frozenset[bytes] = frozenset(s.comm for s in specs)
        self._pids: list[dict[str, int]] = [{} for _ in specs]  # pid -> start, last scan
        self._owed = [0] * len(specs)  # processes ended and not yet replaced
        self._restarts = [0] * len(specs)
        self._scanned = False
        self.last: list[Watched] = []

    def retarget(self, specs: tuple[WatchSpec, ...]) -> None:
        """Watch `specs` from the next scan on (a push or a SIGHUP changed the list). A watch
        whose label stays keeps its processes and restart count; a new one starts at none,
        so its first processes are no restart."""
        old = {s.label: i for i, s in enumerate(self.specs)}
        keep = [old.get(s.label) for s in specs]
        self._pids = [dict(self._pids[i]) if i is not None else {} for i in keep]
        self._owed = [self._owed[i] if i is not None else 0 for i in keep]
        self._restarts = [self._restarts[i] if i is not None else 0 for i in keep]
        self.specs = specs
        self.comms = frozenset(s.comm for s in specs)

    def update(
        self, by_comm: Mapping[bytes, list[Seen]], page: int, per_tick: float
    ) -> list[Watched]:
        """One scan's watched rows (by comm) -> one Watched per spec, in config order."""
        cmdlines: dict[str, str] = {}
        out: list[Watched] = []
        for i, spec in enumerate(self.specs):
            rows = by_comm.get(spec.comm, [])
            if spec.glob:
                for r in rows:
                    if r[0] not in cmdlines:
                        cmdlines[r[0]] = _cmdline(r[0])
                rows = [r for r in rows if fnmatch.fnmatchcase(cmdlines[r[0]], spec.glob)]
            now = {r[0]: r[1] for r in rows}
            before = self._pids[i]
            if self._scanned:
                ended = sum(1 for pid, start in before.items() if now.get(pid) != start)
                started = sum(1 for pid, start in now.items() if before.get(pid) != start)
                owed = self._owed[i] + ended
                restarted = min(owed, started)
                self._restarts[i] += restarted
                # A pool that shrank and later grows back counts as restarts: bounded by what
                # ended, never more.
                self._owed[i] = min(owed - restarted, max(spec.low, len(before)))
            self._pids[i] = now
            fds = [_open_files(r[0]) for r in rows]
            readable = [n for n in fds if n is not None]
            out.append((
                spec.label, len(rows), spec.low, spec.high, self._restarts[i],
                round(sum(r[2] for r in rows) * per_tick, 1),
                sum(r[3] for r in rows) * page,
                sum(r[4] for r in rows),
                sum(readable) if readable or not rows else None,
            ))
        self._scanned = True
        self.last = out
        return out
