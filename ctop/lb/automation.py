"""Auto-quiesce (ldirectord's quiescent mode, keepalived's inhibit_on_failure), off by default.

A real server is judged by the probe RESULTS of the checks that check it (ctop.lb.health
picks them and numbers each result once). When any of its checks failed `quiesce_after`
results in a row it is drained (weight 0 on IPVS, state drain on HAProxy) with origin "auto";
when every one of its checks has `restore_after` good results in a row it goes back to the
exact weight it had. warn counts as good; "not checked yet" counts as nothing. A dead node's
agent results are not used: the director checks the real server itself, and only those
results count (a lossy agent link never pulls a healthy server). Automation never quiesces
the last serving real server of a service (unless keep_last = false) and never touches a
server an operator drained, as long as the balancer still shows it drained (a stale record,
after a reset outside ctop, does not block it: see ctop.lb.drift).

`decide()` is pure (table + counters + intent in, decisions out); `AutoQuiescer` acts on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ctop.lb.actions import ActionResult, LBController, is_drained
from ctop.lb.base import ServerState, VirtualService
from ctop.lb.journal import Intent

Key = tuple[str, str, str]  # (balancer, service key, server key)


@dataclass(frozen=True, slots=True)
class QuiescePolicy:
    enabled: bool = False
    quiesce_after: int = 3  # failed results in a row (of any one of the server's checks)
    restore_after: int = 2  # good results in a row (of every one of its checks)
    keep_last: bool = True  # never quiesce the last serving real server


@dataclass(frozen=True, slots=True)
class Health:
    """One new probe result for one real server (each result is observed once)."""

    balancer: str
    service: str
    server: str
    check: str  # the probe name ("director:<name>" for the director's own check)
    ok: bool  # warn is ok; a result that is neither ok nor failed is never a Health


@dataclass(slots=True)
class ResultStreak:
    """Probe results in a row: of one check of a real server, or of the server over its
    checks (its worst failing streak, its least good one)."""

    fails: int = 0  # failed results in a row (the worst of the server's checks)
    oks: int = 0  # good results in a row (the least of the server's checks)
    node_dead: bool = False  # judged by the director's checks: the agent is silent


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # "quiesce" | "restore" | "hold"
    balancer: str
    service: str
    server: str
    reason: str


class HealthTracker:
    """Results in a row, per real server and check; a server's counters over its checks."""

    def __init__(self) -> None:
        self.streaks: dict[tuple[Key, str], ResultStreak] = {}
        self.counters: dict[Key, ResultStreak] = {}

    def observe(self, results: Iterable[Health]) -> None:
        for h in results:
            key = (h.balancer, h.service, h.server)
            c = self.streaks.setdefault((key, h.check), ResultStreak())
            if h.ok:
                c.fails, c.oks = 0, c.oks + 1
            else:
                c.fails, c.oks = c.fails + 1, 0

    def judge(self, active: Mapping[Key, tuple[tuple[str, ...], bool]]) -> None:
        """Server counters from the checks that count now: key -> (checks, node dead).
        A server no check judges has no counters (no automation)."""
        self.counters = {}
        for key, (checks, dead) in active.items():
            if not checks:
                continue
            # a check without any result yet ("not checked yet") neither fails nor holds a
            # restore back
            streaks = [self.streaks[(key, c)] for c in checks if (key, c) in self.streaks]
            self.counters[key] = ResultStreak(
                fails=max((s.fails for s in streaks), default=0),
                oks=min((s.oks for s in streaks), default=0), node_dead=dead)

    def known(self) -> dict[Key, tuple[tuple[str, ...], bool]]:
        """Every server with the checks it has results for (callers without a mapping)."""
        seen: dict[Key, list[str]] = {}
        for key, check in self.streaks:
            seen.setdefault(key, []).append(check)
        return {key: (tuple(checks), False) for key, checks in seen.items()}

    def forget(self, key: Key, checks: Iterable[str]) -> None:
        """Checks that stopped counting start from scratch next time (no stale streaks)."""
        for c in checks:
            self.streaks.pop((key, c), None)


PolicyLookup = Callable[[str, str], QuiescePolicy]


