"""Health per service, end to end: real agentd processes probe real web servers behind a real
HAProxy; the engine judges each real server by the probe results of the checks that check it.

One failed result is one result however often the balancer is polled; probes of other
services, warn and "not checked yet" never pull a server; a dead agent's server is pulled only
when the director's own check of it fails too."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from dataclasses import replace

import pytest
import pytest_asyncio

from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.lb.config import parse_config
from ctop.lb.request import ActionRequest
from tests.helpers.engine_helpers import until

pytestmark = pytest.mark.e2e  # the whole system: demo cluster, processes, terminal

AUTOMATION = {"web": {"quiesce_after": 3, "restore_after": 2}}


def start(demo: DemoCluster, lb_extra: dict | None = None, **kw) -> Engine:
    demo.start()
    cfg = demo.config()
    automation = parse_config({"automation": {**AUTOMATION, **(lb_extra or {})}})
    lb = replace(cfg.lb, automation=automation.automation, checks=automation.checks)
    return Engine(replace(cfg, tick=0.2, lb_every=kw.pop("lb_every", 0.2), lb=lb, **kw))


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a probe of it stays "not checked
    yet" until its long timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest_asyncio.fixture(loop_scope="function")
async def lab(tmp_path, request, silent_port):
    """(demo, engine) from the test's `demo_args` marker: DemoCluster kwargs, lb extras;
    "{silent}" in a probe URL is the silent port."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    marker = request.node.get_closest_marker("demo_args")
    args = dict(marker.kwargs) if marker else {}
    lb_extra = args.pop("lb_extra", None)
    engine_kw = args.pop("engine", {})
    if "extra_probes" in args:
        args["extra_probes"] = tuple(u.replace("{silent}", str(silent_port))
                                     for u in args["extra_probes"])
    demo = DemoCluster(nodes=3, workdir=tmp_path, interval=0.3, traffic_per_s=2,
                       **{"probe_interval": 0.3, **args})
    engine = start(demo, lb_extra, **engine_kw)
    await engine.start()
    try:
        yield demo, engine
    finally:
        await engine.stop()
        await asyncio.to_thread(demo.stop)


def web(engine: Engine):
    return next((s for s in engine.snapshot().lb if s.key == "web"), None)


def server(engine: Engine, key: str):
    svc = web(engine)
    return None if svc is None else next((s for s in svc.servers if s.key == key), None)


def states(engine: Engine) -> dict[str, str]:
    svc = web(engine)
    return {} if svc is None else {s.key: s.state for s in svc.servers}


def service(engine: Engine, node: str, name: str):
    n = engine.snapshot().node(node)
    return None if n is None else next((s for s in n.services if s.name == name), None)


async def ready(engine: Engine) -> None:
    await until(lambda: web(engine) and all(s.node_id for s in web(engine).servers), timeout=20)
    await until(lambda: set(states(engine).values()) == {"serving"})
    await until(lambda: all("ok" in s.health for s in web(engine).servers), timeout=10)


