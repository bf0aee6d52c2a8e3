"""Run expensive readings less often when they get expensive.

Reading /proc/net/tcp costs about 1 µs of kernel time per socket and scanning /proc/PID costs
about 10 µs per process. On a quiet node both are cheap enough to refresh every report; on a
real server with 50,000 sockets they would eat several percent of a core. A Cadence measures
the CPU time each run took and spaces runs so the reading stays within its share of one core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cadence(Generic[T]):
    """Caches the result of `read` and re-runs it when due.

    The next run is due `max(min_period, cost / share)` seconds after the last one, capped at
    `max_period`, where cost is the CPU time (user + system, this thread) the last run took.
    """

    def __init__(
        self,
        read: Callable[[], T],
        min_period: float,
        max_period: float,
        share: float = 0.001,
    ) -> None:
        self.read = read
        self.min_period = min_period
        self.max_period = max(min_period, max_period)
        self.share = share
        self.period = min_period
        self.cost = 0.0
        self._next = float("-inf")
        self._value: T | None = None

    def expire(self) -> None:
        """Read again at the next get (what is read changed, e.g. the watched processes)."""
        self._next = float("-inf")

    def get(self, now: float) -> T:
        if self._value is None or now >= self._next:
            started = time.thread_time()
            self._value = self.read()
            self.cost = time.thread_time() - started
            self.period = min(self.max_period, max(self.min_period, self.cost / self.share))
            # A little slack so a reading due "now" is not pushed to the next report by jitter.
            self._next = now + self.period - 0.05 * self.min_period
        return self._value
