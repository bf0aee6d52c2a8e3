"""Alert rule kinds on watched processes (agentd.toml `watch`, agentd/watch.py):

    [[alert]]
    name = "nginx-missing"
    process_missing = "nginx"      # a watch label, or "*" for every watched process
    [[alert]]
    name = "workers"
    process_count = "*"            # count outside the range the agent's watch expects
    [[alert]]
    name = "restarts"
    process_restarted = "*"        # a watched process restarted (its start time changed)
    hold = "10m"                   # firing this long after the last restart (default 10m)

Each function judges one node and returns (subject, message, value) per breach; ctop.alerts
turns them into alerts. A count of 0 is process_missing's, not process_count's, so one
vanished daemon is one alert.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ctop.snapshot import NodeView

KINDS = ("process_missing", "process_count", "process_restarted")
DEFAULT_HOLD = 600.0  # seconds a restart keeps process_restarted firing

Breach = tuple[str, str, float | None]  # (subject: the watch label, message, value)


def expected(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return str(low) if low == high else f"{low}-{high}"


def _watched(node: NodeView, pattern: str) -> Iterator[tuple[Any, ...]]:
    for w in node.metrics.get("watched", ()):
        if pattern in ("*", w[0]):
            yield w


def missing(node: NodeView, pattern: str) -> list[Breach]:
    return [(w[0], f"{w[0]} on {node.node_id}: no process (expected "
             f"{expected(w[2], w[3])})", 0.0)
            for w in _watched(node, pattern) if w[1] == 0]


def count(node: NodeView, pattern: str) -> list[Breach]:
    out = []
    for w in _watched(node, pattern):
        label, n, low, high = w[0], w[1], w[2], w[3]
        if n and (n < low or (high is not None and n > high)):
            out.append((label, f"{label} on {node.node_id}: {n} processes (expected "
                        f"{expected(low, high)})", float(n)))
    return out


class Restarts:
    """Remembers each watch's restart count per node and boot, and when it last grew."""

    def __init__(self) -> None:
        # (node, label) -> (agent boot, restarts, director time of the last increase or None)
        self._seen: dict[tuple[str, str], tuple[int, int, float | None]] = {}

    def breaches(self, node: NodeView, pattern: str, now: float, hold: float) -> list[Breach]:
        out = []
        for w in _watched(node, pattern):
            label, restarts = w[0], w[4]
            key = (node.node_id, label)
            old = self._seen.get(key)
            last = None
            if old is not None and old[0] == node.boot:
                last = old[2]
                if restarts > old[1]:
                    last = now
            # A new agent boot (or the first sight) only sets the baseline: its count starts
            # over, and restarts before the director saw it are not news.
            self._seen[key] = (node.boot, restarts, last)
            if last is not None and now - last < hold:
                out.append((label, f"{label} on {node.node_id} restarted ({restarts} since "
                            "the agent started)", float(restarts)))
        return out
