"""The director's engine: receiver -> cluster model -> store, alerts, load balancers.

One asyncio loop runs the receiver and a tick every `config.tick` seconds. Each tick judges
liveness, builds the snapshot, evaluates alerts, and queues history for the writer thread.
Between ticks liveness is judged every `liveness.check_every` seconds (0.1 s), and a change of
state (dead, left, back) is in the published snapshot at once, not at the next tick.
Load-balancer tables are read in a worker thread on their own cadence, so a slow `ipvsadm`
or HAProxy socket never stalls ingest. The same engine runs under `ctop serve` (headless)
and inside the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agentd.beacon import Beacon
from agentd.keys import load_key
from agentd.protocol import Join, Leave, Message, RawReport
from ctop.alerts import AlertEngine
from ctop.cluster import ClusterModel
from ctop.config import DirectorConfig, effective_readonly
from ctop.gcpolicy import process_heap
from ctop.hooks import HookRunner
from ctop.ingest import Mark, Verifier
from ctop.lb_history import LBRecorder
from ctop.receiver import Receiver
from ctop.snapshot import EventView, LBServiceView, Liveness, Snapshot
from ctop.store import Store, auto_raw_every

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.automation import AutoQuiescer
    from ctop.lb.base import Connection, VirtualService
    from ctop.lb.config import LBConfig
    from ctop.lb.journal import Actor
    from ctop.lb.monitor import LBMonitor
    from ctop.lb.request import ActionRequest

log = logging.getLogger(__name__)

EVENTS_KEPT = 200  # recent events carried in each snapshot
LB_URGENT_POLL = 0.1  # seconds between looks for a failed probe result automation must count
# deferred report bodies checked per idle moment of the socket (a few ms: docs/performance.md,
# "Folding bodies while the socket is idle")
FOLD_BATCH = 256
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
        self.model.on_reject = lambda rejected, source: self.receiver.count_drop(
            rejected, source, accepted=True)
        self.receiver.on_idle = lambda: self.model.fold_some(FOLD_BATCH)
        self.alerts = AlertEngine(list(config.alerts), config.cluster)
        self.hooks = HookRunner(config.hooks)
        self.heap = process_heap  # large clusters: no cyclic GC passes over the model
        self.store: Store | None = None
        self.lb: LBController | None = lb
        self.quiescer: AutoQuiescer | None = None
        self.lb_note = ""
        self._lb_error = ""
        self._lb_services: list[VirtualService] = []
        self._lb_cfg: LBConfig | None = None
        self.monitor: LBMonitor | None = None
        self._lb_views: tuple[LBServiceView, ...] = ()
        self._lb_imbalance = 0.0
        # each round into the history (ctop --at) at the raw samples' spacing, and the recent
        # shares of each server into its view (the LB pane's sparkline)
        self.lb_recorder = LBRecorder(lambda n: config.store.raw_every or auto_raw_every(n))
        self._alerts_stored: tuple[tuple[str, str], ...] | None = None  # the last set stored
        # One change at a time per balancer: an action holds its backend's lock, a round of
        # reading + automation holds them all (ctop.lb.lock serialises other processes).
        self._backend_locks: dict[str, threading.Lock] = {}
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
        import sqlite3

        from ctop.filemodes import group_id
        from ctop.startup import os_problem, setting_error

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
        self._marks_saved = time.time()
        self._setup_lb()
        try:
            self.receiver.open()
        except OSError as e:
            host, port = cfg.listen
            raise setting_error(cfg, "listen", f"{host}:{port}",
                                f"cannot listen on udp {host}:{port}: {os_problem(e)}") from None
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="ctop-tick"))
        self._tasks.append(asyncio.create_task(self._liveness_loop(), name="ctop-liveness"))
        if self.lb is not None:
            self._tasks.append(asyncio.create_task(self._lb_loop(), name="ctop-lb"))
        if cfg.prometheus:
            from ctop.prometheus import start_metrics

            host, port = cfg.prometheus
            try:  # bound now: a /metrics that cannot listen is fatal, not a silent gap
                server = await start_metrics(self, host, port)
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
        self.receiver.close()
        if self.monitor is not None:
            self.monitor.close()
        self.heap.release()
        await self.hooks.drain(timeout=5)
        if self.store is not None:
            self.store.record_events(self._pending_events)
            self._pending_events.clear()
            self.store.record_marks(self.verifier.marks())
            await asyncio.to_thread(self.store.close)

    @property
    def port(self) -> int:
        return self.receiver.port

    def _setup_lb(self) -> None:
        from ctop.lb.factory import build_controller, build_quiescer, status_line

        cfg = self.config.lb
        self._lb_cfg = cfg
        self.lb_note = status_line(cfg, self.readonly)
        if self.lb is None and not cfg.monitoring_only:
            self.lb = build_controller(cfg, self.config.store.path, readonly=self.readonly)
        if self.lb is not None:
            from ctop.lb.drainwatch import EmptyWatch
            from ctop.lb.limits import limits_from_rules

            # read-only: automation does not even try (the controller would refuse it anyway)
            self.quiescer = None if self.readonly else build_quiescer(cfg, self.lb)
            # guards and what-if: quorum and CPU thresholds from the alert rules, CPU per server
            self.lb.limits = limits_from_rules(self.alerts.rules)
            self.lb.node_loads = self._node_loads
            self.lb.on_ramp_step = lambda r: self._note_action(r, "restore ramp")
            self._empty_watch = EmptyWatch()
            if self.readonly:
                self.lb.readonly = True

    # -- ingest ----------------------------------------------------------------------------

    def _on_message(self, msg: Message | RawReport, source: str, now: float) -> None:
        events = self.model.apply(msg, now, source)
        if type(msg) is Leave:  # the last word of a boot: persisted at the next tick
            self.verifier.urgent(msg.header.node)
        if isinstance(msg, Join):
            # Agents re-announce every 10 s; only what changed is written to the store again.
            node, facts = msg.header.node, msg[1:]
            if self._facts.get(node) != facts:
                self._facts[node] = facts
                self._joined.append(node)
        if events:
            self._note(events)
            self._states_changed.update(e.node_id for e in events)

    def _on_beacon(self, beacon: Beacon, source: str, now: float) -> None:
        events = self.model.beacon(beacon, now)
        if events:
            self._note(events)
            self._states_changed.update(e.node_id for e in events)

    def _note(self, events: Sequence[EventView]) -> None:
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
        if events:
            self._note(events)
            self._states_changed.update(e.node_id for e in events)

    def check_liveness(self, now: float) -> None:
        """Judge liveness between ticks; if nodes changed state (here or on a message),
        publish their new state now, patched into the last snapshot (cheap at 10,000 nodes).
        Alerts, history and the sums follow at the next tick."""
        self._judge(now)
        if not self._states_changed:
            return
        changed, self._states_changed = self._states_changed, set()
        snap = self.model.patched(self._snapshot, changed, now)
        self._snapshot = replace(snap, events=tuple(self.events), received=self.model.received)

    def tick(self, now: float) -> Snapshot:
        self._tick += 1
        self._judge(now)
        self._states_changed.clear()
        snap = self.model.snapshot(now, self._tick)
        alert_events, notes = self.alerts.evaluate(snap.nodes, now, self._lb_views)
        self._note(alert_events)
        self.hooks.notify(notes)
        snap = replace(
            snap,
            alerts=self.alerts.firing(),
            events=tuple(self.events),
            lb=self._lb_views,
            lb_note=self.lb_note,
            lb_error=self._lb_error,
            imbalance=self._lb_imbalance,
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
            self._pending_events = []
            every = now - self._marks_saved >= MARKS_EVERY
            if every:
                self._marks_saved = now
            self.store.record_marks(self.verifier.marks(changed_only=not every))
        self.heap.after_tick(len(snap.nodes))
        return snap

    def _store_alerts(self, now: float, snap: Snapshot) -> None:
        """The firing set, when it changed (and at the first tick: the last run's set ends)."""
        assert self.store is not None
        firing = tuple((a.key, str(a.severity)) for a in snap.alerts)
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

    # -- load balancers --------------------------------------------------------------------

    async def _lb_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._locked_round)
                self._lb_error = ""
            except Exception as e:
                message = getattr(e, "message", None) or str(e) or type(e).__name__
                if message != self._lb_error:
                    log.warning("reading the load balancers failed: %s", message)
                self._lb_error = message
            await self._lb_wait(self.config.lb_every)

    async def _lb_wait(self, seconds: float) -> None:
        """Until the next round: `seconds`, or less when a failed probe result is waiting to
        be counted (automation then acts within moments of the deciding result)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(LB_URGENT_POLL, left))
            # (not while the balancer cannot be read: that would retry every 0.1 s)
            if self.monitor is not None and not self._lb_error and self.monitor.urgent(
                    self.model.nodes):
                return

    @contextlib.contextmanager
    def _holding(self, backends: Sequence[str]) -> Iterator[None]:
        """Worker thread: hold these balancers' locks (always taken in name order)."""
        locks = [self._backend_locks.setdefault(b, threading.Lock()) for b in sorted(backends)]
        with contextlib.ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            yield

    def _locked_round(self) -> None:
        assert self.lb is not None
        with self._holding(list(self.lb.backends)):
            self._lb_round()

    def _lb_round(self) -> None:
        """Worker thread: one monitor round (tables, health, automation, drift, advice)."""
        assert self.lb is not None
        if self.monitor is None:
            from ctop.lb.monitor import LBMonitor

            self.monitor = LBMonitor(self.lb, self._lb_cfg, self.quiescer)
        outcome = self.monitor.round(self.model.nodes, self.readonly)
        for result, why in outcome.actions:
            self._note_action(result, why)
        if outcome.events:
            self._note(outcome.events)
        self._lb_services = outcome.services
        views, lb_round = self.lb_recorder.observe(time.time(), outcome.views)
        if lb_round is not None and self.store is not None:
            self.store.record_lb(lb_round)
        self._lb_views, self._lb_imbalance = views, outcome.imbalance
        for text in self._empty_watch.observe(outcome.services):  # "a drained server is empty"
            self._note([EventView(time.time(), "action", "", text)])

    def _node_loads(
        self, backend: str, service: str
    ) -> dict[str, tuple[float | None, float | None]]:
        """{server: (cores, CPU %)} of one service's real servers from their agents, for the
        what-if (worker thread, like _advise)."""
        from ctop.lb.monitor import node_addresses
        from ctop.lb.ratio import map_servers_to_nodes

        services = [vs for vs in self._lb_services if (vs.backend, vs.key) == (backend, service)]
        owners = map_servers_to_nodes(services, node_addresses(self.model.nodes))
        out: dict[str, tuple[float | None, float | None]] = {}
        for (_, _, server), node_id in owners.items():
            node = self.model.nodes.get(node_id)
            if node is None or node.liveness is not Liveness.ALIVE or not node.metrics:
                continue
            cores = node.cores or len(node.metrics.get("cpu_cores", ())) or None
            out[server] = (cores, node.metrics.get("cpu_percent"))
        return out


    def _note_action(
        self, result: ActionResult, why: str = "", actor: Actor | None = None
    ) -> None:
        who = f"{actor.text} " if actor is not None else ""
        text = (f"{who}{result.origin} {result.action} {result.backend} {result.service} "
                f"{result.server}: {result.before} → {result.after} "
                f"{'ok' if result.ok else 'FAILED: ' + result.message}")
        if why:
            text += f" ({why})"
        node = ""
        for view in self._lb_views:
            for s in view.servers:
                if view.key == result.service and s.key == result.server:
                    node = s.node_id
        self.events.append(EventView(time.time(), "action", node, text))
        self._pending_events.append(EventView(time.time(), "action", node, text))

    def _advised(self, service: str, server: str) -> int:
        for view in self._lb_views:
            for s in view.servers:
                if view.key == service and s.key == server and s.advised_weight is not None:
                    return s.advised_weight
        raise ValueError(f"no weight advice for {server} in {service}")

    async def lb_connections(self, backend: str, service: str, server: str) -> list[Connection]:
        """One real server's connections, read now (the `c` view, an attached UI's too)."""
        if self.lb is None:
            raise RuntimeError(self.lb_note or "no load balancer configured")
        return await asyncio.to_thread(self.lb.connections, backend, service, server)

    async def lb_plan(self, request: ActionRequest) -> Plan:
        """What `request` would do now (the confirmation dialog's body)."""
        from ctop.lb.request import plan_of, resolved

        if self.lb is None:
            raise RuntimeError(self.lb_note or "no load balancer configured")
        lb = self.lb

        def run() -> Plan:
            req = resolved(lb, request)
            with self._holding([req.backend]):
                return plan_of(lb, req)

        return await asyncio.to_thread(run)

    async def lb_action(self, request: ActionRequest, actor: Actor | None = None) -> ActionResult:
        """Run one change (a UI's key, `ctop lb`, through the control socket): one at a time per
        balancer, recorded in the journal as `actor`, published as an event, LB view refreshed.
        """
        from ctop.lb.actions import ActionResult
        from ctop.lb.base import LBError
        from ctop.lb.request import perform, resolved

        if self.lb is None:
            raise RuntimeError(self.lb_note or "no load balancer configured")
        lb = self.lb
        if request.verb == "advice" and request.value is None and not self.readonly:
            # the weight the operator confirmed in the dialog, else the current advice
            request = replace(request, value=self._advised(request.service, request.server))

        def run() -> ActionResult:
            try:
                req = resolved(lb, request)
            except LBError as exc:
                return ActionResult(False, exc.message, request.action, request.backend,
                                    request.service, request.server, None, None,
                                    origin=request.origin)
            if self.readonly and not req.dry_run:  # a dry run changes nothing
                return ActionResult(False, READONLY_REFUSAL, req.action, req.backend,
                                    req.service, req.server, None, None, origin=req.origin)
            with self._holding([req.backend]):
                return perform(lb, req, actor)

        result = await asyncio.to_thread(run)
        if result.dry_run:  # the what-if: nothing happened, nothing to tell the others
            return result
        self._note_action(result, actor=actor)
        try:
            await asyncio.to_thread(self._locked_round)
        except Exception as e:
            self._lb_error = getattr(e, "message", None) or str(e)
        # show the outcome now rather than at the next tick
        self._snapshot = replace(self._snapshot, lb=self._lb_views, lb_error=self._lb_error,
                                 imbalance=self._lb_imbalance, events=tuple(self.events))
        return result


READONLY_REFUSAL = ("read-only: this ctop refuses load-balancer changes (--readonly, "
                    "readonly = true or [lb] readonly = true)")


class EventLogHandler(logging.Handler):
    """While the UI owns the terminal, warnings become events in the alert pane instead of
    text on stderr (which would tear the screen)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(logging.WARNING)
        self.engine = engine

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = EventView(record.created, "log", "", f"{record.levelname.lower()}: "
                              f"{record.getMessage()}")
            self.engine._note([event])
        except Exception:
            self.handleError(record)


def log_to_events(engine: Engine) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(EventLogHandler(engine))
    root.setLevel(logging.WARNING)
