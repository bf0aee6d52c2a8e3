"""ProbeScheduler: every spec on its own interval in its own asyncio task; latest result per name.

    sched = ProbeScheduler(specs)
    await sched.start()
    sched.latest()            # {name: ProbeResult}
    sched.replace_specs(new)  # added start, removed stop, unchanged keep their task and result
    await sched.stop()

One task per probe means a hanging check can only ever delay itself, and each run is bounded by
its spec's timeout (check() enforces it; a backstop here covers custom runners).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from probes.registry import CHECKS, check
from probes.result import ProbeResult, fail
from probes.spec import ProbeSpec, ProbeSpecError

log = logging.getLogger(__name__)

Runner = Callable[[ProbeSpec], Awaitable[ProbeResult]]
OnResult = Callable[[str, ProbeResult], None]
BACKSTOP_GRACE = 1.0  # seconds past spec.timeout before the scheduler gives up on a run


def _by_name(specs: Iterable[ProbeSpec]) -> dict[str, ProbeSpec]:
    named: dict[str, ProbeSpec] = {}
    for spec in specs:
        name = spec.name or spec.to_url()
        if name in named:
            raise ProbeSpecError(f"duplicate probe name {name!r}; give each probe its own name")
        named[name] = spec
    return named


class ProbeScheduler:
    def __init__(
        self,
        specs: Iterable[ProbeSpec] = (),
        *,
        on_result: OnResult | None = None,
        runner: Runner = check,
    ) -> None:
        self._specs = _by_name(specs)
        self._on_result = on_result
        self._runner = runner
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._latest: dict[str, ProbeResult] = {}
        self._checked_at: dict[str, float] = {}
        self._results: dict[str, int] = {}  # name -> results so far (each run counts once)
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def specs(self) -> dict[str, ProbeSpec]:
        return dict(self._specs)

    def latest(self) -> dict[str, ProbeResult]:
        """The newest result of every probe that has finished at least one run."""
        return dict(self._latest)

    def result_counts(self) -> dict[str, int]:
        """How many results each probe has produced: a new number means a new result, so a
        reader polling faster than the probe runs never counts one result twice."""
        return dict(self._results)

    def checked_at(self) -> dict[str, float]:
        """Wall-clock time (time.time()) of each probe's newest result, to judge staleness."""
        return dict(self._checked_at)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        for name, spec in self._specs.items():
            self._spawn(name, spec)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def replace_specs(self, specs: Iterable[ProbeSpec]) -> None:
        """Swap the probe set. A probe whose spec changed restarts and loses its old result."""
        new = _by_name(specs)
        for name, old in self._specs.items():
            if new.get(name) != old:
                self._forget(name)
        for name, spec in new.items():
            if self._running and name not in self._tasks:
                self._spawn(name, spec)
        self._specs = new

    def _forget(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._latest.pop(name, None)
        self._checked_at.pop(name, None)
        self._results.pop(name, None)

    def _spawn(self, name: str, spec: ProbeSpec) -> None:
        CHECKS.get(spec.type)  # import the check's module now, not inside a timed check
        self._tasks[name] = asyncio.create_task(self._loop(name, spec), name=f"probe {name}")

    async def _run_once(self, spec: ProbeSpec) -> ProbeResult:
        try:
            async with asyncio.timeout(spec.timeout + BACKSTOP_GRACE):
                return await self._runner(spec)
        except TimeoutError:
            return fail(f"check overran its {spec.timeout:g}s timeout")
        except Exception as exc:  # custom runners may raise; the loop must go on
            return fail(f"check crashed: {type(exc).__name__}: {exc}")

    async def _loop(self, name: str, spec: ProbeSpec) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            result = await self._run_once(spec)
            self._latest[name] = result
            self._checked_at[name] = time.time()
            self._results[name] = self._results.get(name, 0) + 1
            if self._on_result is not None:
                with contextlib.suppress(Exception):
                    self._on_result(name, result)
            # Fixed cadence from the start; ticks missed by a slow check are skipped, not bunched.
            due += spec.interval
            now = loop.time()
            if due < now:
                due = now
            await asyncio.sleep(due - now)
