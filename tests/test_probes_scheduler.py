"""ProbeScheduler: intervals, isolation from hanging checks, replace_specs, stop."""

from __future__ import annotations

import asyncio
import itertools
import time

from probes import ProbeResult, ProbeScheduler, ProbeSpec, from_url
from tests.helpers.peers import Peer


def cmd(name: str, script: str, interval: float, timeout: float = 2.0) -> ProbeSpec:
    spec = from_url(f"command:sh -c '{script}'")
    return ProbeSpec(
        type="command", command=spec.command, name=name, interval=interval, timeout=timeout
    )


async def wait_until(condition, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_interval_is_respected(smtp_server: Peer) -> None:
    runs: list[float] = []

    def record(name: str, result: ProbeResult) -> None:
        runs.append(time.monotonic())

    spec = ProbeSpec(
        type="tcp",
        host=smtp_server.host,
        port=smtp_server.port,
        name="mail",
        interval=0.2,
        timeout=1,
    )
    sched = ProbeScheduler([spec], on_result=record)
    await sched.start()
    try:
        await wait_until(lambda: len(runs) >= 5)
    finally:
        await sched.stop()
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(0.15 < gap < 0.35 for gap in gaps), gaps
    assert sched.latest()["mail"].ok
    assert "mail" in sched.checked_at()


async def test_hanging_check_does_not_delay_others(silent_server: Peer, smtp_server: Peer) -> None:
    hanging = ProbeSpec(
        type="smtp",
        host=silent_server.host,
        port=silent_server.port,
        name="hangs",
        interval=0.1,
        timeout=1.5,
    )
    quick = ProbeSpec(
        type="smtp",
        host=smtp_server.host,
        port=smtp_server.port,
        name="quick",
        interval=0.1,
        timeout=1.0,
    )
    counts = {"hangs": 0, "quick": 0}
    sched = ProbeScheduler(
        [hanging, quick], on_result=lambda n, r: counts.__setitem__(n, counts[n] + 1)
    )
    await sched.start()
    try:
        await asyncio.sleep(1.0)
        assert counts["hangs"] == 0  # still waiting for a greeting that never comes
        assert counts["quick"] >= 5
        assert sched.latest()["quick"].ok and "hangs" not in sched.latest()
        await wait_until(lambda: "hangs" in sched.latest(), within=2.0)
        assert sched.latest()["hangs"].status == "fail"
        assert "timeout after 1.5s" in sched.latest()["hangs"].detail
    finally:
        await sched.stop()


async def test_replace_specs_adds_removes_and_keeps() -> None:
    keep = cmd("keep", "echo kept", interval=0.05)
    drop = cmd("drop", "echo dropped", interval=0.05)
    sched = ProbeScheduler([keep, drop])
    await sched.start()
    try:
        await wait_until(lambda: {"keep", "drop"} <= set(sched.latest()))
        kept_task = sched._tasks["keep"]
        add = cmd("add", "exit 1", interval=0.05)
        sched.replace_specs([keep, add])
        assert "drop" not in sched.latest() and "drop" not in sched._tasks
        assert sched._tasks["keep"] is kept_task and "keep" in sched.latest()
        await wait_until(lambda: "add" in sched.latest())
        assert sched.latest()["add"].status == "warn"
        # same name, different spec: restarted, and the old result is not shown for the new one
        changed = cmd("keep", "exit 2", interval=0.05)
        sched.replace_specs([changed, add])
        assert sched._tasks["keep"] is not kept_task
        await wait_until(lambda: sched.latest().get("keep", None) is not None)
        assert sched.latest()["keep"].status == "fail"
    finally:
        await sched.stop()
    assert not sched._tasks and not sched.running
    assert kept_task.cancelled()


async def test_replace_before_start_and_duplicate_names() -> None:
    sched = ProbeScheduler()
    sched.replace_specs([cmd("a", "true", 1.0)])
    assert list(sched.specs()) == ["a"]
    try:
        sched.replace_specs([cmd("a", "true", 1.0), cmd("a", "false", 1.0)])
    except ValueError as exc:
        assert "duplicate probe name 'a'" in str(exc)
    else:
        raise AssertionError("duplicate names accepted")
    await sched.start()
    await wait_until(lambda: "a" in sched.latest())
    await sched.stop()


async def test_runner_that_raises_or_hangs_is_contained() -> None:
    async def bad(spec: ProbeSpec) -> ProbeResult:
        if spec.name == "boom":
            raise RuntimeError("kaput")
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    specs = [cmd("boom", "true", 5.0), cmd("stuck", "true", 5.0, timeout=0.1)]
    sched = ProbeScheduler(specs, runner=bad)
    await sched.start()
    try:
        await wait_until(lambda: len(sched.latest()) == 2, within=3.0)
    finally:
        await sched.stop()
    assert sched.latest()["boom"].detail == "check crashed: RuntimeError: kaput"
    assert sched.latest()["stuck"].detail == "check overran its 0.1s timeout"
