"""The [anomaly] section of ctop.toml: parsed here, errors name the file and line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentd.metrics import METRICS
from agentd.tomlfile import ConfigError

# The metrics a baseline can be built for: alertable gauges with a stored column (a counter
# such as uptime only grows, so its "normal" is meaningless).
BASELINE_METRICS: dict[str, str] = {
    m.name: m.column for m in METRICS if m.alertable and m.column and not m.counter
}


class _Section(Protocol):  # ctop.config.Section, without importing it (config imports us)
    table: Mapping[str, Any]

    def error(self, key: str, problem: str) -> ConfigError: ...
    def get(self, key: str, default: Any, convert: Any, what: str) -> Any: ...
    def number(self, key: str, default: float, minimum: float = 0.0) -> float: ...
    def boolean(self, key: str, default: bool) -> bool: ...
    def duration(self, key: str, default: float) -> float: ...
    def check_unknown(self) -> None: ...


@dataclass(frozen=True)
class AnomalyConfig:
    enabled: bool = True
    metrics: tuple[str, ...] = tuple(BASELINE_METRICS)
    threshold: float = 5.0  # robust z = |x - median| / (1.4826 * MAD) above which a value fires
    min_history_days: float = 7.0  # a node's hourly history must span this many days
    min_samples: int = 3  # and hold this many hours of the same hour of the week
    window: float = 900.0  # seconds of minute rollups averaged into the current value
    every: float = 60.0  # seconds between evaluations
    # MAD floor: max(MAD, rel_floor * |median|, abs_floor), so a flat series never fires
    rel_floor: float = 0.05
    abs_floor: Mapping[str, float] = field(default_factory=dict)
    group_fraction: float = 0.3  # this share of a group anomalous at once: a group alert
    min_group: int = 3  # groups smaller than this are neither compared nor escalated
    cost_threshold: float = 5.0  # robust z of log(cost per connection) within its group
    serving_below: int = 2  # a service with fewer healthy serving servers: a service alert

    def floor(self, metric: str) -> float:
        return self.abs_floor.get(metric, DEFAULT_ABS_FLOOR.get(metric, 1.0))


# Absolute MAD floors in the metric's unit: below these a change is not worth a page.
DEFAULT_ABS_FLOOR: dict[str, float] = {
    "cpu_percent": 2.0, "mem_percent": 1.0, "swap_percent": 1.0, "disk_root_percent": 1.0,
    "net_rx_bps": 10_000.0, "net_tx_bps": 10_000.0, "net_rx_pps": 50.0, "net_tx_pps": 50.0,
    "disk_read_bps": 50_000.0, "disk_write_bps": 50_000.0, "procs_rss": 50e6,
    "tcp_established": 5.0, "procs": 5.0, "threads": 20.0, "users": 1.0, "load": 0.25,
}


def anomaly_config(sec: _Section) -> AnomalyConfig:
    d = AnomalyConfig()

    def metric_list(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"expected a list of metric names, got {v!r}")
        for name in v:
            if name not in BASELINE_METRICS:
                raise ValueError(f"{name!r} has no baseline; one of: "
                                 + ", ".join(BASELINE_METRICS))
        return tuple(v)

    def fraction(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
            raise ValueError(f"expected a fraction in (0, 1], got {v!r}")
        return float(v)

    def whole(minimum: int) -> Any:
        def conv(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"expected a whole number >= {minimum}, got {v!r}")
            return v
        return conv

    def floors(v: Any) -> dict[str, float]:
        if not isinstance(v, dict):
            raise ValueError(f"expected a table of metric = number, got {v!r}")
        for k, x in v.items():
            if k not in BASELINE_METRICS:
                raise ValueError(f"{k!r} has no baseline")
            if isinstance(x, bool) or not isinstance(x, int | float) or x <= 0:
                raise ValueError(f"{k}: expected a number > 0, got {x!r}")
        return {k: float(x) for k, x in v.items()}

    cfg = AnomalyConfig(
        enabled=sec.boolean("enabled", d.enabled),
        metrics=sec.get("metrics", d.metrics, metric_list, "a list of metric names"),
        threshold=sec.number("threshold", d.threshold),
        min_history_days=sec.get("min_history_days", d.min_history_days, _nonneg,
                                 "a number of days"),
        min_samples=sec.get("min_samples", d.min_samples, whole(1), "a whole number"),
        window=sec.duration("window", d.window),
        every=sec.duration("every", d.every),
        rel_floor=sec.get("rel_floor", d.rel_floor, _nonneg, "a number >= 0"),
        abs_floor=sec.get("abs_floor", d.abs_floor, floors, "a table"),
        group_fraction=sec.get("group_fraction", d.group_fraction, fraction, "a fraction"),
        min_group=sec.get("min_group", d.min_group, whole(2), "a whole number"),
        cost_threshold=sec.number("cost_threshold", d.cost_threshold),
        serving_below=sec.get("serving_below", d.serving_below, whole(1), "a whole number"),
    )
    for key, value in (("window", cfg.window), ("every", cfg.every)):
        if value <= 0:
            raise sec.error(key, f"expected a duration > 0, got {value:g} s")
    sec.check_unknown()
    return cfg


def _nonneg(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError(f"expected a number >= 0, got {v!r}")
    return float(v)
