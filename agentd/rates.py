"""Per-second rates from monotonically increasing kernel counters.

Kernel counters go backwards when an interface is re-created, a module is reloaded, a 32-bit
counter wraps or a container migrates. A backwards step restarts the delta: that one interval
reports a rate of 0 and the next interval measures from the new base. Guessing the wrap size
would turn a reset into a huge bogus spike, which is worse for a monitor than one zero.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def delta(prev: int, cur: int) -> int:
    """Growth of a counter between two samples; 0 when it went backwards (reset or wrap)."""
    return cur - prev if cur >= prev else 0


class RateMeter:
    """Remembers the last sample of several counter tuples, each under its own key."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, tuple[int, ...]]] = {}

    def update(self, key: Hashable, now: float, counters: Sequence[int]) -> tuple[float, ...]:
        """Record `counters` at monotonic time `now`; return per-second rates since the last call.

        The first sample of a key, or a clock that did not advance, gives all zeros.
        """
        cur = tuple(counters)
        last = self._last.get(key)
        self._last[key] = (now, cur)
        if last is None or len(last[1]) != len(cur):
            return (0.0,) * len(cur)
        then, prev = last
        elapsed = now - then
        if elapsed <= 0:
            return (0.0,) * len(cur)
        return tuple(delta(p, c) / elapsed for p, c in zip(prev, cur, strict=True))

    def keep_only(self, keys: set[Hashable] | frozenset[Hashable]) -> None:
        """Forget keys that disappeared (a removed interface must not leak memory)."""
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]


def busy_percent(prev: tuple[float, float], cur: tuple[float, float]) -> float:
    """CPU busy share in percent between two (idle seconds, total seconds) samples.

    A total that did not grow (same sample twice, CPU hot-plug, counter reset) gives 0 rather
    than a division by zero or a value outside 0..100.
    """
    total = cur[1] - prev[1]
    idle = cur[0] - prev[0]
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, (total - idle) / total * 100.0))
