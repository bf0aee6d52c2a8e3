"""The director's engine: receiver -> cluster model -> snapshot -> store, alerts, load balancers.

One asyncio loop runs the receiver and a tick every `config.tick` seconds. Each tick judges
liveness, builds the snapshot, evaluates alerts, and queues history for the writer thread.
Between ticks liveness is judged every `liveness.check_every` seconds (0.1 s), and a change of
state (dead, left, back) — or a failed probe result automation must count — is in the
published snapshot at once, not at the next tick. The load-balancer service (ctop.lb.service)
runs its rounds on the published snapshots in a worker thread on its own cadence, so a slow
`ipvsadm` or HAProxy socket never stalls ingest; its views and events join the next snapshot.
The same engine runs under `ctop serve` (headless) and inside the UI.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agentd.beacon import Beacon
from agentd.keys import load_key
from agentd.protocol import Join, Leave, Message, RawReport
from ctop.alerts import AlertEngine, Notification
from ctop.anomaly.job import AnomalyJob
from ctop.cluster import ClusterModel
from ctop.config import DirectorConfig, effective_readonly
from ctop.filemodes import group_id
from ctop.gcpolicy import process_heap
from ctop.grouppush import GroupPusher
from ctop.hooks import HookRunner
from ctop.ingest import Mark, Verifier
from ctop.lb.factory import build_service, status_line
from ctop.lb.limits import limits_from_rules
from ctop.lb_history import LBRecorder
from ctop.maintenance import operator_drains
from ctop.mute import Mute
from ctop.pair.alerts import PairAlerts
from ctop.pair.monitor import PairMonitor
from ctop.prometheus import start_metrics
from ctop.receiver import BATCH, Receiver
from ctop.silences import Silence, SilenceBook, local_author
from ctop.snapshot import EventView, LBServiceView, Snapshot
from ctop.startup import os_problem, setting_error
from ctop.store import Store, auto_raw_every
from ctop.store.silencedb import open_book

if TYPE_CHECKING:
    from ctop.ingest.workers import WorkerPool
    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.base import Connection
    from ctop.lb.journal import Actor
    from ctop.lb.request import ActionRequest
    from ctop.lb.service import LBService
    from ctop.nats.roles import RoleShare
    from ctop.nats.wiring import Collector, Pair
    from ctop.victoria import VictoriaReader, VictoriaSink

log = logging.getLogger(__name__)

EVENTS_KEPT = 200  # recent events carried in each snapshot
FOLD_BATCH = 256  # deferred report bodies checked per idle moment of the socket (~2 ms)
# While the socket stays busy, bodies queued this long ago are checked after each batch read
# (up to a batch of them), not left to the tick: a node is then decoded at most twice a
# second, and the tick folds at most the last half second (docs/performance.md).
FOLD_AGE = 0.5
# Seconds between saves of every node's replay mark; new boots and leaves are saved at the
# next tick. After a crash, a message of the last seconds could be replayed once, and only
# while it is younger than max_age (docs/director.md).
MARKS_EVERY = 10.0


class Engine:
    records_actions = True  # every lb_action becomes an event (the UI adds none of its own)

    def __init__(
        self, config: DirectorConfig, *, key: bytes | None = None, lb: LBController | None = None
    ) -> None:
        self.config = config
        self.readonly = effective_readonly(config)
        # Per-node keys (master_key_file) or the one cluster key (key_file): docs/protocol.md
        master = load_key(config.master_key_file) if config.master_key_file and key is None \
            else None
        self.key = key if key is not None else b"" if master else load_key(config.key_file)
        self.verifier = Verifier(self.key, max_age=config.max_age, max_skew=config.max_age,
                                 master=master)
        self.model = ClusterModel(config.cluster, config.liveness)
        # Deferred: reports' bodies are checked when the tick folds them in (newest per node);
        # a body refused then still counts as a receiver drop (bad_field).
        self.receiver = Receiver(self.verifier, self._on_message, *config.listen, deferred=True,
                                 on_beacon=self._on_beacon)
        push_master = load_key(config.push_master_key_file) \
            if config.push_master_key_file else None
        self.pusher = GroupPusher(config.groups, push_master, lambda: self.receiver.sock)
        self.model.on_reject = lambda rejected, source: self.receiver.count_drop(
            rejected, source, accepted=True)
        self.receiver.on_idle = lambda: self.model.fold_some(FOLD_BATCH)
        self.receiver.on_busy = lambda now: self.model.fold_some(BATCH, now - FOLD_AGE)
        self._master = master
        self.workers: WorkerPool | None = None  # [receive] workers > 1: receiver processes
        self.alerts = AlertEngine(list(config.alerts), config.cluster)
        self.hooks = HookRunner(config.hooks)
        # [pair]: this director's and its peer's VRRP roles (ctop/pair), None when not set
        self.pair = PairMonitor(config.pair, self.note) if config.pair.enabled else None
        self.pair_alerts = PairAlerts(config.cluster)
        # which firing alerts page nobody: silences, windows, operator drains (ctop.mute)
        self.mute = Mute(list(config.alerts), config.maintenance, cluster=config.cluster)
        self.anomaly: AnomalyJob | None = None  # [anomaly]: made by start() with the store
        self._anomaly_notes: list[Notification] = []  # from the job's thread, for the next tick
        self.heap = process_heap  # large clusters: no cyclic GC passes over the model
        self.store: Store | None = None
        self._controller = lb  # a controller given by the caller, else one from [lb]
        self.lb_service: LBService | None = None  # None: monitoring only
        self.lb_note = ""
        self.nats_pair: Pair | None = None  # [nats] with peers: ctop.nats.wiring
        self.nats_roles: RoleShare | None = None  # [nats] with [pair]: the peer's VRRP role
        self.collector: Collector | None = None  # [nats] role = "collector"
        self.victoria: VictoriaSink | None = None  # [history] victoria_url
        self._victoria_reader: VictoriaReader | None = None
        # each round into the history (ctop --at) at the raw samples' spacing, and the recent
        # shares of each server into its view (the LB pane's sparkline)
        self.lb_recorder = LBRecorder(lambda n: config.store.raw_every or auto_raw_every(n))
        self._alerts_stored: tuple[tuple[str, ...], ...] | None = None  # the last set stored
        self._pending_events: list[EventView] = []
        self._joined: list[str] = []  # nodes whose static facts changed since the last tick
        self._facts: dict[str, tuple[Any, ...]] = {}  # node -> its join, less the header
        self.events: deque[EventView] = deque(maxlen=EVENTS_KEPT)
        self._tick = 0
        self._snapshot = self.model.snapshot(time.time(), 0, lb_note=self.lb_note,
                                             readonly=self.readonly)
        self._tasks: list[asyncio.Task[Any]] = []
        # Nodes whose liveness changed since the published snapshot was made.
        self._states_changed: set[str] = set()
        self._marks_saved = 0.0  # when every node's replay mark was last saved

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, the balancers, the UDP socket and /metrics; a setting that cannot
        be used raises ctop.startup.StartError naming it (and where it was set)."""
        cfg = self.config
        try:
            gid = group_id(cfg.control_group)
        except KeyError:
            raise setting_error(cfg, "control.group", cfg.control_group,
                                f"the group does not exist (groupadd {cfg.control_group})"
                                ) from None
        try:
            self.store = Store(
                cfg.store.path,
                raw_retention=cfg.store.raw_retention,
                minute_retention=cfg.store.minute_retention,
                hourly_retention=cfg.store.hourly_retention,
                raw_every=cfg.store.raw_every,
                group=gid,
            )
        except (OSError, sqlite3.Error) as e:
            raise setting_error(cfg, "store.path", cfg.store.path,
                                f"cannot open or create the history database: "
                                f"{os_problem(e)}") from None
        self.verifier.restore([Mark(*row) for row in self.store.load_marks()])
        self.mute.book = open_book(cfg.store.path)
        self._marks_saved = time.time()
        self._setup_lb()
        if cfg.victoria_url:
            from ctop.victoria import VictoriaReader, VictoriaSink

            self.victoria = VictoriaSink(cfg.victoria_url, cfg.cluster,
                                         raw_every=cfg.store.raw_every)
            self._victoria_reader = VictoriaReader(cfg.victoria_url, cfg.cluster)
        try:
            if cfg.receive_workers > 1:
                self.workers = self._start_workers()
            else:
                self.receiver.open()
        except OSError as e:
            host, port = cfg.listen
            raise setting_error(cfg, "listen", f"{host}:{port}",
                                f"cannot listen on udp {host}:{port}: {os_problem(e)}") from None
        if self.pair is not None:
            self.pair.start()
            if cfg.nats is not None:
                from ctop.nats.wiring import share_roles

                self.nats_roles = share_roles(cfg, self.pair, self.nats_pair)
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="ctop-tick"))
        self._tasks.append(asyncio.create_task(self._liveness_loop(), name="ctop-liveness"))
        if cfg.anomaly.enabled:
            self.anomaly = AnomalyJob(cfg.anomaly, cfg.store.path, cfg.cluster, self._anomalies)
            self._tasks.append(asyncio.create_task(self.anomaly.run(self.snapshot),
                                                   name="ctop-anomaly"))
        if self.lb_service is not None:
            self._tasks.append(asyncio.create_task(self.lb_service.run(cfg.lb_every),
                                                   name="ctop-lb"))
        if cfg.prometheus:
            host, port = cfg.prometheus
            try:  # bound now: a /metrics that cannot listen is fatal, not a silent gap
                server = await start_metrics(self.snapshot, host, port)
            except OSError as e:
                await self.stop()
                raise setting_error(cfg, "prometheus.listen", f"{host}:{port}",
                                    f"cannot serve /metrics on tcp {host}:{port}: "
                                    f"{os_problem(e)}") from None
            self._tasks.append(asyncio.create_task(server.serve_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.workers is not None:
            self.workers.close()
        self.receiver.close()
        if self.collector is not None:
            await asyncio.to_thread(self.collector.close)
        if self.victoria is not None:
            await asyncio.to_thread(self.victoria.close)
        if self.nats_roles is not None:  # before the pair's link closes
            await asyncio.to_thread(self.nats_roles.close)
        if self.nats_pair is not None:
            await asyncio.to_thread(self.nats_pair.close)
        if self.lb_service is not None:
            self.lb_service.close()
        if self.pair is not None:
            self.pair.stop()
        if self.anomaly is not None:
            self.anomaly.close()
        self.heap.release()
        await self.hooks.drain(timeout=5)
        if self.store is not None:
            self.store.record_events(self._pending_events)
            self._pending_events.clear()
            self.store.record_marks(self.verifier.marks())
            await asyncio.to_thread(self.store.close)
        if self.mute.book is not None:
            self.mute.book.close()

    def _start_workers(self) -> WorkerPool:
        """Receiver processes on the agents' port (ctop/ingest/workers.py); this engine
        judges each message's order again with its verifier, whose marks persist."""
        from ctop.ingest.workers import WorkerPool

        pool = WorkerPool(self.config.receive_workers, self.receiver,
                          check_order=self.verifier.check_order,
                          settings=self._worker_settings, on_event=self.note)
        pool.open()
        return pool

    def reload_keys(self) -> bool:
        """SIGHUP: read the key files again (a rotation) and give the new keys to the
        verifiers here and in every receiver worker. A file that cannot be used (missing,
        readable by others, too short) changes nothing: the old keys stay, and it is an
        event. True when the new keys are in use."""
        from agentd.keys import KeyError_

        cfg = self.config
        try:
            master = load_key(cfg.master_key_file) if cfg.master_key_file else None
            key = b"" if master else load_key(cfg.key_file)
        except KeyError_ as e:
            log.error("keys not reloaded: %s", e)
            self.note([EventView(time.time(), "action", "", f"keys not reloaded: {e}")])
            return False
        self.key, self._master = key, master
        self.verifier.key, self.verifier.master = key, master
        self.verifier._node_keys.clear()
        self.receiver.beacon_verifier.rekey(key)  # known boots' beacons: the new key from now
        if self.workers is not None:
            self.workers.set_keys(key, master)
        log.info("keys reloaded")
        self.note([EventView(time.time(), "action", "", "keys reloaded (SIGHUP)")])
        return True

    def _worker_settings(self) -> dict[str, Any]:
        """What a starting receiver worker needs: the keys, and the mark of every node the
        model holds (read without marks(), which would reset the store's list of marks to
        save): it takes their beacons at once; a node dropped or not heard since the start is
        unknown to it, as to the engine's own receiver."""
        nodes, known = self.verifier.nodes, self.model.nodes
        return {"key": self.key, "master": self._master, "max_age": self.config.max_age,
                "marks": [(n, c.boot, c.boot_ts, c.seq, c.at) for n, c in nodes.items()
                          if n in known]}

    @property
    def port(self) -> int:
        return self.receiver.port

    @property
    def lb(self) -> LBController | None:
        """The balancers' controller (None: monitoring only)."""
        return self.lb_service.controller if self.lb_service is not None else None

    def _setup_lb(self) -> None:
        cfg = self.config.lb
        self.lb_note = status_line(cfg, self.readonly)
        self.lb_service = build_service(
            cfg, self.config.store.path, self.snapshot, readonly=self.readonly,
            limits=limits_from_rules(self.alerts.rules), on_events=self.note,
            controller=self._controller, history=self._record_lb)
        if self.config.nats is not None and self.lb_service is not None:
            from ctop.nats.wiring import start_pair  # nats-py only when [nats] is configured

            self.nats_pair = start_pair(self.config, self.lb_service, self.note)
        if self.config.nats is not None and (self.config.nats.role == "collector"
                                             or self.lb_service is not None):
            # a collector publishes its groups; a director its balancers (ctop --nats)
            from ctop.nats.wiring import start_collector

            self.collector = start_collector(self.config,
                                             self.nats_pair.link if self.nats_pair else None)

    def _record_lb(self, views: tuple[LBServiceView, ...]) -> tuple[LBServiceView, ...]:
        """LB worker thread: a round's views into the history; the views with their servers'
        recent shares (the LB pane's sparkline)."""
        views, lb_round = self.lb_recorder.observe(time.time(), views)
        if lb_round is not None and self.store is not None:
            self.store.record_lb(lb_round)
        journal = self.lb_service.controller.journal if self.lb_service is not None else None
        if journal is not None:  # who drained which node: its alerts are held (ctop.mute)
            self.mute.drains = operator_drains(views, journal.intents())
        return views

    # -- ingest ----------------------------------------------------------------------------

    def _on_message(self, msg: Message | RawReport, source: str, now: float) -> None:
        events = self.model.apply(msg, now, source)
        if type(msg) is Leave:  # the last word of a boot: persisted at the next tick
            self.verifier.urgent(msg.header.node)
        if isinstance(msg, Join):
            # Agents re-announce every 10 s; only what changed is written to the store again.
            self.pusher.on_join(msg, self.receiver.join_addr)
            self.model.set_config(msg.header.node, self.pusher.note(msg.header.node))
            node, facts = msg.header.node, msg[1:]
            if self._facts.get(node) != facts:
                self._facts[node] = facts
                self._joined.append(node)
        if events:
            self.note(events)
            self._states_changed.update(e.node_id for e in events)

    def _on_beacon(self, beacon: Beacon, source: str, now: float) -> None:
        events = self.model.beacon(beacon, now)
        if events:
            self.note(events)
            self._states_changed.update(e.node_id for e in events)

    def _anomalies(self, events: list[EventView], notes: list[Notification]) -> None:
        # the job's thread: events now; notifications wait for the tick's mute filter
        self.note(events)
        self._anomaly_notes.extend(notes)

    def _take_anomaly_notes(self) -> list[Notification]:
        taken, self._anomaly_notes = self._anomaly_notes, []
        return taken

    def note(self, events: Sequence[EventView]) -> None:
        """Events for the next snapshot and the history (any thread: appends only)."""
        self.events.extend(events)
        self._pending_events.extend(events)

    # -- tick ------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        period = self.config.tick
        next_at = time.monotonic()
        while True:
            next_at += period
            try:
                self.tick(time.time())
            except Exception:  # a bad tick must not end monitoring
                log.exception("tick failed")
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _liveness_loop(self) -> None:
        period = self.config.liveness.check_every
        while True:
            await asyncio.sleep(period)
            try:
                self.check_liveness(time.time())
            except Exception:
                log.exception("liveness check failed")

    def _judge(self, now: float) -> None:
        events = self.model.tick(now)
        for e in events:
            if e.kind == "forget":  # dropped from the model: a rejoin is new facts again
                self._facts.pop(e.node_id, None)
                self.receiver.beacon_verifier.forget(e.node_id)
                self.pusher.forget(e.node_id)
        forgotten = [e.node_id for e in events if e.kind == "forget"]
        if forgotten and self.workers is not None:  # their beacon checks too
            self.workers.forget(forgotten)
        if events:
            self.note(events)
            self._states_changed.update(e.node_id for e in events)

    def check_liveness(self, now: float) -> None:
        """Judge liveness between ticks; if nodes changed state (here or on a message),
        publish their new state now, patched into the last snapshot (cheap at 10,000 nodes).
        Alerts, history and the sums follow at the next tick."""
        self._judge(now)
        failures = self.model.failures
        if failures and self.lb_service is not None:  # automation counts them now
            self._states_changed |= failures
        failures.clear()
        if not self._states_changed:
            return
        changed, self._states_changed = self._states_changed, set()
        snap = self.model.patched(self._snapshot, changed, now)
        self._snapshot = replace(snap, events=tuple(self.events), received=self.model.received)

    def tick(self, now: float) -> Snapshot:
        self._tick += 1
        self._judge(now)
        self._states_changed.clear()
        self.model.failures.clear()  # in this snapshot
        snap = self.model.snapshot(now, self._tick)
        lb = self.lb_service
        views = lb.views if lb is not None else ()
        alert_events, notes = self.alerts.evaluate(snap.nodes, now, views)
        pair = self.pair.view() if self.pair is not None else None
        if pair is not None:
            pair_events, pair_notes = self.pair_alerts.evaluate(pair, now)
            alert_events, notes = alert_events + pair_events, notes + pair_notes
        notes = notes + self._take_anomaly_notes()
        if self.nats_pair is not None:  # the pair's divergence alert notifies like any other
            notes = notes + self.nats_pair.sync.take_notes()
        anomalies = self.anomaly.firing() if self.anomaly is not None else ()
        firing, notes, mute_events = self.mute.apply(
            self.pair_alerts.firing() + self.alerts.firing() + anomalies
            + (self.nats_pair.sync.alerts() if self.nats_pair is not None else ()), notes,
            _group_of(snap), now)
        self.note(alert_events + mute_events)
        self.hooks.notify(notes)
        snap = replace(
            snap,
            alerts=firing,
            pair=pair,
            events=tuple(self.events),
            lb=views,
            # the owners' note last: ctop status prints it from "owners: " to the end
            lb_note="; ".join(filter(None, (
                self.lb_note, self.nats_pair.sync.note() if self.nats_pair else "",
                lb.owners_note if lb else ""))),
            lb_error=lb.error if lb is not None else "",
            imbalance=lb.imbalance if lb is not None else 0.0,
            drops=dict(self.receiver.drops),
            drop_sources=self.receiver.top_sources() if self.receiver.drops else {},
            readonly=self.readonly,
            **self._history_health(),
        )
        self._snapshot = snap
        if self.store is not None:
            self._store_alerts(now, snap)
            if self._joined:
                wanted = set(self._joined)
                self._joined.clear()
                self.store.record_nodes(v for v in snap.nodes if v.node_id in wanted)
            self.store.record_tick(now, snap.nodes, self._pending_events)
            if self.victoria is not None:
                self.victoria.offer(snap.nodes)
            self._pending_events = []
            every = now - self._marks_saved >= MARKS_EVERY
            if every:
                self._marks_saved = now
            self.store.record_marks(self.verifier.marks(changed_only=not every))
        self.heap.after_tick(len(snap.nodes))
        if self.collector is not None:
            self.collector.publisher.offer(snap)
        return snap

    def _store_alerts(self, now: float, snap: Snapshot) -> None:
        """The firing set, when it changed (and at the first tick: the last run's set ends)."""
        assert self.store is not None
        firing = tuple((a.key, str(a.severity), a.muted, a.muted_by) for a in snap.alerts)
        if firing != self._alerts_stored:
            self._alerts_stored = firing
            self.store.record_alerts(now, snap.alerts)

    def _history_health(self) -> dict[str, Any]:
        health = self.store.health if self.store is not None else None
        if health is None or health.failing_since is None:
            return {}
        return {"history_error": health.text(), "history_failing_since": health.failing_since}

    # -- what views read -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def history(
        self, node_id: str, metrics: Sequence[str], seconds: float
    ) -> dict[str, list[tuple[float, float]]]:
        if self._victoria_reader is not None:
            return self._victoria_reader.history(node_id, metrics, seconds)
        if self.store is None:
            return {m: [] for m in metrics}
        return self.store.history(node_id, metrics, seconds)

    def watch(self, node_id: str | None) -> None:
        pass  # the UI reads this engine's snapshots, with every node's metrics

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        if self.store is None:
            return [e for e in self.events if e.node_id == node_id][-limit:]
        self.store.flush(timeout=1.0)
        return self.store.events(node_id, limit)

    # -- silences ------------------------------------------------------------------------

    def _book(self) -> SilenceBook:
        if self.mute.book is None:
            raise RuntimeError("silences need the history database (the engine is not started)")
        return self.mute.book

    def silence_add(self, *, node: str = "", group: str = "", rule: str = "",
                    duration: str | float, reason: str, author: str) -> Silence:
        """A new silence (ctop.silences.SilenceError says what is wrong), audited as an
        event; it mutes alerts from the next tick on."""
        s = self._book().add(node=node, group=group, rule=rule, duration=duration,
                             reason=reason, author=author)
        self.note([EventView(time.time(), "action", s.node,
                             f"{author} silenced {s.target} until {_hhmm(s.expires)} "
                             f"(#{s.id}): {s.reason}")])
        return s

    def silence_rm(self, sid: int, *, author: str) -> Silence:
        s = self._book().remove(sid, author=author)
        self.note([EventView(time.time(), "action", s.node,
                             f"{author} removed silence #{s.id} ({s.target}, by {s.author})")])
        return s

    def silences(self, *, everything: bool = False) -> list[Silence]:
        return self._book().listing(everything=everything)

    async def silence(self, *, node: str = "", group: str = "", rule: str = "",
                      duration: str | float, reason: str) -> Silence:
        """A silence by this process's user (the UI's `S` with the engine embedded)."""
        return self.silence_add(node=node, group=group, rule=rule, duration=duration,
                                reason=reason, author=local_author())

    # -- load balancers --------------------------------------------------------------------

    def _lb(self) -> LBService:
        if self.lb_service is None:
            raise RuntimeError(self.lb_note or "no load balancer configured")
        return self.lb_service

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        """One real server's connections, read now (the `c` view, an attached UI's too)."""
        return await self._lb().connections(balancer, service, server)

    async def lb_plan(self, request: ActionRequest) -> Plan:
        """What `request` would do now (the confirmation dialog's body)."""
        return await self._lb().plan(request)

    async def lb_action(self, request: ActionRequest, actor: Actor | None = None) -> ActionResult:
        """Run one change (a UI's key, `ctop lb`, through the control socket) on the
        load-balancer service, and publish its outcome now rather than at the next tick."""
        lb = self._lb()
        result = await lb.act(request, actor)
        if not result.dry_run:
            self._snapshot = replace(self._snapshot, lb=lb.views, lb_error=lb.error,
                                     imbalance=lb.imbalance, events=tuple(self.events))
        return result


def _group_of(snap: Snapshot) -> Callable[[str], str]:
    """node id -> its group in `snap` ("" for a node it does not hold)."""
    def group(node_id: str) -> str:
        node = snap.node(node_id)
        return node.group if node is not None else ""
    return group


def _hhmm(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