def policy_lookup(
    policies: Mapping[str, QuiescePolicy], default: QuiescePolicy | None = None
) -> PolicyLookup:
    """Policies keyed "balancer:service" or just the service key; otherwise `default` (off)."""
    fallback = default or QuiescePolicy()

    def lookup(balancer: str, service: str) -> QuiescePolicy:
        return policies.get(f"{balancer}:{service}") or policies.get(service) or fallback

    return lookup


def _serving(vs: VirtualService) -> set[str]:
    return {rs.key for rs in vs.servers if rs.state == ServerState.SERVING and rs.weight > 0}


def decide(
    services: Iterable[VirtualService],
    counters: Mapping[Key, ResultStreak],
    intents: Mapping[Key, Intent],
    policy: PolicyLookup,
) -> list[Decision]:
    """What automation should do now. Pure: no I/O."""
    out: list[Decision] = []
    for vs in services:
        pol = policy(vs.balancer, vs.key)
        if not pol.enabled:
            continue
        serving = _serving(vs)
        for rs in vs.servers:
            key = (vs.balancer, vs.key, rs.key)
            c = counters.get(key)
            if c is None:
                continue
            intent = intents.get(key)
            out_now = is_drained(rs) or rs.state == ServerState.MAINT
            if intent is not None and intent.drained and not out_now:
                intent = None  # stale: the balancer was reset outside ctop (drift reports it)
            ours = intent is not None and intent.drained_by == "auto"
            if intent is not None and intent.human_drain:
                if c.fails >= pol.quiesce_after:
                    out.append(Decision("hold", *key, f"drained by {intent.drained_by}"))
                continue
            failing = c.fails >= pol.quiesce_after
            if failing and not out_now:
                why = f"{c.fails} failed results in a row"
                if c.node_dead:
                    why = f"node dead and the director's own check failed {c.fails} times"
                if pol.keep_last and serving <= {rs.key}:
                    out.append(Decision("hold", *key, f"{why}, but last serving real server"))
                    continue
                serving.discard(rs.key)
                out.append(Decision("quiesce", *key, why))
            elif ours and c.oks >= pol.restore_after:
                out.append(Decision("restore", *key, f"{c.oks} good results in a row"))
    return out


class AutoQuiescer:
    """Feeds health rounds to the tracker and carries out the decisions via the controller.

    A failed action is not retried every round (that would flood the journal and the event
    pane with the same error several times a second): the same action on the same server
    waits `retry_after` seconds, doubling after each failure up to `retry_max`.
    """

    def __init__(
        self,
        controller: LBController,
        policy: PolicyLookup,
        *,
        retry_after: float = 10.0,
        retry_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self.policy = policy
        self.tracker = HealthTracker()
        self.retry_after, self.retry_max, self.clock = retry_after, retry_max, clock
        # (kind, balancer, service, server) -> (not before, next delay)
        self._backoff: dict[tuple[str, str, str, str], tuple[float, float]] = {}

    def step(
        self,
        results: Iterable[Health] = (),
        *,
        active: Mapping[Key, tuple[tuple[str, ...], bool]] | None = None,
        services: Iterable[VirtualService] | None = None,
    ) -> list[tuple[Decision, ActionResult | None]]:
        """Count this round's new results, judge each server by its `active` checks (key ->
        (checks, node dead); default: every check seen so far) and act on the verdict."""
        self.tracker.observe(results)
        self.tracker.judge(self.tracker.known() if active is None else active)
        services = self.controller.services() if services is None else services
        journal = self.controller.journal
        intents = {
            (i.balancer, i.service, i.server): i for i in (journal.intents() if journal else [])
        }
        done: list[tuple[Decision, ActionResult | None]] = []
        now = self.clock()
        for d in decide(services, self.tracker.counters, intents, self.policy):
            result = None
            attempt = (d.kind, d.balancer, d.service, d.server)
            if d.kind in ("quiesce", "restore"):
                not_before, delay = self._backoff.get(attempt, (0.0, self.retry_after))
                if now < not_before:
                    continue
                act = self.controller.drain if d.kind == "quiesce" else self.controller.restore
                result = act(d.balancer, d.service, d.server, origin="auto")
                if result.ok:
                    self._backoff.pop(attempt, None)
                else:
                    self._backoff[attempt] = (now + delay, min(delay * 2, self.retry_max))
            done.append((d, result))
        return done
