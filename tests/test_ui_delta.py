"""An attached UI gets only what changed since the snapshot it holds (ctop.control.delta, the
`ui2` request); after any number of deltas it holds exactly the daemon's snapshot."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest

from ctop.codec import pack_compact, unpack_compact
from ctop.control.delta import DeltaError, DeltaPacker, DeltaReader
from ctop.snapshot import Liveness, NodeView, Snapshot
from tests.helpers.sample import sample_snapshot


def _with_nodes(snap: Snapshot, nodes: list[NodeView], tick: int) -> Snapshot:
    nodes = sorted(nodes, key=lambda n: (n.group, n.node_id))
    return replace(snap, tick=tick, ts=snap.ts + tick, nodes=tuple(nodes),
                   _index=Snapshot.index_of(tuple(nodes)))


def _full(snap: Snapshot, watched: str | None = None) -> Snapshot:
    """What the UI would hold after a full compact snapshot (wire 1)."""
    return unpack_compact(pack_compact(snap, [watched] if watched else ()))


def _same(held: Snapshot, snap: Snapshot, watched: str | None = None) -> None:
    full = _full(snap, watched)
    assert [n.node_id for n in held.nodes] == [n.node_id for n in full.nodes]
    assert held.nodes == full.nodes
    assert all(held.node(n.node_id) == n for n in full.nodes)
    assert replace(held, nodes=(), _index={}) == replace(full, nodes=(), _index={})


def _rows_sent(answer: bytes) -> int:
    d = msgpack.unpackb(answer, strict_map_key=False)
    return sum(len(msgpack.unpackb(c)) for c in d["chunks"])


def _step(packer: DeltaPacker, reader: DeltaReader, snap: Snapshot,
          watched: str | None = None) -> int:
    answer = packer.pack(snap, reader.version, watched)
    _same(reader.apply(answer, watched), snap, watched)
    return _rows_sent(answer)


def test_after_many_deltas_the_ui_holds_exactly_the_daemons_snapshot():
    base = sample_snapshot(1200, per_service=50)  # more rows than one frame
    packer, reader = DeltaPacker(), DeltaReader()
    assert _step(packer, reader, base) == 1200  # first poll: everything
    nodes = list(base.nodes)

    # every node reported again, nothing else moved: no row is sent, only the seen times
    nodes = [n._replace(last_seen=n.last_seen + 1) for n in nodes]
    s2 = _with_nodes(base, nodes, 2)
    assert _step(packer, reader, s2) == 0

    # a few nodes change
    for i in (3, 500, 1199):
        nodes[i] = nodes[i]._replace(cpu=nodes[i].cpu + 7, liveness=Liveness.SUSPECT)
    assert _step(packer, reader, _with_nodes(base, nodes, 3)) == 3

    # one leaves, one joins in the middle of the order, one moves to another group (reorder)
    del nodes[10]
    nodes.append(nodes[0]._replace(node_id="aaa-new", group=nodes[600].group))
    nodes[700] = nodes[700]._replace(group="zzz")
    assert _step(packer, reader, _with_nodes(base, nodes, 4)) == 2

    # the node detail watches a node: its raw metrics come along, and go when it closes
    watched = nodes[20].node_id
    nodes[20] = nodes[20]._replace(metrics={"cpu_percent": 12.5})
    s5 = _with_nodes(base, nodes, 5)
    assert _step(packer, reader, s5, watched) == 1
    assert reader.snap is not None and reader.snap.node(watched).metrics
    assert _step(packer, reader, _with_nodes(base, nodes, 6)) == 0
    assert not reader.snap.node(watched).metrics

    # the LB view and the events change; the node rows do not
    s7 = replace(_with_nodes(base, nodes, 7), lb=base.lb[:1], events=base.events[:-1])
    assert _step(packer, reader, s7) == 0
    assert reader.snap.lb == _full(s7).lb and len(reader.snap.events) == len(s7.events)
    assert _step(packer, reader, _with_nodes(base, nodes, 8)) == 0  # and back

    # polled again before the next tick: nothing decoded, the same snapshot
    held = reader.snap
    assert reader.apply(packer.pack(s5, reader.version, None)) is not held  # s5 != held
    assert reader.apply(packer.pack(s5, reader.version, None)) is reader.snap


def test_a_ui_holding_a_forgotten_snapshot_gets_a_full_one():
    base = sample_snapshot(50, per_service=10)
    packer, reader = DeltaPacker(keep=2), DeltaReader()
    _step(packer, reader, base)
    old = reader.version
    for tick in range(2, 6):  # the daemon moves on; this UI does not poll
        packer.pack(_with_nodes(base, list(base.nodes), tick), None, None)
    s = _with_nodes(base, list(base.nodes), 6)
    assert reader.version == old
    assert _step(packer, reader, s) == 50


def test_a_delta_against_another_snapshot_is_refused_not_applied():
    base = sample_snapshot(50, per_service=10)
    packer, mine, other = DeltaPacker(), DeltaReader(), DeltaReader()
    _step(packer, mine, base)
    s2 = _with_nodes(base, [n._replace(cpu=1.0) for n in base.nodes], 2)
    _step(packer, other, s2)
    s3 = _with_nodes(base, list(base.nodes), 3)
    held = mine.version
    with pytest.raises(DeltaError):  # a delta from s2, applied to s1
        mine.apply(packer.pack(s3, other.version, None))
    assert mine.version == held  # what it held is kept


def test_a_snapshot_patched_between_ticks_is_a_new_version():
    """The engine adds an action's events (and LB views) to the current snapshot without a new
    ts or tick: a UI that polled the unpatched one still gets them."""
    base = sample_snapshot(50, per_service=10)
    packer, reader = DeltaPacker(), DeltaReader()
    _step(packer, reader, base)
    patched = replace(base, events=base.events[:-1])  # same ts, same tick
    _step(packer, reader, patched)
    assert reader.snap.events == patched.events
    _step(packer, reader, _with_nodes(patched, list(patched.nodes), 2))