async def watch_serving(engine: Engine, key: str, seconds: float) -> None:
    """The server stays serving for `seconds` (sampled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert states(engine).get(key) == "serving", (states(engine), server(engine, key))
        await asyncio.sleep(0.05)


@pytest.mark.demo_args(probe_interval=3.0)
async def test_one_failed_probe_result_does_not_quiesce_however_often_the_lb_is_read(lab):
    demo, engine = lab
    await ready(engine)
    rounds = engine.lb_service.monitor.rounds
    demo.stop_web(1)  # web-02's service fails until its agent's next probe has seen it once
    await until(lambda: getattr(service(engine, "web-02", "http"), "status", "") == "fail",
                timeout=5)
    demo.start_web_again(1)
    # the failed result stays the newest for up to 3 s while the balancer is read every 0.2 s
    await watch_serving(engine, "web-02", 2.0)
    assert engine.lb_service.monitor.rounds - rounds >= 5  # many polls of one failed result
    await until(lambda: service(engine, "web-02", "http").status == "ok", timeout=5)
    assert states(engine)["web-02"] == "serving"
    await until(lambda: "1 ok" in server(engine, "web-02").health)  # the streak starts again


@pytest.mark.demo_args(extra_probes=(
    "ssh://{addr}:2222?name=ssh&interval=0.3&timeout=0.5",
    "tcp://{addr}:3306?name=mysql&interval=0.3&timeout=0.5",
    "dns://{addr}:5353/www.example.com?name=dns&interval=0.3&timeout=0.5",
))
async def test_probes_of_other_services_failing_do_not_quiesce_the_web_server(lab):
    demo, engine = lab
    await ready(engine)
    # ssh, mysql and dns fail on every node (nothing listens): none is on the web port
    await until(lambda: all(getattr(service(engine, n, p), "status", "") == "fail"
                            for n in ("web-01", "web-02") for p in ("ssh", "mysql", "dns")))
    await watch_serving(engine, "web-02", 2.5)  # ~8 failed results of each
    assert set(states(engine).values()) == {"serving"}
    assert server(engine, "web-02").health.startswith("http, tcp:")  # the web port's probes
    demo.stop_web(1)  # the web service itself fails: that one counts
    await until(lambda: states(engine).get("web-02") == "quiesced", timeout=10)


WARN_CONFIG = """
[[probes]]
type = "command"
name = "cert"
command = ["/bin/sh", "-c", "echo certificate expires in 9 days; exit 1"]
interval = 0.3
"""


@pytest.mark.demo_args(agent_config=WARN_CONFIG, extra_probes=(
    "http://127.0.0.1:{silent}/?name=slow&timeout=60&interval=60",),
    lb_extra={"checks": {"web": ["http", "cert", "slow"]}})
async def test_warn_and_not_checked_yet_are_not_failures(lab):
    demo, engine = lab
    await until(lambda: web(engine) and all(s.node_id for s in web(engine).servers), timeout=20)
    await until(lambda: getattr(service(engine, "web-02", "cert"), "status", "") == "warn")
    assert service(engine, "web-02", "slow").status == "unknown"
    await watch_serving(engine, "web-02", 2.5)
    assert set(states(engine).values()) == {"serving"}
    assert server(engine, "web-02").health.startswith("http, cert, slow:")
    demo.stop_web(1)  # the mapped http check fails: quiesced within 3 results
    await until(lambda: states(engine).get("web-02") == "quiesced", timeout=10)
    demo.start_web_again(1)  # and restored: the never-checked "slow" probe holds nothing back
    await until(lambda: states(engine).get("web-02") == "serving", timeout=10)


async def test_a_dead_agent_is_pulled_only_when_the_directors_own_check_fails(lab):
    demo, engine = lab
    await ready(engine)
    demo.agents[1].kill()  # no goodbye: web-02's agent just goes silent, its web server lives
    await until(lambda: engine.snapshot().node("web-02").liveness == "dead", timeout=10)
    await until(lambda: "director checks http, tcp: " in server(engine, "web-02").health)
    await watch_serving(engine, "web-02", 2.5)  # ~8 good results of the director's checks
    assert "ok" in server(engine, "web-02").health
    demo.stop_web(1)  # now the service is really gone
    await until(lambda: states(engine).get("web-02") == "quiesced", timeout=10)
    actions = [e.message for e in engine.snapshot().events if e.kind == "action"]
    assert any("web-02" in m and "director" in m for m in actions), actions
    demo.start_web_again(1)  # and back: restored on the director's good results
    await until(lambda: states(engine).get("web-02") == "serving", timeout=10)


async def test_a_stale_operator_drain_does_not_block_automation(lab):
    # defect 7: HAProxy restarted without a state file forgets a drain; the journal's
    # "drained by operator" must not keep automation from pulling the server when it fails
    demo, engine = lab
    await ready(engine)
    assert (await engine.lb_action(ActionRequest("drain", "haproxy", "web", "web-03"))).ok
    await asyncio.to_thread(demo.restart_haproxy)
    await until(lambda: states(engine).get("web-03") == "serving" and server(
        engine, "web-03").drift, timeout=10)
    demo.stop_web(2)
    await until(lambda: states(engine).get("web-03") == "quiesced", timeout=10)
    assert not server(engine, "web-03").drift  # the balancer and the journal agree again
