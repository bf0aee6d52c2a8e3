"""The director's garbage-collection policy: frozen heap for large clusters, cycles collected
when they grow the heap (never on a clock, so a steady cluster never pays a full collection),
ordinary collection for small ones."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from ctop.gcpolicy import FROZEN_GEN0, HeapFreezer


class Payload:
    pass


def cyclic_garbage() -> weakref.ref[Payload]:
    a, b = Payload(), Payload()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    return weakref.ref(a)


@pytest.fixture
def freezer():
    before = gc.get_threshold()
    gc.collect()
    now = [0.0]
    heap = HeapFreezer(freeze_above=100, clock=lambda: now[0])
    yield heap, now
    heap.release()
    gc.unfreeze()
    gc.set_threshold(*before)
    gc.collect()


def test_a_small_cluster_keeps_ordinary_collection(freezer) -> None:
    heap, _ = freezer
    threshold = gc.get_threshold()
    heap.after_tick(99)
    assert not heap.frozen and gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    ref = cyclic_garbage()
    gc.collect()
    assert ref() is None


def test_a_steady_large_cluster_is_frozen_and_never_fully_collected(freezer) -> None:
    heap, now = freezer
    threshold = gc.get_threshold()
    heap.after_tick(5_000)
    assert heap.frozen and gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == FROZEN_GEN0 and gc.get_count()[0] < 1_000
    ref = cyclic_garbage()  # a rare cycle: frozen, not worth scanning the heap for
    for _ in range(3600):  # an hour of ticks, nothing growing
        now[0] += 1
        heap.after_tick(5_000)
    gc.collect(0)
    assert heap.full_collections == 0 and ref() is not None
    heap.after_tick(50)  # the cluster shrank: ordinary collection finds the cycle
    assert not heap.frozen and gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    gc.collect()
    assert ref() is None


def test_cycles_that_grow_the_heap_by_a_quarter_are_collected(freezer) -> None:
    heap, now = freezer
    heap.after_tick(5_000)
    now[0] += 60  # the UI has settled: its heap's size now is the reference
    heap.after_tick(5_000)
    start = sys.getallocatedblocks()
    refs = []
    while sys.getallocatedblocks() < start * 1.3:  # a leak of cycles, tick after tick
        for _ in range(1_000):
            refs.append(cyclic_garbage())
        heap.after_tick(5_000)
    assert heap.full_collections == 0  # not before the next look at the heap
    now[0] += 60  # a minute later
    heap.after_tick(5_000)
    assert heap.full_collections == 1 and heap.frozen
    assert all(r() is None for r in refs)
    assert sys.getallocatedblocks() < start * 1.1
