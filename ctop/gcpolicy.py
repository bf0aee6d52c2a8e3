"""Cyclic garbage collection for a director that holds a large cluster in memory.

Every report leaves ~15 new containers (metrics dict, per-core list, per-interface and
TCP-state maps, ...) that live until the node's next report replaces them. With 10,000 nodes
that is ~150,000 live young objects a second, and Python's cyclic collector scans each of
them at least once: gen-0 passes of 40-70 ms several times a second, ~5 % of a core
(docs/performance.md). Nearly all of it is freed by reference counting; the collector only
has to find rare cycles.

So in a large cluster the engine and the UI freeze the heap after each tick (`gc.freeze()`:
everything alive moves to the permanent generation, which the collector never scans, and the
allocation count starts again from zero) with a gen-0 threshold above what one tick
allocates, so collections stop happening on their own. Objects in the permanent generation
are still freed by reference counting as usual.

What the freeze keeps is cyclic garbage: a cycle made during a tick is frozen with the rest
and only a full collection (unfreeze, collect) frees it, which scans the whole heap: ~0.35 s
per million objects, a stall of the event loop. The code runs no such collection on a clock
(it used to, every 5 minutes, and by then the UI had piled up 160 MB of cycles that took
~1.5 s to collect): ctop makes no cyclic garbage per tick (tests/test_tui_garbage.py), so the
heap stays the size of the cluster. The freezer looks at the heap's size (pymalloc's
allocated blocks: under a millisecond for millions of objects) every `check_every` seconds and
collects only when it grew by `grow` (a quarter, CPython's own rule for full collections)
since the last collection, or since `settle` seconds after the freeze (a starting UI fills
its caches: measured from the start, that growth cost a needless full collection a minute
or two in): a growing cluster or a leak of cycles is collected about as often as CPython
would, a steady one never.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable

FREEZE_ABOVE = 1_000  # nodes: below this the collector costs too little to bother
CHECK_EVERY = 10.0  # seconds between looks at the heap's size while frozen
GROW = 1.25  # collect when the heap grew by a quarter since the last collection
SETTLE = 60.0  # seconds after the freeze before the heap's size is the reference
FROZEN_GEN0 = 1_000_000  # above the containers one tick allocates at 10,000+ nodes


class HeapFreezer:
    """Call `after_tick(nodes)` after each new snapshot (engine tick, UI refresh)."""

    def __init__(
        self,
        *,
        freeze_above: int = FREEZE_ABOVE,
        check_every: float = CHECK_EVERY,
        grow: float = GROW,
        settle: float = SETTLE,
        clock: Callable[[], float] = time.monotonic,
        heap_size: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self.freeze_above = freeze_above
        self.check_every = check_every
        self.grow = grow
        self.settle = settle
        self.clock = clock
        self.heap_size = heap_size
        self.frozen = False
        self.full_collections = 0
        self.collected = 0  # objects the full collections found unreachable
        self._saved_threshold: tuple[int, int, int] | None = None
        self._last_check = clock()
        self._frozen_at = clock()
        self._reference: int | None = None  # the heap's size to compare with

    def after_tick(self, nodes: int) -> None:
        if nodes < self.freeze_above:
            if self.frozen:
                self.release()
            return
        now = self.clock()
        if not self.frozen:
            self._saved_threshold = gc.get_threshold()
            _, gen1, gen2 = self._saved_threshold
            gc.set_threshold(FROZEN_GEN0, gen1, gen2)
            self.frozen = True
            self._last_check = self._frozen_at = now
            self._reference = None
        elif now - self._last_check >= self.check_every:
            self._last_check = now
            if self._reference is None:
                if now - self._frozen_at >= self.settle:
                    self._reference = self.heap_size()
            elif self.heap_size() > self._reference * self.grow:
                self.collect()
        gc.freeze()

    def collect(self) -> None:
        """Unfreeze, collect the whole heap, and measure what is left (frozen again after)."""
        gc.unfreeze()
        self.collected += gc.collect()
        self.full_collections += 1
        self._reference = self.heap_size()
        if self.frozen:
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
