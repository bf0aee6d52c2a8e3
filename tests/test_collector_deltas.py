"""A collector publishes deltas (docs/scaling.md): each tick only the rows that changed since
its last publish (the control socket's ui2 scheme, ctop.control.delta), a full snapshot every
KEYFRAME s and when a view asks. Real nats-server, a real CollectorPublisher and NatsSource."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from ctop.nats.collector import CollectorPublisher
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.view import NatsSource
from ctop.snapshot import Liveness, Snapshot
from tests.helpers.nats_servers import NatsServer
from tests.helpers.sample import sample_snapshot

pytest.importorskip("nats")

NODES = 300


def _ticks(base: Snapshot) -> Callable[[int], Snapshot]:
    """The cluster at tick k: every node seen again, one node's cpu new each tick."""
    nodes = tuple(n._replace(liveness=Liveness.ALIVE) for n in base.nodes)

    def at(k: int) -> Snapshot:
        changed = nodes[k % len(nodes)].node_id
        now = base.ts + k
        rows = tuple(n._replace(last_seen=now, cpu=float(k) if n.node_id == changed else n.cpu)
                     for n in nodes)
        return replace(base, ts=now, tick=k, nodes=rows, _index=Snapshot.index_of(rows))
    return at


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_quiet_cluster_sends_only_what_changed_and_the_view_holds_every_row(
        nats_server: NatsServer) -> None:
    cfg = NatsConfig(servers=(nats_server.url,), name="col-d", role="collector")
    at = _ticks(sample_snapshot(NODES, lb=False))
    sizes: dict[int, int] = {}  # tick -> bytes of its group messages
    link = NatsLink(cfg).start()
    tap = NatsLink(NatsConfig(servers=(nats_server.url,))).start()
    source = NatsSource(NatsConfig(servers=(nats_server.url,)))
    state = {"tick": 0}
    tap.subscribe("ctop.t.*.snap", lambda data, subject: sizes.__setitem__(
        state["tick"], sizes.get(state["tick"], 0) + len(data)))
    publisher = None
    try:
        assert link.wait_connected(10) and tap.wait_connected(10)
        assert source.link.wait_connected(10)
        time.sleep(0.3)  # the subscriptions are in place before the first (full) publish
        publisher = CollectorPublisher(link, cfg, "t")
        publisher.keyframe = 3600.0  # only the first publish is full
        for k in range(1, 16):
            state["tick"] = k
            publisher.offer(at(k))
            assert _wait(lambda k=k: publisher.published >= k * len(at(k).groups), 5)
            time.sleep(0.05)  # the tap has this tick's messages
        full, deltas = sizes[1], [sizes[k] for k in range(2, 16)]
        # one row a tick changed: a tick's messages are a small part of the full snapshot
        # (every node's last-seen time still goes, 8 bytes each)
        assert statistics.median(deltas) < full / 4, (full, deltas)
        last = at(15)
        assert _wait(lambda: source.snapshot().nodes and max(
            n.last_seen for n in source.snapshot().nodes) == last.ts, 5)
        shown = {n.node_id: n for n in source.snapshot().nodes}
        # every row held, the new values applied, nothing lost along the way
        assert len(shown) == NODES and source.view.gaps == 0
        for n in last.nodes:
            assert shown[n.node_id].cpu == n.cpu and shown[n.node_id].last_seen == last.ts
        assert publisher.full == len(last.groups)  # one full snapshot per group, no more
    finally:
        if publisher is not None:
            publisher.close()
        source.close()
        tap.close()
        link.close()


def test_a_view_that_joins_late_asks_for_the_full_snapshot(nats_server: NatsServer) -> None:
    cfg = NatsConfig(servers=(nats_server.url,), name="col-late", role="collector")
    at = _ticks(sample_snapshot(NODES, lb=False, cluster="late"))
    link = NatsLink(cfg).start()
    publisher = CollectorPublisher(link, cfg, "late")
    publisher.keyframe = 3600.0  # no keyframe will come: only asking brings the rows
    source = None
    try:
        assert link.wait_connected(10)
        for k in range(1, 4):
            publisher.offer(at(k))
            time.sleep(0.1)
        source = NatsSource(NatsConfig(servers=(nats_server.url,)))
        assert source.link.wait_connected(10)
        k = 4
        deadline = time.monotonic() + 5
        while len(source.snapshot().nodes) < NODES and time.monotonic() < deadline:
            publisher.offer(at(k))
            k += 1
            time.sleep(0.1)
        assert len(source.snapshot().nodes) == NODES
        assert source.view.gaps >= 1  # it held nothing, asked, and got the full one
    finally:
        publisher.close()
        if source is not None:
            source.close()
        link.close()


