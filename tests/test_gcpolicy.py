"""The director's garbage-collection policy: frozen heap for large clusters, cycles still
collected on schedule, ordinary collection for small ones."""

from __future__ import annotations

import gc
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
    now = [0.0]
    heap = HeapFreezer(freeze_above=100, full_every=60, clock=lambda: now[0])
    yield heap, now
    heap.release()
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_small_cluster_keeps_ordinary_collection(freezer) -> None:
    heap, _ = freezer
    threshold = gc.get_threshold()
    heap.after_tick(99)
    assert not heap.frozen and gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    ref = cyclic_garbage()
    gc.collect()
    assert ref() is None


def test_a_large_cluster_freezes_and_still_collects_cycles_on_schedule(freezer) -> None:
    heap, now = freezer
    threshold = gc.get_threshold()
    heap.after_tick(5_000)
    assert heap.frozen and gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == FROZEN_GEN0 and gc.get_count()[0] < 1_000
    ref = cyclic_garbage()
    now[0] += 30
    heap.after_tick(5_000)  # the cycle is frozen now, not scanned by young collections
    gc.collect(0)
    assert ref() is not None
    now[0] += 31
    heap.after_tick(5_000)  # full_every passed: unfreeze, collect, freeze again
    assert ref() is None and heap.full_collections == 1 and heap.frozen
    heap.after_tick(50)  # the cluster shrank
    assert not heap.frozen and gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
