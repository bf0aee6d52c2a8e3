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
from agentd.wire import Join, Message, RawReport, Verifier, load_key
from ctop.alerts import AlertEngine, HookRunner, parse_hooks, parse_rules
from ctop.cluster import ClusterModel
from ctop.collector import Receiver
from ctop.config import DirectorConfig, effective_readonly
from ctop.gcpolicy import process_heap
from ctop.model import EventView, LBServiceView, Liveness, RealServerView, Snapshot
from ctop.store import Store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.advice import WeightAdvisor
    from ctop.lb.automation import AutoQuiescer
    from ctop.lb.base import VirtualService
    from ctop.lb.config import LBConfig
    from ctop.lb.journal import Actor
    from ctop.lb.request import ActionRequest

log = logging.getLogger(__name__)

EVENTS_KEPT = 200  # recent events carried in each snapshot
FOLD_BATCH = 256  # deferred report bodies checked per idle moment of the socket (~2 ms)


class Engine:
    records_actions = True  # every lb_action becomes an event (the UI adds none of its own)

    def __init__(
        self, config: DirectorConfig, *, key: bytes | None = None, lb: LBController | None = None
    ) -> None:
        self.config = config
        self.readonly = effective_readonly(config)
        self.key = key if key is not None else load_key(config.key_file)
        self.verifier = Verifier(self.key, max_age=config.max_age, max_skew=config.max_age)
        self.model = ClusterModel(config.cluster, config.liveness)
        # Deferred: reports' bodies are checked when the tick folds them in (newest per node);
        # a body refused then still counts as a receiver drop (bad_field).
        self.receiver = Receiver(self.verifier, self._on_message, *config.listen, deferred=True,
                                 on_beacon=self._on_beacon)
        self.model.on_reject = lambda rejected, source: self.receiver.count_drop(
            rejected, source, accepted=True)
        self.receiver.on_idle = lambda: self.model.fold_some(FOLD_BATCH)
        self.alerts = AlertEngine(parse_rules(config.alerts), config.cluster)
        self.hooks = HookRunner(parse_hooks(config.hooks))
        self.heap = process_heap  # large clusters: no cyclic GC passes over the model
        self.store: Store | None = None
        self.lb: LBController | None = lb
        self.quiescer: AutoQuiescer | None = None
        self.lb_note = ""
        self._lb_error = ""
        self._lb_services: list[VirtualService] = []
        self._lb_cfg: LBConfig | None = None
        self._advisors: dict[tuple[str, str], WeightAdvisor] = {}
        self._lb_views: tuple[LBServiceView, ...] = ()
        self._lb_imbalance = 0.0
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
        self._states_changed = False  # a liveness state changed since the snapshot was made
        self.tick_seconds = 0.0  # CPU time of the last tick, for the status output

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.store = Store(
            self.config.store.path,
            raw_retention=self.config.store.raw_retention,
            minute_retention=self.config.store.minute_retention,
            hourly_retention=self.config.store.hourly_retention,
            raw_every=self.config.store.raw_every,
        )
        self._setup_lb()
        self.receiver.open()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="ctop-tick"))
        self._tasks.append(asyncio.create_task(self._liveness_loop(), name="ctop-liveness"))
        if self.lb is not None:
            self._tasks.append(asyncio.create_task(self._lb_loop(), name="ctop-lb"))
        if self.config.prometheus:
            from ctop.prometheus import serve_metrics

            self._tasks.append(asyncio.create_task(serve_metrics(self, *self.config.prometheus)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.receiver.close()
        self.heap.release()
        await self.hooks.drain(timeout=5)
        if self.store is not None:
            self.store.record_events(self._pending_events)
            self._pending_events.clear()
            await asyncio.to_thread(self.store.close)

    @property
    def port(self) -> int:
        return self.receiver.port

    def _setup_lb(self) -> None:
        from ctop.lb.config import parse_config
        from ctop.lb.factory import build_controller, build_quiescer, status_line

        cfg = parse_config(self.config.lb)
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
        if isinstance(msg, Join):
            # Agents re-announce every 10 s; only what changed is written to the store again.
            node, facts = msg.header.node, msg[1:]
            if self._facts.get(node) != facts:
                self._facts[node] = facts
                self._joined.append(node)
        if events:
            self._note(events)
            self._states_changed = True

    def _on_beacon(self, beacon: Beacon, source: str, now: float) -> None:
        events = self.model.beacon(beacon, now)
        if events:
            self._note(events)
            self._states_changed = True

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
            self._states_changed = True

    def check_liveness(self, now: float) -> None:
        """Judge liveness between ticks; if a node changed state (here or on a message),
        publish its new state now. Alerts and history follow at the next tick."""
        self._judge(now)
        if not self._states_changed:
            return
        self._states_changed = False
        snap = self.model.snapshot(now, self._tick)
        self._snapshot = replace(
            self._snapshot, ts=now, nodes=snap.nodes, groups=snap.groups, totals=snap.totals,
            received=snap.received, events=tuple(self.events), _index=snap._index,
        )

    def tick(self, now: float) -> Snapshot:
        started = time.process_time()
        self._tick += 1
        self._judge(now)
        self._states_changed = False
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
            readonly=self.readonly,
        )
        self._snapshot = snap
        if self.store is not None:
            if self._joined:
                wanted = set(self._joined)
                self._joined.clear()
                self.store.record_nodes(v for v in snap.nodes if v.node_id in wanted)
            self.store.record_tick(now, snap.nodes, self._pending_events)
            self._pending_events = []
        self.heap.after_tick(len(snap.nodes))
        self.tick_seconds = time.process_time() - started
        return snap

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
            await asyncio.sleep(self.config.lb_every)

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
        """Worker thread: read the tables, run automation, rebuild the LB views."""
        assert self.lb is not None
        services = self.lb.services()
        if self.quiescer is not None:
            done = self.quiescer.step(self._health_rounds(services))
            for decision, result in done:
                if result is not None and result.applied:
                    self._note_action(result, f"auto: {decision.reason}")
            if any(r is not None and r.applied for _, r in done):
                services = self.lb.services()
        advice = self._advise(services)
        if self._lb_cfg is not None and self._lb_cfg.advice.auto and not self.readonly:
            changed = False
            for (backend, service, server), weight in advice.items():
                result = self.lb.set_weight(backend, service, server, weight, origin="auto")
                if result.applied:
                    changed = True
                    self._note_action(result, "auto: weight advice")
            if changed:
                services = self.lb.services()
                advice = {}
        self._lb_services = services
        self._lb_views, self._lb_imbalance = self._lb_view(services, advice)
        for text in self._empty_watch.observe(services):  # "a drained server is empty"
            self._note([EventView(time.time(), "action", "", text)])

    def _advise(self, services: Sequence[VirtualService]) -> dict[tuple[str, str, str], int]:
        """Suggested weights from measured capacity and load; only those that differ."""
        from ctop.lb.advice import ServerLoad, WeightAdvisor
        from ctop.lb.ratio import load_basis, map_servers_to_nodes

        policy = self._lb_cfg.advice if self._lb_cfg is not None else None
        owners = map_servers_to_nodes(services, self._node_addresses())
        out: dict[tuple[str, str, str], int] = {}
        for vs in services:
            loads = []
            by_rate = load_basis(vs) == "rate"  # the same measure the ratios are taken of
            for rs in vs.servers:
                node = self.model.nodes.get(owners.get((vs.backend, vs.key, rs.key), ""))
                usable = node is not None and node.liveness is Liveness.ALIVE and node.metrics
                latencies = [x.latency_ms for x in node.services if x.latency_ms] if usable else []
                loads.append(ServerLoad(
                    server=rs.key,
                    weight=rs.weight,
                    cores=(node.cores or len(node.metrics.get("cpu_cores", ())) or None)
                    if usable else None,
                    cpu_idle=1 - node.metrics.get("cpu_percent", 0.0) / 100 if usable else None,
                    load=rs.conns_per_s if by_rate else rs.active_conns,
                    latency_ms=sum(latencies) / len(latencies) if latencies else None,
                ))
            advisor = self._advisors.setdefault((vs.backend, vs.key), WeightAdvisor(policy))
            for a in advisor.advise(loads):
                if a.change:
                    out[(vs.backend, vs.key, a.server)] = a.suggested
        return out

    def _node_loads(
        self, backend: str, service: str
    ) -> dict[str, tuple[float | None, float | None]]:
        """{server: (cores, CPU %)} of one service's real servers from their agents, for the
        what-if (worker thread, like _advise)."""
        from ctop.lb.ratio import map_servers_to_nodes

        services = [vs for vs in self._lb_services if (vs.backend, vs.key) == (backend, service)]
        owners = map_servers_to_nodes(services, self._node_addresses())
        out: dict[str, tuple[float | None, float | None]] = {}
        for (_, _, server), node_id in owners.items():
            node = self.model.nodes.get(node_id)
            if node is None or node.liveness is not Liveness.ALIVE or not node.metrics:
                continue
            cores = node.cores or len(node.metrics.get("cpu_cores", ())) or None
            out[server] = (cores, node.metrics.get("cpu_percent"))
        return out

    def _node_addresses(self) -> dict[str, list[str]]:
        out = {}
        for n in list(self.model.nodes.values()):
            addrs = list(n.addresses)
            if n.source and n.source not in addrs:
                addrs.append(n.source)
            out[n.node_id] = addrs
        return out

    def _health_rounds(self, services: Sequence[VirtualService]) -> list[Any]:
        """Health input for auto-quiesce: the real server's node is dead, or its checks fail."""
        from ctop.lb.automation import Health
        from ctop.lb.ratio import map_servers_to_nodes

        owners = map_servers_to_nodes(services, self._node_addresses())
        rounds = []
        for (backend, service, server), node_id in owners.items():
            node = self.model.nodes.get(node_id)
            if node is None:
                continue
            dead = node.liveness in (Liveness.DEAD, Liveness.LEFT)
            statuses = [s.status for s in node.services]
            check = None if not statuses else all(s == "ok" for s in statuses)
            rounds.append(Health(backend, service, server, check_ok=check, node_dead=dead))
        return rounds

    def _lb_view(
        self, services: Sequence[VirtualService], advice: dict[tuple[str, str, str], int]
    ) -> tuple[tuple[LBServiceView, ...], float]:
        from ctop.lb.ratio import imbalance_index, load_basis, map_servers_to_nodes, server_ratios

        owners = map_servers_to_nodes(services, self._node_addresses())
        views = []
        worst = 0.0
        for vs in services:
            ratios = {r.server: r for r in server_ratios(vs)}
            basis = load_basis(vs)
            by_rate = basis == "rate"
            index = imbalance_index(ratios.values(), use=basis) or 0.0
            worst = max(worst, index)
            servers = []
            for rs in vs.servers:
                r = ratios.get(rs.key)
                servers.append(RealServerView(
                    key=rs.key, address=rs.address, port=rs.port, weight=rs.weight,
                    state=str(rs.state), active_conns=rs.active_conns,
                    inactive_conns=rs.inactive_conns, conns_per_s=rs.conns_per_s,
                    node_id=owners.get((vs.backend, vs.key, rs.key), ""),
                    conn_share=((r.rate_share if by_rate else r.conn_share) or 0.0) if r else 0.0,
                    weight_share=r.weight_share if r else 0.0,
                    ratio=(r.rate_ratio if by_rate else r.conn_ratio) if r else None,
                    advised_weight=advice.get((vs.backend, vs.key, rs.key)),
                    forward=rs.forward,
                ))
            views.append(LBServiceView(vs.key, vs.backend, vs.protocol, vs.scheduler,
                                       tuple(servers), index, basis))
        return tuple(views), worst

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
