"""The collector role of `ctop serve` ([nats] role = "collector", or `ctop serve --collector`):
the engine runs liveness and the store for the agents it receives as always, and this module
publishes what it knows of its groups to NATS for directors and UIs (ctop.nats.view):

    <prefix>.<cluster>.<group>.snap      the group's rows that changed since the last
                                         publish (ctop.control.delta), each tick; all of them
                                         every KEYFRAME s and when a view asks
    <prefix>.<cluster>.<group>.want      a view asks for the group's full snapshot (it joined
                                         late or missed a message)
    <prefix>.<cluster>.<group>.events    the group's new events, as they come
    <prefix>.<cluster>._collector.<name> a heartbeat every HEARTBEAT s: its name and groups
    <prefix>.<cluster>._director.<name>.lb  a director's balancers (its LB pane), each tick

A director ([nats] role = "director", the default) publishes only its balancers and the
heartbeat; a collector its groups, their events, the heartbeat (and balancers, if it has any).

Subjects per cluster and group let NATS permissions scope a user to a group (docs/scaling.md).
The engine's tick only hands its snapshot over (`offer`); packing and publishing run in the
thread "ctop-collector", so a slow NATS server never holds the tick up, and a snapshot that
could not be sent is replaced by the next one rather than queued.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import msgpack

from ctop.codec import pack_compact
from ctop.control.delta import DeltaPacker, Version
from ctop.nats.config import NatsConfig, safe_name
from ctop.nats.link import NatsError, NatsLink
from ctop.nats.sparks import without_history
from ctop.snapshot import Aggregate, EventView, GroupView, Snapshot

log = logging.getLogger(__name__)

HEARTBEAT = 0.5  # seconds between heartbeats; a view calls a collector lost after LOST_AFTER
FORMAT = 2  # the envelope's version (1: a whole compact snapshot per message, no deltas)
KEYFRAME = 30.0  # s between full snapshots of a group: what a view that cannot ask waits for
ASKED_GAP = 1.0  # s at least between two full snapshots a view asked for (one per group)


def group_token(group: str) -> str:
    """A group name as one subject token ('' is the nodes without a group)."""
    return safe_name(group) if group else "_"


def snap_subject(prefix: str, cluster: str, group: str) -> str:
    return f"{prefix}.{safe_name(cluster)}.{group_token(group)}.snap"


def events_subject(prefix: str, cluster: str, group: str) -> str:
    return f"{prefix}.{safe_name(cluster)}.{group_token(group)}.events"


def want_subject(prefix: str, cluster: str, group: str) -> str:
    return f"{prefix}.{safe_name(cluster)}.{group_token(group)}.want"


def heartbeat_subject(prefix: str, cluster: str, name: str) -> str:
    return f"{prefix}.{safe_name(cluster)}._collector.{safe_name(name)}"


def lb_subject(prefix: str, cluster: str, name: str) -> str:
    return f"{prefix}.{safe_name(cluster)}._director.{safe_name(name)}.lb"


def lb_snapshot(snap: Snapshot) -> Snapshot:
    """Only the balancers of a snapshot (what a view shows of a director)."""
    return replace(snap, nodes=(), groups=(), alerts=(), events=(), drop_sources={},
                   _index=Snapshot.index_of(()))


def group_snapshot(snap: Snapshot, group: str) -> Snapshot:
    """The part of a snapshot one group's subscribers see: its nodes, totals and alerts.
    Events travel on their own subject; the balancers stay the collector's own."""
    nodes = tuple(n for n in snap.nodes if n.group == group)
    ids = {n.node_id for n in nodes}
    totals = next((g.totals for g in snap.groups if g.name == group), Aggregate())
    return replace(snap, nodes=nodes, groups=(GroupView(group, totals),), totals=totals,
                   alerts=tuple(a for a in snap.alerts if a.node_id in ids), events=(), lb=(),
                   drop_sources={}, _index=Snapshot.index_of(nodes))


def envelope(collector: str, cluster: str, group: str, body: bytes) -> bytes:
    return msgpack.packb({"v": FORMAT, "collector": collector, "cluster": cluster,
                          "group": group, "body": body})


class _Stream:
    """One group's deltas: the packer (ui2's, ctop.control.delta) and what was sent last."""

    def __init__(self) -> None:
        self.packer = DeltaPacker(keep=2)  # a delta is always against the previous publish
        self.sent: Version | None = None
        self.full_at = 0.0  # time.monotonic() of the last full snapshot
        self.wanted = True  # the next publish is a full snapshot


