"""Cyclic garbage collection for a director that holds a large cluster in memory.

Every report leaves ~15 new containers (metrics dict, per-core list, per-interface and
TCP-state maps, ...) that live until the node's next report replaces them. With 10,000 nodes
that is ~150,000 live young objects a second, and Python's cyclic collector scans each of
them at least once: gen-0 passes of 40-70 ms several times a second, ~5 % of a core
(docs/performance.md). Nearly all of it is freed by reference counting; the collector only
has to find rare cycles.

So in a large cluster the engine freezes the heap after each tick (`gc.freeze()`: everything
alive moves to the permanent generation, which the collector never scans, and the
allocation count starts again from zero) with a gen-0 threshold above what one tick
allocates, so collections stop happening on their own. Every `full_every` seconds it
unfreezes and collects once, so garbage cycles live at most that long. Objects in the
permanent generation are still freed by reference counting as usual.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FREEZE_ABOVE = 1_000  # nodes: below this the collector costs too little to bother
FULL_EVERY = 300.0  # seconds between full collections while frozen
FROZEN_GEN0 = 1_000_000  # above the containers one tick allocates at 10,000+ nodes


class HeapFreezer:
    """Call `after_tick(nodes)` after each new snapshot (engine tick, UI refresh)."""

    def __init__(
        self,
        *,
        freeze_above: int = FREEZE_ABOVE,
        full_every: float = FULL_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_above = freeze_above
        self.full_every = full_every
        self.clock = clock
        self.frozen = False
        self.full_collections = 0
        self._saved_threshold: tuple[int, int, int] | None = None
        self._last_full = clock()

    def after_tick(self, nodes: int) -> None:
        if nodes < self.freeze_above:
            if self.frozen:
                self.release()
            return
        if not self.frozen:
            self._saved_threshold = gc.get_threshold()
            _, gen1, gen2 = self._saved_threshold
            gc.set_threshold(FROZEN_GEN0, gen1, gen2)
            self.frozen = True
            self._last_full = self.clock()
        now = self.clock()
        if now - self._last_full >= self.full_every:
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            self._last_full = now
        gc.freeze()

    def release(self) -> None:
        """Back to ordinary collection (a shrinking cluster, or the engine stopping)."""
        if not self.frozen:
            return
        gc.unfreeze()
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
        self.frozen = False


# The one the engine and the UI share: the collector's state is per process, and in an
# embedded `ctop` both run in one.
process_heap = HeapFreezer()
