"""The past view's steps reuse what did not change: a node whose stored row and liveness are
the same at the next moment keeps its view, and every node still shows its value at that
moment (a real history database written through the Store)."""

from __future__ import annotations

import time

from ctop.past import PastSource
from ctop.snapshot import EventView, Liveness, NodeView, Snapshot
from ctop.store import Store


def _node(node_id: str, ts: float, cpu: float, conns: int) -> NodeView:
    metrics = {"cpu_percent": cpu, "mem_percent": 40.0, "tcp_established": conns, "procs": 90}
    return NodeView(node_id, node_id, "web", Liveness.ALIVE, ts, 1, 1.0, ("10.0.0.1",), 4,
                    1 << 33, "1", cpu=cpu, mem=40.0, conns=conns, procs=90, metrics=metrics)


def _share(snap: Snapshot, view: NodeView) -> float:
    """The node's share of the connections (a snapshot's, once lane views' Snapshot.load_share
    is merged; NodeView.load_share before)."""
    of_snapshot = getattr(snap, "load_share", None)
    return of_snapshot(view) if callable(of_snapshot) else view.load_share


def _history(db: str, start: float) -> None:
    """Four minutes of history from `start`: busy reports every 10 s with a new CPU and a
    connection count that doubles after two minutes; quiet reported once, at the start (it
    stays alive, its row unchanged; its share of connections changes with busy's); gone
    reported for a minute and died."""
    store = Store(db, raw_every=0.0)
    store.record_nodes([_node(n, start, 1.0, 1) for n in ("busy", "gone", "quiet")])
    store.record_events([EventView(start - 1, "join", n, f"{n} joined")
                         for n in ("busy", "gone", "quiet")])
    for k in range(25):
        t = start + 10 * k
        views = [_node("busy", t, 10.0 + k, 30 if k < 12 else 90),
                 _node("quiet", start, 50.0, 30)]  # (same last_seen: no new sample stored)
        if k <= 6:
            views.append(_node("gone", t, 70.0, 5))
        events = [EventView(t, "state", "gone", "gone alive → dead (silent for 3.0 s)")] \
            if k == 7 else []
        store.record_tick(t, views, events)
    store.close()


def test_a_step_shows_each_nodes_value_at_the_new_moment_and_reuses_unchanged_views(tmp_path):
    start = float(int(time.time()) - 600)  # (the store keeps milliseconds)
    db = str(tmp_path / "ctop.db")
    _history(db, start)
    source = PastSource(db, start + 95, cluster="t")  # busy's 10th row (cpu 19), 30 conns
    try:
        first = source.snapshot()
        busy, quiet, gone = (first.node(n) for n in ("busy", "quiet", "gone"))
        assert (busy.cpu, busy.conns, busy.last_seen) == (19.0, 30, start + 90)
        assert gone.liveness is Liveness.DEAD and gone.cpu == 70.0
        assert _share(first, quiet) == 0.5  # 30 of 60 connections

        # a minute on: busy changed (cpu, last seen), gone did not, quiet's row did not but
        # its share did (busy has 90 connections now)
        second = source.move(60)
        busy2, quiet2, gone2 = (second.node(n) for n in ("busy", "quiet", "gone"))
        assert (busy2.cpu, busy2.conns, busy2.last_seen) == (25.0, 90, start + 150)
        assert gone2 is gone  # unchanged: the same view, not built again
        assert quiet2.cpu == 50.0 and _share(second, quiet2) == 0.25  # 30 of 120
        assert _share(second, busy2) == 0.75

        # 4 s on: no node stored a row in between: every view is the last moment's
        third = source.move(4)
        assert all(a is b for a, b in zip(third.nodes, second.nodes, strict=True))

        # and back: the values of the first moment again, each as it was then
        back = source.move(-64)
        assert [(n.node_id, n.cpu, n.conns, n.last_seen, n.liveness, _share(back, n))
                for n in back.nodes] == [
            (n.node_id, n.cpu, n.conns, n.last_seen, n.liveness, _share(first, n))
            for n in first.nodes]
    finally:
        source.close()


def test_a_node_whose_liveness_changed_between_moments_gets_a_new_view(tmp_path):
    """gone's last row is the same before and after its death: its view is still built
    again, dead."""
    start = float(int(time.time()) - 600)  # (the store keeps milliseconds)
    db = str(tmp_path / "ctop.db")
    _history(db, start)
    source = PastSource(db, start + 65, cluster="t")  # gone's last row (t = start + 60)
    try:
        alive = source.snapshot().node("gone")
        assert alive.liveness is Liveness.ALIVE
        dead = source.move(10).node("gone")  # its death was stored at start + 70
        assert dead.liveness is Liveness.DEAD and dead.cpu == alive.cpu == 70.0
    finally:
        source.close()


def test_a_node_stored_after_a_moment_was_read_is_in_the_next_step(tmp_path):
    """The nodes' facts are kept while nothing wrote to the database: a write (the daemon
    storing a new node as the operator scrubs) is seen at the next step."""
    import threading

    start = float(int(time.time()) - 600)
    db = str(tmp_path / "ctop.db")
    _history(db, start)
    source = PastSource(db, start + 95, cluster="t")
    try:
        assert source.snapshot().node("late") is None
        assert source.move(1).node("late") is None  # (nothing written: the facts kept)
        store = Store(db, raw_every=0.0)
        store.record_nodes([_node("late", start + 50, 5.0, 1)])
        store.record_events([EventView(start + 49, "join", "late", "late joined")])
        store.record_tick(start + 50, [_node("late", start + 50, 5.0, 1)], [])
        store.close()
        assert source.move(1).node("late").cpu == 5.0
    finally:
        source.close()
    # the side reads' thread and connection end with the source
    assert not [t for t in threading.enumerate() if t.name.startswith("ctop-past")]
