"""Which probes judge a real server, and each probe result counted once.

A virtual service is judged by the checks configured for it (`[lb.automation] checks`), else
by the node's probes on the real server's port (the join says each probe's type and port).
Agents number each probe's results (ServiceStatus.seq); a report that repeats a result does
not count it again, however often the load balancer is polled. Agents older than that send no
number: a result then counts when it differs from the previous report's (status, latency,
detail), so identical failures in a row count once: automation is slower with old agents,
never faster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentd.protocol import ProbeInfo, ServiceStatus
from ctop.lb.automation import Health, Key

DIRECTOR = "director:"  # prefix of the director's own checks of a silent node's real server
RESULTS = ("ok", "warn", "fail")  # "unknown" (not checked yet) is no result


@dataclass(frozen=True, slots=True)
class ServerChecks:
    """The checks that judge one real server, and how they were chosen."""

    key: Key
    node_id: str
    checks: tuple[str, ...]  # probe names; empty: nothing checks this server
    source: str  # "config" | "port" | "" (none)
    port: int

    def describe(self) -> str:
        if not self.checks:
            return f"no check (no probe on port {self.port}; map one in [lb.automation] checks)"
        return ", ".join(self.checks)


def checks_for(
    key: Key, node_id: str, port: int, probes: Sequence[ProbeInfo],
    explicit: Mapping[str, tuple[str, ...]],
) -> ServerChecks:
    balancer, service, _ = key
    names = explicit.get(f"{balancer}:{service}") or explicit.get(service)
    if names:
        return ServerChecks(key, node_id, tuple(names), "config", port)
    by_port = tuple(p.name for p in probes if p.port == port)
    return ServerChecks(key, node_id, by_port, "port" if by_port else "", port)


def _mark(boot: int, s: ServiceStatus | Any) -> tuple[Any, ...]:
    """What tells one result from the next: its number, else (old agents) its content."""
    seq = getattr(s, "seq", None)
    return (boot, seq) if seq is not None else (boot, s.status, s.latency_ms, s.detail)


class ResultReader:
    """New results since the last look, per real server and check."""

    def __init__(self) -> None:
        self._last: dict[tuple[Key, str], Any] = {}

    def agent_results(
        self, key: Key, boot: int, services: Iterable[ServiceStatus | Any], checks: Sequence[str]
    ) -> list[Health]:
        wanted = set(checks)
        out = []
        for s in services:
            if s.name not in wanted or s.status not in RESULTS:
                continue
            if self._seen(key, s.name, _mark(boot, s)):
                out.append(Health(*key, s.name, s.status != "fail"))
        return out

    def new_failure(
        self, key: Key, boot: int, services: Iterable[ServiceStatus | Any], checks: Sequence[str]
    ) -> bool:
        """A failed result of one of `checks` not counted yet (nothing is remembered)."""
        return any(
            s.status == "fail" and s.name in checks
            and self._last.get((key, s.name)) != _mark(boot, s)
            for s in services
        )

    def director_results(
        self, key: Key, check: str, status: str | None, count: int | None
    ) -> list[Health]:
        if status not in RESULTS or count is None:
            return []
        name = DIRECTOR + check
        return [Health(*key, name, status != "fail")] if self._seen(key, name, count) else []

    def new_director_failure(self, key: Key, check: str, count: int | None) -> bool:
        return count is not None and self._last.get((key, DIRECTOR + check)) != count

    def _seen(self, key: Key, check: str, mark: Any) -> bool:
        """True (and remembered) when `mark` is a result not seen before."""
        if self._last.get((key, check)) == mark:
            return False
        self._last[(key, check)] = mark
        return True

    def forget(self, key: Key, checks: Iterable[str]) -> None:
        for c in checks:
            self._last.pop((key, c), None)
