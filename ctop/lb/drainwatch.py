"""Drain until empty: how many connections a drained server still has, and when it will have
none, from the observed decay.

Connections of a drained server end on their own; their count falls roughly exponentially (each
ends independently). From samples (t, n) the decay rate is fitted as a least-squares line
through (t, ln n); the time to empty is when n falls below one half. Used by `ctop lb drain
--wait`, the LB pane and the engine's "empty" event.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ctop.lb.base import ServerState, VirtualService

_OUT = (ServerState.DRAINED, ServerState.QUIESCED, ServerState.MAINT)

KEEP = 30  # samples (a minute at the LB pane's pace)


@dataclass
class DrainWatch:
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=KEEP))

    def add(self, t: float, n: int) -> None:
        if self.samples and n > self.samples[-1][1]:  # new connections: the decay restarts
            self.samples.clear()
        self.samples.append((t, n))

    def eta(self) -> float | None:
        """Seconds until empty, or None when the count is not falling (yet)."""
        return eta(list(self.samples))


def eta(samples: list[tuple[float, int]]) -> float | None:
    if not samples:
        return None
    n_last = samples[-1][1]
    if n_last == 0:
        return 0.0
    pts = [(t, math.log(n)) for t, n in samples if n > 0]
    if len(pts) < 2 or pts[-1][0] - pts[0][0] <= 0:
        return None
    mt = sum(t for t, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    slope = sum((t - mt) * (y - my) for t, y in pts) / den
    if slope >= 0:
        return None
    return max(0.0, (math.log(0.5) - math.log(n_last)) / slope)


class EmptyWatch:
    """Says once when a drained (or quiesced, or maintenance) server that still had active
    connections has none left: the engine turns it into an event."""

    def __init__(self) -> None:
        self._busy: set[tuple[str, str, str]] = set()  # out of rotation, connections left

    def observe(self, services: Iterable[VirtualService]) -> list[str]:
        out, busy = [], set()
        for vs in services:
            for rs in vs.servers:
                if rs.state not in _OUT:
                    continue
                key = (vs.balancer, vs.key, rs.key)
                if rs.active_conns > 0:
                    busy.add(key)
                elif key in self._busy:
                    out.append(f"{vs.balancer} {vs.key} {rs.key} is {rs.state} and empty: "
                               "no active connections left")  # fmt: skip
        self._busy = busy
        return out
