"""Auto-quiesce end to end: agents probe real web servers behind a real HAProxy; when a
server's service dies ctop sets its weight to 0, and restores it when the service returns.
The last serving real server is never quiesced."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace

import pytest
import pytest_asyncio

from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.lb.config import parse_config
from tests.helpers.engine_helpers import until

pytestmark = pytest.mark.e2e  # the whole system: demo cluster, processes, terminal


@pytest_asyncio.fixture(loop_scope="function")
async def cluster(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    demo = DemoCluster(nodes=3, workdir=tmp_path, interval=0.3, probe_interval=0.3,
                       traffic_per_s=5)
    demo.start()
    cfg = demo.config()
    automation = parse_config({"automation": {"web": {"quiesce_after": 3, "restore_after": 3}}})
    cfg = replace(cfg, tick=0.2, lb_every=0.3,
                  lb=replace(cfg.lb, automation=automation.automation))
    engine = Engine(cfg)
    await engine.start()
    try:
        yield demo, engine
    finally:
        await engine.stop()
        await asyncio.to_thread(demo.stop)


def states(engine: Engine) -> dict[str, str]:
    web = next((s for s in engine.snapshot().lb if s.key == "web"), None)
    return {} if web is None else {s.key: s.state for s in web.servers}


def mapped(engine: Engine) -> dict[str, str]:
    web = next((s for s in engine.snapshot().lb if s.key == "web"), None)
    return {} if web is None else {s.key: s.node_id for s in web.servers}


async def test_a_dead_service_is_quiesced_and_restored_but_never_the_last(cluster):
    demo, engine = cluster
    # real servers are mapped to the agents that announced their addresses
    await until(lambda: mapped(engine) == {"web-01": "web-01", "web-02": "web-02",
                                           "web-03": "web-03"}, timeout=20)
    await until(lambda: set(states(engine).values()) == {"serving"})

    demo.stop_web(1)  # web-02's service dies; its agent keeps reporting the failing probe
    await until(lambda: states(engine).get("web-02") == "quiesced", timeout=15)
    assert states(engine)["web-01"] == states(engine)["web-03"] == "serving"
    kinds = [e.message for e in engine.snapshot().events if e.kind == "action"]
    assert any("auto" in m and "web-02" in m for m in kinds), kinds

    demo.stop_web(0)
    demo.stop_web(2)  # every service is down now: one real server must keep serving
    await until(lambda: list(states(engine).values()).count("quiesced") == 2, timeout=15)
    await asyncio.sleep(2.0)  # several more automation rounds
    assert list(states(engine).values()).count("serving") == 1

    for i in range(3):
        demo.start_web_again(i)
    await until(lambda: set(states(engine).values()) == {"serving"}, timeout=20)
    web = next(s for s in engine.snapshot().lb if s.key == "web")
    assert all(s.weight == 10 for s in web.servers)  # the exact weights from before
