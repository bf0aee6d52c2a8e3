"""A real Engine on loopback for tests, the agents that report to it, and polling."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from ctop.alerts import parse_rules
from ctop.config import DirectorConfig, LivenessConfig, StoreConfig
from ctop.engine import Engine
from ctop.hooks import parse_hooks
from ctop.lb.config import parse_config
from tests.helpers.agent_helpers import AGENTD, write_key

INTERVAL = 0.2  # the agents' report interval


def make_engine(tmp_path: Path, **kw) -> Engine:
    # alerts, hooks and lb as ctop.toml writes them: tables, parsed as the config parses them
    if "alerts" in kw:
        kw["alerts"] = tuple(parse_rules(kw["alerts"]))
    if "hooks" in kw:
        kw["hooks"] = tuple(parse_hooks(kw["hooks"]))
    if "lb" in kw:
        kw["lb"] = parse_config(kw["lb"])
    cfg = DirectorConfig(
        cluster="test",
        listen=("127.0.0.1", 0),
        key_file=str(write_key(tmp_path / "cluster.key")),
        tick=kw.pop("tick", 0.1),
        liveness=kw.pop("liveness", LivenessConfig(suspect_after=2.5, dead_after=5.0)),
        store=StoreConfig(path=str(tmp_path / "ctop.db"), raw_every=INTERVAL),
        control_socket=str(tmp_path / "ctop.sock"),
        **kw,
    )
    return Engine(cfg)


def start_agent(tmp_path: Path, port: int, node: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(AGENTD), "--config", str(tmp_path / "none.toml"), "--director", f"127.0.0.1:{port}",
         "--key-file", str(tmp_path / "cluster.key"), "--node-id", node, "--group", "g1",
         "--interval", str(INTERVAL), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def reap(procs: Iterable[subprocess.Popen]) -> None:
    """Kill whichever of `procs` still runs and wait for all: no agent outlives its test."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    """A list the test appends the processes it starts to; all are reaped at the end."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        reap(procs)


@contextlib.asynccontextmanager
async def engine_with_agents(
    tmp_path: Path, nodes: dict[str, tuple[str, ...]], ready: Callable[[Engine], object],
    **engine_kw,
) -> AsyncIterator[tuple[Engine, dict[str, subprocess.Popen]]]:
    """A started engine and one agent per node (with its extra arguments), once `ready`."""
    (tmp_path / "none.toml").write_text("")
    eng = make_engine(tmp_path, **engine_kw)
    await eng.start()
    procs = {node: start_agent(tmp_path, eng.port, node, *args) for node, args in nodes.items()}
    try:
        await until(lambda: ready(eng))
        yield eng, procs
    finally:
        reap(procs.values())
        await eng.stop()


async def until(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