class CollectorPublisher:
    """Publishes a collector's group snapshots, events and heartbeat (see the module doc)."""

    def __init__(self, link: NatsLink, cfg: NatsConfig, cluster: str) -> None:
        self.link = link
        self.collects = cfg.role == "collector"  # else a director: its balancers only
        self.cfg = cfg
        self.cluster = cluster
        self.name = cfg.director_name
        self.groups = frozenset(cfg.groups)
        self._offered: Snapshot | None = None
        self._events_after = 0.0  # newest event ts already published
        self._seen_groups: set[str] = set(cfg.groups)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.published = 0  # group snapshots sent (status, tests)
        self.full = 0  # of them, full snapshots (keyframes and answers to `want`)
        self._streams: dict[str, _Stream] = {}
        self._last: Snapshot | None = None  # published last: sent again in full when asked
        self._asked = False
        self.keyframe = KEYFRAME
        if self.collects:  # a view that joined late or missed a delta asks for a full one
            link.subscribe(f"{cfg.subject_prefix}.{safe_name(cluster)}.*.want", self._want)
        self._thread = threading.Thread(target=self._run, name="ctop-collector", daemon=True)
        self._thread.start()

    def serves(self, group: str) -> bool:
        return not self.groups or group in self.groups

    def offer(self, snap: Snapshot) -> None:
        """The engine's tick: the newest snapshot, published soon (never waits)."""
        self._offered = snap
        self._wake.set()

    def _want(self, data: bytes, subject: str) -> None:
        token = subject.rsplit(".", 2)[-2]
        for group, stream in list(self._streams.items()):
            if group_token(group) == token:
                stream.wanted = True
                self._asked = True
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_beat - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            snap, self._offered = self._offered, None
            if snap is None and self._asked:  # a view asked: the last one again, in full now
                snap = self._last
            self._asked = False
            try:
                if snap is not None:
                    self._publish(snap)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT
                    self._beat()
            except NatsError as e:  # NATS down: the next snapshot tries again
                log.debug("collector: %s", e)
                next_beat = time.monotonic() + HEARTBEAT
            except Exception:  # never let one bad snapshot end the thread
                log.exception("collector: publishing failed")

    def _publish(self, snap: Snapshot) -> None:
        self._last = snap
        prefix = self.cfg.subject_prefix
        if snap.lb:
            self.link.publish(lb_subject(prefix, self.cluster, self.name),
                              envelope(self.name, self.cluster, "",
                                       pack_compact(lb_snapshot(snap))))
        if not self.collects:
            return
        groups = sorted({g.name for g in snap.groups if self.serves(g.name)})
        self._seen_groups.update(groups)
        now = time.monotonic()
        for group in groups:
            stream = self._streams.get(group)
            if stream is None:
                stream = self._streams[group] = _Stream()
            # a view's `want` is answered at most once a second per group: views (or a user
            # allowed to ask) cannot make the collector send full snapshots back to back
            full = ((stream.wanted and now - stream.full_at >= ASKED_GAP)
                    or now - stream.full_at >= self.keyframe)
            part = without_history(group_snapshot(snap, group))  # the view rebuilds it
            body = stream.packer.pack(part, None if full else stream.sent, None)
            # counted as sent before it is: a publish whose flush timed out (a loaded NATS)
            # went out nearly always, and the next delta must follow it; one that did not
            # leaves a gap the views see and ask to fill
            stream.sent = stream.packer.version
            if full:
                stream.wanted, stream.full_at = False, now
                self.full += 1
            # sent even when nothing changed: small, and it shows a view that joined late
            # that it holds nothing to apply it to (it asks for a full one)
            self.link.publish(snap_subject(prefix, self.cluster, group),
                              envelope(self.name, self.cluster, group, body))
            self.published += 1
        fresh = [e for e in snap.events if e.ts > self._events_after]
        if fresh:
            self._publish_events(snap, fresh)
            self._events_after = max(e.ts for e in fresh)

    def _publish_events(self, snap: Snapshot, events: list[EventView]) -> None:
        group_of = {n.node_id: n.group for n in snap.nodes}
        by_group: dict[str, list[list[object]]] = {}
        for e in events:
            group = group_of.get(e.node_id or "")
            if group is not None and self.serves(group):
                by_group.setdefault(group, []).append([e.ts, e.kind, e.node_id, e.message])
        for group, rows in by_group.items():
            body = msgpack.packb(rows)
            self.link.publish(events_subject(self.cfg.subject_prefix, self.cluster, group),
                              envelope(self.name, self.cluster, group, body))

    def _beat(self) -> None:
        body = msgpack.packb({"groups": sorted(self._seen_groups), "ts": time.time()})
        self.link.publish(heartbeat_subject(self.cfg.subject_prefix, self.cluster, self.name),
                          envelope(self.name, self.cluster, "", body))
