"""What-if: each real server's predicted share and CPU after an action, before it runs.

Pure functions, used by the confirmation dialog and `ctop lb ... --dry-run` (in the daemon when
one runs, since only it has node metrics).

Model (the weight advice's, docs/loadbalancer.md):
    share_after_i = w_after_i / sum_j w_after_j            (effective weights: 0 when out)
    load_after_i  = total load * share_after_i            (load = the service's basis:
                                                           active conns or new conns/s)
    cost_i        = cores_i * cpu_i / load_i              cores per unit of load, measured on
                                                           servers busy enough to measure
                                                           (else the median of the others)
    cpu_after_i   = cpu_i + cost_i * (load_after_i - load_i) / cores_i
Only the change of load is costed, so a server's idle CPU (its own work) stays. Without CPU
data the shares alone are predicted and CPU is unknown.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerNow:
    server: str
    weight: int  # effective weight now (0 while drained or in maintenance)
    weight_after: int  # effective weight after the action
    load: float  # active connections or new connections per second now
    cores: float | None = None  # None: no node metrics for this server
    cpu_percent: float | None = None  # 0..100 now


@dataclass(frozen=True, slots=True)
class Prediction:
    server: str
    weight: int
    weight_after: int
    share: float  # 0..1 of the service's effective weight now
    share_after: float
    load_after: float
    cpu: float | None
    cpu_after: float | None  # None: unknown
    level: str = ""  # "" | "warn" | "crit": cpu_after above the cpu alert rule


def predict(
    servers: Sequence[ServerNow],
    *,
    cpu_warn: float | None = None,
    cpu_crit: float | None = None,
    min_busy: float = 0.05,
    min_load: float = 5.0,
) -> list[Prediction]:
    total_w = sum(max(s.weight, 0) for s in servers)
    total_after = sum(max(s.weight_after, 0) for s in servers)
    total_load = sum(s.load for s in servers)
    costs: dict[str, float] = {}
    for s in servers:
        if s.cores and s.cpu_percent is not None and s.load >= max(min_load, 1e-9):
            busy = s.cores * s.cpu_percent / 100
            if busy / s.cores >= min_busy:
                costs[s.server] = busy / s.load
    fallback = statistics.median(costs.values()) if costs else None
    out = []
    for s in servers:
        share = s.weight / total_w if total_w > 0 else 0.0
        share_after = s.weight_after / total_after if total_after > 0 else 0.0
        load_after = total_load * share_after
        cpu_after = None
        if s.cores and s.cpu_percent is not None:
            cost = costs.get(s.server, fallback)
            if cost is not None:
                cpu_after = s.cpu_percent + cost * (load_after - s.load) * 100 / s.cores
                cpu_after = max(0.0, min(100.0, cpu_after))
            elif abs(load_after - s.load) < 1e-9:
                cpu_after = s.cpu_percent
        level = ""
        if cpu_after is not None:
            if cpu_crit is not None and cpu_after > cpu_crit:
                level = "crit"
            elif cpu_warn is not None and cpu_after > cpu_warn:
                level = "warn"
        out.append(
            Prediction(
                s.server, s.weight, s.weight_after, share, share_after, load_after,
                s.cpu_percent, cpu_after, level,
            )
        )  # fmt: skip
    return out


def table(
    preds: Sequence[Prediction],
    *,
    basis: str = "conns",
    cpu_warn: float | None = None,
    cpu_crit: float | None = None,
    no_metrics: str = "",
) -> list[str]:
    """The what-if as text lines (CLI and dialog). `no_metrics` says why CPU is unknown."""
    unit = "conn/s" if basis == "rate" else "active"
    width = max([len(p.server) for p in preds] + [6])
    lines = [f"  {'server':<{width}}  weight    share now → after   {unit:>7}   CPU now → after"]
    for p in preds:
        weight = f"{p.weight}" if p.weight == p.weight_after else f"{p.weight}→{p.weight_after}"
        share = f"{p.share:4.0%} → {p.share_after:4.0%}"
        cpu = f"{_pct(p.cpu)} → {_pct(p.cpu_after)}"
        flag = ""
        if p.level:
            limit = cpu_crit if p.level == "crit" else cpu_warn
            flag = f"  {p.level.upper()} > {limit:g}%"  # the cpu alert rule it would break
        load = f"{p.load_after:.0f}" if basis != "rate" else f"{p.load_after:.1f}"
        lines.append(f"  {p.server:<{width}}  {weight:<8}  {share:<17}   {load:>7}   {cpu}{flag}")
    if no_metrics:
        lines.append(f"  CPU unknown: {no_metrics}; shares are by weight")
    elif any(p.cpu is not None and p.cpu_after is None for p in preds):
        lines.append("  ? = too little load to measure a cost per connection")
    if all(p.share_after == 0 for p in preds):
        lines.append("  no server would take new connections")
    return lines


def _pct(v: float | None) -> str:
    return "  ?" if v is None else f"{v:3.0f}%"
