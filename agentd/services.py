"""The node's service probes: runs probes.ProbeScheduler and turns results into wire statuses.

The scheduler runs every check in its own background task with its own timeout; a report only
reads the latest results, so a hanging service can never delay a report. probes/ (and httpx
with it) is imported only when at least one probe is configured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agentd.protocol import MAX_PROBES, SEQ_MOD, ProbeInfo, ServiceStatus

if TYPE_CHECKING:
    from probes.scheduler import ProbeScheduler

log = logging.getLogger("agentd")


def describe_changes(old: tuple[Any, ...], new: tuple[Any, ...]) -> str:
    """A one-line summary of how the probe list changed, for the reload log."""
    before = {s.name: s for s in old}
    after = {s.name: s for s in new}
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    changed = [n for n in after if n in before and after[n] != before[n]]
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    return "; ".join(parts) or "no change"


class Services:
    def __init__(self, specs: tuple[Any, ...] = ()) -> None:
        self._specs = specs
        self._scheduler: ProbeScheduler | None = None

    @property
    def specs(self) -> tuple[Any, ...]:
        return self._specs

    async def start(self) -> None:
        if self._specs:
            await self._ensure_scheduler()

    async def _ensure_scheduler(self) -> ProbeScheduler:
        if self._scheduler is None:
            from probes.scheduler import ProbeScheduler

            self._scheduler = ProbeScheduler(self._specs)
            await self._scheduler.start()
        return self._scheduler

    async def replace(self, specs: tuple[Any, ...]) -> None:
        """Start added probes, stop removed ones; unchanged probes keep their task and result."""
        self._specs = specs
        if self._scheduler is None:
            if specs:
                await self._ensure_scheduler()
            return
        self._scheduler.replace_specs(specs)

    def statuses(self) -> tuple[ServiceStatus, ...]:
        """Latest result of every configured probe, in config order; "unknown" until the first
        run finishes."""
        if not self._specs or self._scheduler is None:
            return ()
        latest = self._scheduler.latest()
        counts = self._scheduler.result_counts()
        out = []
        for spec in self._specs:
            r = latest.get(spec.name)
            if r is None:
                out.append(ServiceStatus(spec.name, "unknown", None, "not checked yet"))
            else:
                out.append(ServiceStatus(spec.name, r.status, r.latency_ms, r.detail,
                                         counts.get(spec.name, 0) % SEQ_MOD))
        return tuple(out)

    def described(self) -> tuple[ProbeInfo, ...]:
        """What each probe checks, for the join (the director maps probes to real servers)."""
        return tuple(
            ProbeInfo(spec.name, spec.type, spec.port, spec.interval,
                      spec.path if spec.type in ("http", "https") else "")
            for spec in self._specs[:MAX_PROBES]
        )

    def pending(self) -> int:
        """How many configured probes have no result yet."""
        if self._scheduler is None:
            return len(self._specs)
        latest = self._scheduler.latest()
        return sum(1 for s in self._specs if s.name not in latest)

    async def stop(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.stop()
