"""The director's own checks of real servers whose agent went silent.

As keepalived and ldirectord do, the director runs the same probes/ checks itself, pointed at
the real server's address and port, so a dead agent (or a lossy link to it) pulls a server
only when the service really fails. One ProbeScheduler on an asyncio loop in a daemon thread,
started the first time a check is wanted; each check runs on the interval of the agent probe
it stands in for.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping

from agentd.protocol import ProbeInfo
from probes.result import ProbeResult
from probes.scheduler import ProbeScheduler
from probes.spec import DEFAULT_TIMEOUT, ProbeSpec, ProbeSpecError


def director_spec(name: str, probe: ProbeInfo | None, address: str, port: int) -> ProbeSpec:
    """The check `probe` stands for, at address:port; tcp when its type cannot be pointed at
    another host (command checks, dns without its query) or is unknown (an old agent)."""
    interval = probe.interval if probe is not None else 10.0
    timeout = min(DEFAULT_TIMEOUT, max(0.5, interval * 0.8))
    common = dict(name=name, host=address, port=port, interval=interval, timeout=timeout)
    if probe is not None and probe.type not in ("command", "dns", "tcp"):
        extra = {"path": probe.path} if probe.type in ("http", "https") and probe.path else {}
        with contextlib.suppress(ProbeSpecError):
            return ProbeSpec(type=probe.type, **common, **extra)  # type: ignore[arg-type]
    return ProbeSpec(type="tcp", **common)  # type: ignore[arg-type]


class DirectorChecks:
    def __init__(self) -> None:
        self._specs: dict[str, ProbeSpec] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sched: ProbeScheduler | None = None
        self._thread: threading.Thread | None = None

    def want(self, specs: Mapping[str, ProbeSpec]) -> None:
        """The checks to run now (by name); others stop, unchanged ones keep their results."""
        if dict(specs) == self._specs:
            return
        self._specs = dict(specs)
        if self._sched is None and not specs:
            return
        loop, sched = self._ensure()
        loop.call_soon_threadsafe(sched.replace_specs, list(self._specs.values()))

    def results(self) -> tuple[dict[str, ProbeResult], dict[str, int]]:
        """Latest result and result count of every running check, by name."""
        if self._sched is None:
            return {}, {}
        return self._sched.latest(), self._sched.result_counts()

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, ProbeScheduler]:
        if self._loop is None or self._sched is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="ctop-director-checks",
                                            daemon=True)
            self._thread.start()
            sched = ProbeScheduler()
            asyncio.run_coroutine_threadsafe(sched.start(), loop).result(timeout=5)
            self._loop, self._sched = loop, sched
        return self._loop, self._sched

    def close(self) -> None:
        if self._loop is None or self._sched is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._sched.stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop.close()
        self._loop = self._sched = self._thread = None