def test_a_view_that_may_not_ask_waits_for_the_keyframe(nats_server: NatsServer) -> None:
    cfg = NatsConfig(servers=(nats_server.url,), name="col-key", role="collector")
    at = _ticks(sample_snapshot(40, lb=False, cluster="key"))
    link = NatsLink(cfg).start()
    publisher = CollectorPublisher(link, cfg, "key")
    publisher.keyframe = 1.0
    source = None
    try:
        assert link.wait_connected(10)
        publisher.offer(at(1))
        time.sleep(0.2)
        source = NatsSource(NatsConfig(servers=(nats_server.url,)))
        source.view.ask = None  # as a scoped user's view (it may publish nothing)
        assert source.link.wait_connected(10)
        k, seen_empty = 2, False
        deadline = time.monotonic() + 4
        while len(source.snapshot().nodes) < 40 and time.monotonic() < deadline:
            seen_empty = seen_empty or source.view.gaps > 0
            publisher.offer(at(k))
            k += 1
            time.sleep(0.1)
        assert len(source.snapshot().nodes) == 40 and seen_empty
    finally:
        publisher.close()
        if source is not None:
            source.close()
        link.close()


def test_busy_rows_go_without_their_cpu_history_and_the_view_rebuilds_the_sparkline(
        nats_server: NatsServer) -> None:
    """Every node's CPU moves every tick (a busy cluster: every row changes). The rows go
    without the 60-point CPU history; the view's sparkline is the CPU of each tick received."""
    cfg = NatsConfig(servers=(nats_server.url,), name="col-busy", role="collector")
    base = sample_snapshot(NODES, lb=False, cluster="busy")
    full_history = tuple(float(k % 97) for k in range(60))  # as the engine's, full
    sizes: list[int] = []
    link = NatsLink(cfg).start()
    tap = NatsLink(NatsConfig(servers=(nats_server.url,))).start()
    source = NatsSource(NatsConfig(servers=(nats_server.url,)))
    tap.subscribe("ctop.busy.*.snap", lambda data, subject: sizes.append(len(data)))
    publisher = None

    def at(k: int) -> Snapshot:
        rows = tuple(n._replace(liveness=Liveness.ALIVE, last_seen=base.ts + k,
                                cpu=float((i * 7 + k) % 100),
                                cpu_history=(*full_history[k:], *map(float, range(k))))
                     for i, n in enumerate(base.nodes))
        return replace(base, ts=base.ts + k, tick=k, nodes=rows, _index=Snapshot.index_of(rows))
    try:
        assert link.wait_connected(10) and tap.wait_connected(10)
        assert source.link.wait_connected(10)
        time.sleep(0.3)
        publisher = CollectorPublisher(link, cfg, "busy")
        for k in range(1, 6):
            publisher.offer(at(k))
            assert _wait(lambda k=k: publisher.published >= k * len(base.groups), 5)
            time.sleep(0.05)
        assert _wait(lambda: source.snapshot().nodes and max(
            n.last_seen for n in source.snapshot().nodes) == base.ts + 5, 5)
        # a busy row without its 60 floats of history: under 300 bytes a node, all fields
        assert sum(sizes) / 5 / NODES < 300, sum(sizes) / 5 / NODES
        position = {b.node_id: i for i, b in enumerate(base.nodes)}
        for n in source.snapshot().nodes:  # the CPU of each of the five ticks, in order
            i = position[n.node_id]
            assert n.cpu_history == tuple(float((i * 7 + t) % 100) for t in range(1, 6))
    finally:
        if publisher is not None:
            publisher.close()
        source.close()
        tap.close()
        link.close()
