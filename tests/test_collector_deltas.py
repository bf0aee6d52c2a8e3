"""A collector publishes deltas (docs/scaling.md): each tick only the rows that changed since
its last publish (the control socket's ui2 scheme, ctop.control.delta), a full snapshot every
KEYFRAME s and when a view asks. Real nats-server, a real CollectorPublisher and NatsSource."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class _Rig:
    """A collector's publisher, a view of what it publishes, and a tap on its group messages
    (their bytes, by tick) on the session's nats-server."""

    def __init__(self, url: str, name: str, cluster: str) -> None:
        self.cfg = NatsConfig(servers=(url,), name=name, role="collector")
        self.cluster = cluster
        self.sizes: dict[int, int] = {}  # tick -> bytes of its group messages
        self.tick = 0
        self.link = NatsLink(self.cfg).start()
        self.tap = NatsLink(NatsConfig(servers=(url,))).start()
        self.source = NatsSource(NatsConfig(servers=(url,)))
        self.publisher: CollectorPublisher | None = None
        self.tap.subscribe(f"ctop.{cluster}.*.snap", self._tapped)

    def _tapped(self, data: bytes, subject: str) -> None:
        self.sizes[self.tick] = self.sizes.get(self.tick, 0) + len(data)

    def start(self, keyframe: float | None = None) -> CollectorPublisher:
        assert self.link.wait_connected(10) and self.tap.wait_connected(10)
        assert self.source.link.wait_connected(10)
        time.sleep(0.3)  # the subscriptions are in place before the first (full) publish
        self.publisher = CollectorPublisher(self.link, self.cfg, self.cluster)
        if keyframe is not None:
            self.publisher.keyframe = keyframe
        return self.publisher

    def publish(self, k: int, snap: Snapshot) -> None:
        """Tick k: offered, published (each group's message), and the tap has its messages."""
        publisher = self.publisher
        assert publisher is not None
        self.tick = k
        publisher.offer(snap)
        assert _wait(lambda: publisher.published >= k * len(snap.groups), 5)
        time.sleep(0.05)  # the tap has this tick's messages

    def newest_shown(self) -> float:
        nodes = self.source.snapshot().nodes
        return max(n.last_seen for n in nodes) if nodes else 0.0

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        self.source.close()
        self.tap.close()
        self.link.close()


@contextmanager
def _rig(nats_server: NatsServer, name: str, cluster: str) -> Iterator[_Rig]:
    rig = _Rig(nats_server.url, name, cluster)
    try:
        yield rig
    finally:
        rig.close()


def test_a_quiet_cluster_sends_only_what_changed_and_the_view_holds_every_row(
        nats_server: NatsServer) -> None:
    at = _ticks(sample_snapshot(NODES, lb=False))
    with _rig(nats_server, "col-d", "t") as rig:
        publisher = rig.start(keyframe=3600.0)  # only the first publish is full
        for k in range(1, 16):
            rig.publish(k, at(k))
        full, deltas = rig.sizes[1], [rig.sizes[k] for k in range(2, 16)]
        # one row a tick changed: a tick's messages are a small part of the full snapshot
        # (every node's last-seen time still goes, 8 bytes each)
        assert statistics.median(deltas) < full / 4, (full, deltas)
        last = at(15)
        assert _wait(lambda: rig.newest_shown() == last.ts, 5)
        shown = {n.node_id: n for n in rig.source.snapshot().nodes}
        # every row held, the new values applied, nothing lost along the way
        assert len(shown) == NODES and rig.source.view.gaps == 0
        for n in last.nodes:
            assert shown[n.node_id].cpu == n.cpu and shown[n.node_id].last_seen == last.ts
        assert publisher.full == len(last.groups)  # one full snapshot per group, no more


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
    base = sample_snapshot(NODES, lb=False, cluster="busy")
    full_history = tuple(float(k % 97) for k in range(60))  # as the engine's, full

    def at(k: int) -> Snapshot:
        rows = tuple(n._replace(liveness=Liveness.ALIVE, last_seen=base.ts + k,
                                cpu=float((i * 7 + k) % 100),
                                cpu_history=(*full_history[k:], *map(float, range(k))))
                     for i, n in enumerate(base.nodes))
        return replace(base, ts=base.ts + k, tick=k, nodes=rows, _index=Snapshot.index_of(rows))

    with _rig(nats_server, "col-busy", "busy") as rig:
        rig.start()
        for k in range(1, 6):
            rig.publish(k, at(k))
        assert _wait(lambda: rig.newest_shown() == base.ts + 5, 5)
        # a busy row without its 60 floats of history: under 300 bytes a node, all fields
        assert sum(rig.sizes.values()) / 5 / NODES < 300, sum(rig.sizes.values()) / 5 / NODES
        position = {b.node_id: i for i, b in enumerate(base.nodes)}
        for n in rig.source.snapshot().nodes:  # the CPU of each of the five ticks, in order
            i = position[n.node_id]
            assert n.cpu_history == tuple(float((i * 7 + t) % 100) for t in range(1, 6))
