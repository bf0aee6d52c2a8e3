"""A registry metric's value on a NodeView: what alerts, Prometheus and the store read.

The registry (agentd/metrics.py) says where each metric shows: a NodeView field (`view`, e.g.
cpu_percent -> NodeView.cpu, the load list -> NodeView.load1, its first element), or only the
node's latest report (`NodeView.metrics`), which holds every metric the agent sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from agentd.metrics import NUM, Metric
from ctop.snapshot import NodeView


def value_of(node: NodeView, metric: Metric) -> float | None:
    """The metric's latest value on the node; None if the node has not reported it."""
    v: Any = getattr(node, metric.view) if metric.view else node.metrics.get(metric.name)
    return v if type(v) in (int, float) else None


def values_getter(metrics: Sequence[Metric]) -> Callable[[NodeView], tuple[float, ...]]:
    """A fast function NodeView -> the values of `metrics` in their order (0 when not sent),
    for the store, which calls it per node per tick. Metrics without a view must be scalars
    (agentd/metrics.py checks that a list metric that is stored has one)."""
    if any(not m.view and m.kind != NUM for m in metrics):
        raise ValueError("a list metric is read through its view")
    views = [m.view for m in metrics if m.view]
    plain = tuple(m.name for m in metrics if not m.view)
    if [m.view for m in metrics[:len(views)]] != views:
        raise ValueError("metrics with a view come first")
    viewed: Callable[[NodeView], tuple[Any, ...]] = (
        attrgetter(*views) if len(views) > 1  # C-level, a tuple of values
        else (lambda node: (getattr(node, views[0]),)) if views else (lambda node: ()))
    if not plain:
        return viewed
    zeros = (0,) * len(plain)

    def values(node: NodeView) -> tuple[float, ...]:
        return (*viewed(node), *map(node.metrics.get, plain, zeros))

    return values
