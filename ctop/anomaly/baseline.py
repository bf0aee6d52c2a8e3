"""Per node and metric: the node's own baseline for this hour of the week.

The baseline of (node, metric) at hour-of-week H is the median and the MAD of the metric's
hourly averages at H in the weeks before (the hourly rollups, ctop/store/rollups.py). The
current value is the mean of the last `window` seconds of minute rollups. Its score is the
robust z

    z = |x - median| / (1.4826 * max(MAD, rel_floor * |median|, abs_floor))

(1.4826 * MAD estimates the standard deviation of normal noise; the floor keeps a flat
series, whose MAD is 0, from firing on any change). A node is judged only with enough
history: its hourly rows span min_history_days and H has min_samples of them.

Baselines change only when the hour does: they are built once an hour (Baselines.build, one
query over at most 13 weeks of rows at H) and each evaluation only reads the current values
(one aggregate over the window's minute rows) and subtracts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

from ctop.anomaly.config import BASELINE_METRICS, AnomalyConfig
from ctop.store.schema import SCALES

WEEK_HOURS = 168
MAX_WEEKS = 13  # the hourly retention's default is 90 days
MAD_TO_SIGMA = 1.4826
_FIRST = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float
    samples: int


@dataclass(frozen=True, slots=True)
class NodeAnomaly:
    node_id: str
    metric: str
    value: float
    median: float
    spread: float  # 1.4826 * the floored MAD
    score: float  # robust z

    def describe(self) -> str:
        side = "above" if self.value >= self.median else "below"
        return (f"{self.metric} on {self.node_id} is {self.value:.4g}, {self.score:.1f} "
                f"robust z {side} its usual {self.median:.4g} at this hour of the week")


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2.0


def baseline_of(values: list[float]) -> Baseline:
    med = _median(values)
    return Baseline(med, _median([abs(v - med) for v in values]), len(values))


def _columns(metrics: tuple[str, ...]) -> list[str]:
    return [BASELINE_METRICS[m] for m in metrics]


class Baselines:
    """Each node's baseline per metric for one hour of the week, built from the hourly
    rollups of a (read-only) connection."""

    def __init__(self, cfg: AnomalyConfig) -> None:
        self.cfg = cfg
        self.hour: int | None = None  # the epoch hour the baselines were built for
        self.by_node: dict[str, dict[str, Baseline]] = {}

    def build(self, db: sqlite3.Connection, hour: int) -> None:
        cfg = self.cfg
        cols = _columns(cfg.metrics)
        select = ", ".join(f"h.{c}_avg" for c in cols)
        weeks = ", ".join(str(hour - WEEK_HOURS * k) for k in range(1, MAX_WEEKS + 1))
        # Nodes with enough history overall: the first hourly row min_history_days ago.
        oldest = hour - round(cfg.min_history_days * 24)
        old_enough = {nid for nid, first in db.execute(
            "SELECT node_id, (SELECT min(hour) FROM hourly WHERE node = nodes.id) FROM nodes")
            if first is not None and first <= oldest}
        scales = [float(SCALES[c]) for c in cols]
        need = cfg.min_samples
        by_node: dict[str, dict[str, Baseline]] = {}
        # CROSS JOIN: one primary-key lookup per node and week (rows are clustered by node),
        # so a node's rows come together. Median and MAD of the scaled integers, unscaled
        # after: both scale with the values.
        rows = db.execute(f"SELECT nodes.node_id, {select} FROM nodes CROSS JOIN hourly AS h "
                          f"WHERE h.node = nodes.id AND h.hour IN ({weeks})")
        for nid, group in groupby(rows, _FIRST):
            if nid not in old_enough:
                continue
            base = {}
            columns = list(zip(*group, strict=True))[1:]  # the node's rows, column by column
            for metric, column, scale in zip(cfg.metrics, columns, scales, strict=True):
                vs = [v for v in column if v is not None]
                if len(vs) >= need:
                    b = baseline_of(vs)
                    base[metric] = Baseline(b.median / scale, b.mad / scale, b.samples)
            by_node[nid] = base
        self.by_node = by_node
        self.hour = hour

    def score(self, current: dict[str, list[float | None]]) -> list[NodeAnomaly]:
        """The anomalies among the current values (node -> values in cfg.metrics order)."""
        cfg = self.cfg
        floors = [cfg.floor(m) for m in cfg.metrics]
        out: list[NodeAnomaly] = []
        for nid, base in self.by_node.items():
            now = current.get(nid)
            if now is None:
                continue
            for metric, x, floor in zip(cfg.metrics, now, floors, strict=True):
                b = base.get(metric)
                if b is None or x is None:
                    continue
                spread = MAD_TO_SIGMA * max(b.mad, cfg.rel_floor * abs(b.median), floor)
                z = abs(x - b.median) / spread
                if z >= cfg.threshold:
                    out.append(NodeAnomaly(nid, metric, x, b.median, spread, z))
        return out


def current_values(db: sqlite3.Connection, cfg: AnomalyConfig,
                   now: float) -> dict[str, list[float | None]]:
    """Each node's mean over the last cfg.window seconds of minute rollups (weighted by
    sample count), in cfg.metrics order; nodes without minute rows there are left out."""
    cols = _columns(cfg.metrics)
    # sum(): NULL for a column no row holds (a metric newer than the rows); the products stay
    # far below 2^63 (a scaled value times 15 minutes of samples)
    means = ", ".join(f"sum(r.{c}_avg * r.n) * {1.0 / SCALES[c]!r} / sum(r.n)" for c in cols)
    first = int((now - cfg.window) // 60)
    return {nid: row for nid, *row in db.execute(
        f"SELECT nodes.node_id, {means} FROM nodes CROSS JOIN rollups AS r "
        "WHERE r.node = nodes.id AND r.minute >= ? GROUP BY nodes.id", (first,))}
