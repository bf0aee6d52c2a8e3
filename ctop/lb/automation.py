"""Auto-quiesce (ldirectord's quiescent mode, keepalived's inhibit_on_failure), off by default.

A real server whose node is dead, or whose service check failed `quiesce_after` times in a
row, is drained (weight 0 on IPVS, state drain on HAProxy) with origin "auto"; after
`restore_after` healthy checks in a row it goes back to the exact weight it had. It never
quiesces the last serving real server of a service (unless keep_last = false) and never
touches a server an operator drained.

`decide()` is pure (table + counters + intent in, decisions out); `AutoQuiescer` acts on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ctop.lb.actions import ActionResult, LBController, is_drained
from ctop.lb.base import ServerState, VirtualService
from ctop.lb.journal import Intent

Key = tuple[str, str, str]  # (backend, service key, server key)


@dataclass(frozen=True, slots=True)
class QuiescePolicy:
    enabled: bool = False
    quiesce_after: int = 3  # consecutive failed checks
    restore_after: int = 2  # consecutive healthy checks
    keep_last: bool = True  # never quiesce the last serving real server


@dataclass(frozen=True, slots=True)
class Health:
    """One round of health input for one real server."""

    backend: str
    service: str
    server: str
    check_ok: bool | None = None  # None: no check result this round
    node_dead: bool = False


@dataclass(slots=True)
class Counters:
    fails: int = 0  # consecutive failed checks
    oks: int = 0  # consecutive healthy checks
    node_dead: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # "quiesce" | "restore" | "hold"
    backend: str
    service: str
    server: str
    reason: str


class HealthTracker:
    """Consecutive failure / success counts per real server."""

    def __init__(self) -> None:
        self.counters: dict[Key, Counters] = {}

    def observe(self, rounds: Iterable[Health]) -> None:
        for h in rounds:
            c = self.counters.setdefault((h.backend, h.service, h.server), Counters())
            c.node_dead = h.node_dead
            if h.node_dead or h.check_ok is False:
                c.fails, c.oks = c.fails + 1, 0
            elif h.check_ok:
                c.fails, c.oks = 0, c.oks + 1


PolicyLookup = Callable[[str, str], QuiescePolicy]


def policy_lookup(
    policies: Mapping[str, QuiescePolicy], default: QuiescePolicy | None = None
) -> PolicyLookup:
    """Policies keyed "backend:service" or just the service key; otherwise `default` (off)."""
    fallback = default or QuiescePolicy()

    def lookup(backend: str, service: str) -> QuiescePolicy:
        return policies.get(f"{backend}:{service}") or policies.get(service) or fallback

    return lookup


def _serving(vs: VirtualService) -> set[str]:
    return {rs.key for rs in vs.servers if rs.state == ServerState.SERVING and rs.weight > 0}


def decide(
    services: Iterable[VirtualService],
    counters: Mapping[Key, Counters],
    intents: Mapping[Key, Intent],
    policy: PolicyLookup,
) -> list[Decision]:
    """What automation should do now. Pure: no I/O."""
    out: list[Decision] = []
    for vs in services:
        pol = policy(vs.backend, vs.key)
        if not pol.enabled:
            continue
        serving = _serving(vs)
        for rs in vs.servers:
            key = (vs.backend, vs.key, rs.key)
            c = counters.get(key)
            if c is None:
                continue
            intent = intents.get(key)
            ours = intent is not None and intent.drained_by == "auto"
            if intent is not None and intent.human_drain:
                if c.node_dead or c.fails >= pol.quiesce_after:
                    out.append(Decision("hold", *key, f"drained by {intent.drained_by}"))
                continue
            failing = c.node_dead or c.fails >= pol.quiesce_after
            if failing and not is_drained(rs) and rs.state != ServerState.MAINT:
                why = "node dead" if c.node_dead else f"{c.fails} failed checks in a row"
                if pol.keep_last and serving <= {rs.key}:
                    out.append(Decision("hold", *key, f"{why}, but last serving real server"))
                    continue
                serving.discard(rs.key)
                out.append(Decision("quiesce", *key, why))
            elif ours and not c.node_dead and c.oks >= pol.restore_after:
                out.append(Decision("restore", *key, f"{c.oks} healthy checks in a row"))
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
        # (kind, backend, service, server) -> (not before, next delay)
        self._backoff: dict[tuple[str, str, str, str], tuple[float, float]] = {}

    def step(self, rounds: Iterable[Health]) -> list[tuple[Decision, ActionResult | None]]:
        self.tracker.observe(rounds)
        services = self.controller.services()
        journal = self.controller.journal
        intents = {
            (i.backend, i.service, i.server): i for i in (journal.intents() if journal else [])
        }
        done: list[tuple[Decision, ActionResult | None]] = []
        now = self.clock()
        for d in decide(services, self.tracker.counters, intents, self.policy):
            result = None
            attempt = (d.kind, d.backend, d.service, d.server)
            if d.kind in ("quiesce", "restore"):
                not_before, delay = self._backoff.get(attempt, (0.0, self.retry_after))
                if now < not_before:
                    continue
                act = self.controller.drain if d.kind == "quiesce" else self.controller.restore
                result = act(d.backend, d.service, d.server, origin="auto")
                if result.ok:
                    self._backoff.pop(attempt, None)
                else:
                    self._backoff[attempt] = (now + delay, min(delay * 2, self.retry_max))
            done.append((d, result))
        return done
