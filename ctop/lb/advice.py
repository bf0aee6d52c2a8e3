"""Weight advice: weights from measured capacity and load, damped and bounded.

LVS weights are usually set once and ignore what the real servers can actually carry. Here a
server's capacity is estimated from what it does now (docs/loadbalancer.md has the formula):

    busy_i     = cores_i * (1 - idle_i)               cores in use
    cost_i     = busy_i / load_i                      cores per active connection
    capacity_i = cores_i / cost_i                     connections it could carry at 100 % CPU
    lat_i      = clamp(sqrt(median_latency / latency_i), latency_floor, 1)
    target_i   = total_weight * capacity_i * lat_i / sum_j(capacity_j * lat_j)

Servers too idle to measure (busy below min_busy, or fewer than min_load connections: the cost
of one or two connections is noise) use the median cost of the others, so an idle server is
sized by its cores. The target does not depend on the current weights (only their
sum), which is why following it converges instead of chasing itself. On top of that each step
moves at most max_step of the current weight (at least 1), a dead band ignores small
differences, and the result stays inside [min_weight, max_weight]. Advice never drains: a
weight of 0 is for operators and auto-quiesce.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ServerLoad:
    server: str
    weight: int  # current effective weight
    cores: float | None  # None: no agent data, keep its weight
    cpu_idle: float | None  # 0..1
    load: float  # active connections (or new connections per second; the same for all)
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class AdvicePolicy:
    auto: bool = False  # apply advice by itself (opt-in)
    max_step: float = 0.25  # move at most this fraction of the current weight per step
    deadband: float = 0.10  # ignore differences within this fraction of the current weight
    min_weight: int = 1
    max_weight: int = 100
    min_busy: float = 0.05  # below this CPU use a server's cost per connection is noise
    min_load: float = 5.0  # and below this many connections (or connections/s) too
    latency_floor: float = 0.5  # slow servers lose at most half their weight for latency


@dataclass(frozen=True, slots=True)
class Advice:
    server: str
    current: int
    target: float | None  # undamped target weight (None: not enough data)
    suggested: int  # damped and bounded; == current when nothing to do
    capacity: float | None
    reason: str

    @property
    def change(self) -> bool:
        return self.suggested != self.current


def cost_per_connection(cores: float, cpu_idle: float, load: float,
                        policy: AdvicePolicy) -> float | None:
    """Cores in use per connection (or per connection/s); None while too idle to measure.
    Also the anomaly detector's measure of a sick node (ctop/anomaly/groups.py)."""
    busy = cores * (1.0 - min(max(cpu_idle, 0.0), 1.0))
    if cores <= 0 or busy / cores < policy.min_busy or load <= 0 or load < policy.min_load:
        return None
    return busy / load


def advise(loads: Iterable[ServerLoad], policy: AdvicePolicy | None = None) -> list[Advice]:
    pol = policy or AdvicePolicy()
    loads = list(loads)
    # drained servers (weight 0) are not advised: bringing them back is not advice's call
    usable = [s for s in loads if s.weight > 0 and (s.cores or 0) > 0 and s.cpu_idle is not None]
    if len(usable) < 2:  # a single server has nothing to be balanced against
        return [Advice(s.server, s.weight, None, s.weight, None, "not enough data") for s in loads]

    costs: dict[str, float] = {}
    cores = {s.server: float(s.cores or 0.0) for s in usable}
    for s in usable:
        cost = cost_per_connection(cores[s.server], s.cpu_idle or 0.0, s.load, pol)
        if cost is not None:
            costs[s.server] = cost
    fallback = statistics.median(costs.values()) if costs else 1.0
    lats = [s.latency_ms for s in usable if s.latency_ms and s.latency_ms > 0]
    mid_lat = statistics.median(lats) if len(lats) >= 2 else None

    score: dict[str, float] = {}
    capacity: dict[str, float] = {}
    for s in usable:
        capacity[s.server] = cores[s.server] / costs.get(s.server, fallback)
        factor = 1.0
        if mid_lat and s.latency_ms and s.latency_ms > 0:
            factor = min(1.0, max(pol.latency_floor, math.sqrt(mid_lat / s.latency_ms)))
        score[s.server] = capacity[s.server] * factor
    total_score = sum(score.values())
    total_weight = sum(s.weight for s in usable) or pol.min_weight * 10 * len(usable)

    out = []
    for s in loads:
        if s.server not in score:
            out.append(Advice(s.server, s.weight, None, s.weight, None, "no capacity data"))
            continue
        target = total_weight * score[s.server] / total_score
        out.append(_damped(s, target, capacity[s.server], pol))
    return out


def _damped(s: ServerLoad, target: float, cap: float, pol: AdvicePolicy) -> Advice:
    cur = s.weight
    diff = target - cur
    if abs(diff) <= pol.deadband * max(cur, 1) or abs(diff) < 0.5:
        held = max(pol.min_weight, min(pol.max_weight, cur))
        why = (
            "within dead band" if held == cur else f"bounded to {pol.min_weight}..{pol.max_weight}"
        )
        return Advice(s.server, cur, target, held, cap, why)
    limit = max(1.0, pol.max_step * cur)
    step = max(-limit, min(limit, diff))
    new = round(cur + step)
    new = max(pol.min_weight, min(pol.max_weight, new))
    if abs(step) < abs(diff):
        reason = f"towards {target:.1f}, limited to {pol.max_step:.0%} per step"
    else:
        reason = f"to {target:.1f}"
    if new != round(cur + step):
        reason += f" (bounded to {pol.min_weight}..{pol.max_weight})"
    return Advice(s.server, cur, target, new, cap, reason)


class WeightAdvisor:
    """advise() over smoothed measurements: CPU idle, load and latency are averaged (EWMA)
    per server, so one noisy sample can't move a weight. Keep one per service."""

    def __init__(self, policy: AdvicePolicy | None = None, alpha: float = 0.3) -> None:
        self.policy = policy or AdvicePolicy()
        self.alpha = alpha
        self._avg: dict[str, tuple[float, float, float | None]] = {}

    def advise(self, loads: Iterable[ServerLoad]) -> list[Advice]:
        smoothed = []
        for s in loads:
            if s.cpu_idle is None:
                smoothed.append(s)
                continue
            prev = self._avg.get(s.server)
            if prev is None:
                cur = (s.cpu_idle, s.load, s.latency_ms)
            else:
                a = self.alpha
                lat = s.latency_ms
                if lat is not None and prev[2] is not None:
                    lat = a * lat + (1 - a) * prev[2]
                cur = (a * s.cpu_idle + (1 - a) * prev[0], a * s.load + (1 - a) * prev[1], lat)
            self._avg[s.server] = cur
            smoothed.append(replace(s, cpu_idle=cur[0], load=cur[1], latency_ms=cur[2]))
        return advise(smoothed, self.policy)
