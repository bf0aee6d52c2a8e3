"""One load-balancer round at a time, off the engine's loop (a worker thread).

A round reads the tables, picks the checks that judge each real server and counts their new
results (ctop.lb.health), runs the director's own checks for real servers whose agent is
silent (ctop.lb.director_checks), lets automation act (ctop.lb.automation), compares the
balancer with the journal's intent (ctop.lb.drift), computes weight advice and builds the
views. The engine only schedules rounds and records what they report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctop.lb.actions import ActionResult, LBController
from ctop.lb.advice import ServerLoad, WeightAdvisor
from ctop.lb.automation import AutoQuiescer, Health, Key, QuiescePolicy, ResultStreak
from ctop.lb.base import VirtualService
from ctop.lb.config import LBConfig
from ctop.lb.director_checks import DirectorChecks, director_spec
from ctop.lb.drift import DriftWatch, find_drift
from ctop.lb.health import DIRECTOR, ResultReader, ServerChecks, checks_for
from ctop.lb.ratio import imbalance_index, load_basis, map_servers_to_nodes, server_ratios
from ctop.lb.reassert import reassert
from ctop.snapshot import EventView, LBServiceView, Liveness, RealServerView, Snapshot

_GONE = (Liveness.DEAD, Liveness.LEFT)


@dataclass(slots=True)
class RoundOutcome:
    services: list[VirtualService]
    views: tuple[LBServiceView, ...]
    imbalance: float
    actions: list[tuple[ActionResult, str]] = field(default_factory=list)  # (result, why)
    events: list[EventView] = field(default_factory=list)


def node_addresses(snap: Snapshot) -> dict[str, list[str]]:
    """node -> the addresses it announced, and the one its datagrams come from."""
    out = {}
    for n in snap.nodes:
        addrs = list(n.addresses)
        if n.source and n.source not in addrs:
            addrs.append(n.source)
        out[n.node_id] = addrs
    return out


class LBMonitor:
    def __init__(
        self, lb: LBController, cfg: LBConfig | None = None,
        quiescer: AutoQuiescer | None = None,
    ) -> None:
        self.lb = lb
        self.cfg = cfg or LBConfig()
        self.quiescer = quiescer
        self.reader = ResultReader()
        self.director = DirectorChecks()
        self.drift = DriftWatch()
        self.checks: dict[Key, ServerChecks] = {}
        self._advisors: dict[tuple[str, str], Any] = {}
        self._counted: dict[Key, tuple[str, ...]] = {}  # checks counting last round
        self._wanted: dict[str, tuple[Key, str]] = {}  # director check name -> (server, probe)
        self.rounds = 0  # rounds run (tests and the bench compare it with results counted)
        # one round at a time (the loop's and an action's refresh): each result counts once
        self._lock = threading.Lock()

    def close(self) -> None:
        self.director.close()

    def urgent(self, snap: Snapshot) -> bool:
        """A failed result that automation has not counted yet: run a round now rather than
        at the next `lb_every`, so a failing server is pulled within moments of the result
        that decides it. Cheap (no balancer read): the engine asks between rounds."""
        if self.quiescer is None:
            return False
        for key, checks in list(self._counted.items()):
            sc = self.checks.get(key)
            node = snap.node(sc.node_id) if sc is not None else None
            if node is not None and node.liveness not in _GONE and self.reader.new_failure(
                    key, node.boot, node.services, checks):
                return True
        latest, counts = self.director.results()  # and the director's own checks
        return any(
            (r := latest.get(name)) is not None and r.status == "fail"
            and self.reader.new_director_failure(key, check, counts.get(name))
            for name, (key, check) in list(self._wanted.items())
        )

    def round(self, snap: Snapshot, readonly: bool = False) -> RoundOutcome:
        with self._lock:
            return self._round(snap, readonly)

    def _round(self, snap: Snapshot, readonly: bool) -> RoundOutcome:
        self.rounds += 1
        services = self.lb.services()
        owners = map_servers_to_nodes(services, node_addresses(snap))
        outcome = RoundOutcome(services, (), 0.0)
        if self.quiescer is not None:
            results, active = self._health(services, owners, snap)
            done = self.quiescer.step(results, active=active, services=services)
            for decision, result in done:
                if result is not None and result.applied:
                    outcome.actions.append((result, f"auto: {decision.reason}"))
            if any(r is not None and r.applied for _, r in done):
                services = self.lb.services()
        else:
            self._map(services, owners, snap)
        new_drift = self._drift(services, owners, outcome.events)
        if self.cfg.reassert and not readonly and new_drift:
            outcome.actions += reassert(self.lb, new_drift)
            services = self.lb.services()
            self._drift(services, owners, outcome.events)  # "drift resolved", or still there
        advice = self._advise(services, owners, snap)
        if self.cfg.advice.auto and not readonly:
            changed = False
            for (balancer, service, server), weight in advice.items():
                result = self.lb.set_weight(balancer, service, server, weight, origin="auto")
                if result.applied:
                    changed = True
                    outcome.actions.append((result, "auto: weight advice"))
            if changed:
                services = self.lb.services()
                advice = {}
        outcome.services = services
        outcome.views, outcome.imbalance = self._views(services, owners, advice)
        return outcome

    # -- health ----------------------------------------------------------------------------

    def _policy(self, balancer: str, service: str) -> QuiescePolicy:
        return self.quiescer.policy(balancer, service) if self.quiescer else QuiescePolicy()

    def _map(self, services: Sequence[VirtualService], owners: Mapping[Key, str],
             snap: Snapshot) -> None:
        self.checks = {}
        for vs in services:
            for rs in vs.servers:
                key = (vs.balancer, vs.key, rs.key)
                node = snap.node(owners.get(key, ""))
                probes = node.probes if node is not None else ()
                self.checks[key] = checks_for(key, node.node_id if node else "", rs.port,
                                              probes, self.cfg.checks)

    def _health(
        self, services: Sequence[VirtualService], owners: Mapping[Key, str],
        snap: Snapshot,
    ) -> tuple[list[Health], dict[Key, tuple[tuple[str, ...], bool]]]:
        """New results of each automated server's checks, and which checks count now: the
        agent's while it reports, the director's own while it is dead."""
        self._map(services, owners, snap)
        results: list[Health] = []
        active: dict[Key, tuple[tuple[str, ...], bool]] = {}
        wanted: dict[str, tuple[Key, str]] = {}
        specs = {}
        for vs in services:
            if not self._policy(vs.balancer, vs.key).enabled:
                continue
            for rs in vs.servers:
                key = (vs.balancer, vs.key, rs.key)
                sc = self.checks[key]
                node = snap.node(sc.node_id)
                if node is None or not sc.checks:
                    continue
                if node.liveness in _GONE:
                    by_name = {p.name: p for p in node.probes}
                    for c in sc.checks:
                        name = f"{vs.balancer}/{vs.key}/{rs.key}/{c}"
                        wanted[name] = (key, c)
                        specs[name] = director_spec(name, by_name.get(c), rs.address, rs.port)
                    counted = tuple(DIRECTOR + c for c in sc.checks)
                    active[key] = (counted, True)
                else:
                    results += self.reader.agent_results(key, node.boot, node.services,
                                                         sc.checks)
                    counted = sc.checks
                    active[key] = (counted, False)
                before = self._counted.get(key, ())
                if before != counted:  # switched between agent and director: start afresh
                    stale = [c for c in before if c not in counted]
                    self.quiescer.tracker.forget(key, stale)  # type: ignore[union-attr]
                    self.reader.forget(key, stale)
        for key in self._counted.keys() - active.keys():  # no longer judged: no stale streaks
            self.quiescer.tracker.forget(key, self._counted[key])  # type: ignore[union-attr]
            self.reader.forget(key, self._counted[key])
        self._counted = {k: c for k, (c, _) in active.items()}
        self._wanted = wanted
        self.director.want(specs)
        latest, counts = self.director.results()
        for name, (key, check) in wanted.items():
            r = latest.get(name)
            results += self.reader.director_results(key, check, r.status if r else None,
                                                    counts.get(name))
        return results, active

    def _health_text(self, key: Key) -> str:
        """What the LB pane and `ctop status` say about a server's automation."""
        sc = self.checks.get(key)
        balancer, service, _ = key
        pol = self._policy(balancer, service)
        if sc is None or not pol.enabled:
            return ""
        if not sc.node_id:
            return "no agent announces this address: no automation"
        if not sc.checks:
            return f"no check on port {sc.port}: no automation"
        c = self.quiescer.tracker.counters.get(key) if self.quiescer else None
        c = c or ResultStreak()
        who = "director checks " if c.node_dead else ""
        state = (f"{c.fails}/{pol.quiesce_after} failed" if c.fails
                 else f"{c.oks} ok" if c.oks else "no result yet")
        return f"{who}{', '.join(sc.checks)}: {state}"

    # -- drift -----------------------------------------------------------------------------

    def _drift(self, services: Sequence[VirtualService], owners: Mapping[Key, str],
               events: list[EventView]) -> list[Key]:
        """Drift events into `events`; returns the keys whose drift is new or changed."""
        journal = self.lb.journal
        found = find_drift(services, journal.intents() if journal is not None else [])
        new, gone = self.drift.update(found)
        now = time.time()
        events += [EventView(now, "drift", owners.get(d.key, ""),
                             f"drift {' '.join(d.key)}: {d.text} (R re-applies, L accepts live)")
                   for d in new]
        events += [EventView(now, "drift", owners.get(k, ""),
                             f"drift resolved {' '.join(k)}") for k in gone]
        return [d.key for d in new]

    # -- advice and views ------------------------------------------------------------------

    def _advise(self, services: Sequence[VirtualService], owners: Mapping[Key, str],
                snap: Snapshot) -> dict[Key, int]:
        """Suggested weights from measured capacity and load; only those that differ."""
        out: dict[Key, int] = {}
        for vs in services:
            loads = []
            by_rate = load_basis(vs) == "rate"  # the same measure the ratios are taken of
            for rs in vs.servers:
                node = snap.node(owners.get((vs.balancer, vs.key, rs.key), ""))
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
            advisor = self._advisors.setdefault((vs.balancer, vs.key),
                                                WeightAdvisor(self.cfg.advice))
            for a in advisor.advise(loads):
                if a.change:
                    out[(vs.balancer, vs.key, a.server)] = a.suggested
        return out

    def _views(
        self, services: Sequence[VirtualService], owners: Mapping[Key, str],
        advice: Mapping[Key, int],
    ) -> tuple[tuple[LBServiceView, ...], float]:
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
                key = (vs.balancer, vs.key, rs.key)
                drift = self.drift.current.get(key)
                servers.append(RealServerView(
                    key=rs.key, address=rs.address, port=rs.port, weight=rs.weight,
                    state=str(rs.state), active_conns=rs.active_conns,
                    inactive_conns=rs.inactive_conns, conns_per_s=rs.conns_per_s,
                    node_id=owners.get(key, ""),
                    conn_share=((r.rate_share if by_rate else r.conn_share) or 0.0) if r else 0.0,
                    weight_share=r.weight_share if r else 0.0,
                    ratio=(r.rate_ratio if by_rate else r.conn_ratio) if r else None,
                    advised_weight=advice.get(key),
                    forward=rs.forward,
                    health=self._health_text(key),
                    drift=drift.text if drift is not None else "",
                ))
            views.append(LBServiceView(vs.key, vs.balancer, vs.protocol, vs.scheduler,
                                       tuple(servers), index, basis))
        return tuple(views), worst
