"""The load-balancer service (ctop.lb.service) on a real HAProxy: rounds on immutable
snapshots, and every source's plans and actions through the same service."""

from __future__ import annotations

import socket
import time

from agentd.encoder import encode
from agentd.protocol import Header, ProbeInfo, Report, ServiceStatus
from ctop.lb.config import parse_config
from ctop.lb.factory import build_controller, build_quiescer
from ctop.lb.request import ActionRequest
from ctop.lb.service import READONLY_REFUSAL, LBService
from ctop.snapshot import (
    Aggregate,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    ServiceView,
    Snapshot,
)
from ctop.tui.source import StaticSource
from tests.helpers.engine_helpers import make_engine, until


def _snapshot(nodes: tuple[NodeView, ...] = (), lb: tuple[LBServiceView, ...] = ()) -> Snapshot:
    return Snapshot(time.time(), 1, "test", nodes, (), Aggregate(), lb=lb,
                    _index=Snapshot.index_of(nodes))


def _node(port: int, *results: ServiceView) -> NodeView:
    """A node that never announced an address: only its datagrams' source maps it to the
    real servers on 127.0.0.1; its http probe checks `port`."""
    return NodeView("n1", "n1", "g", Liveness.ALIVE, time.time(), 1, 1.0, cores=4,
                    services=results, metrics={"cpu_percent": 10.0}, source="127.0.0.1",
                    probes=(ProbeInfo("http", "http", port, 1.0),))


def _state(service: LBService, key: str, server: str) -> str:
    view = next(v for v in service.views if v.key == key)
    return next(s.state for s in view.servers if s.key == server)


def _on_haproxy(ctl, service: str, server: str) -> str:
    """The server's state as HAProxy itself reports it."""
    vs = next(v for v in ctl.balancers["haproxy"].services() if v.key == service)
    return next(str(rs.state) for rs in vs.servers if rs.key == server)


def test_a_round_judges_servers_by_the_snapshot_and_counts_each_result_once(tmp_path, haproxy):
    cfg = parse_config({"lb": {"haproxy": {"socket": haproxy.admin_socket},
                               "automation": {"web5": {"quiesce_after": 2}}}})
    ctl = build_controller(cfg, tmp_path / "ctop.db")
    port = haproxy.servers["s1"].port
    snap = _snapshot((_node(port, ServiceView("http", "fail", None, "refused", 1)),))
    lb = LBService(ctl, lambda: snap, cfg, quiescer=build_quiescer(cfg, ctl))
    try:
        for _ in range(3):  # the same failed result, read three times, is one result
            lb.round(snap)
        assert _state(lb, "web5", "s1") == "serving"
        assert "1/2 failed" in next(s.health for v in lb.views if v.key == "web5"
                                    for s in v.servers if s.key == "s1")
        assert next(s.node_id for v in lb.views for s in v.servers) == "n1"  # by its source
        snap = _snapshot((_node(port, ServiceView("http", "fail", None, "refused", 2)),))
        lb.round(snap)  # the second failed result in a row
        assert _state(lb, "web5", "s1") == "quiesced"
        assert _on_haproxy(ctl, "web5", "s1") == "drained"
    finally:
        lb.close()
        ctl.journal.close()


async def test_a_fixed_source_plans_and_refuses_like_the_engine(tmp_path, haproxy):
    """Read-only, a StaticSource in front of a real balancer shows the what-if and refuses
    the change in the engine's words (it used to refuse even the what-if)."""
    cfg = parse_config({"lb": {"haproxy": {"socket": haproxy.admin_socket}}})
    ctl = build_controller(cfg, tmp_path / "ctop.db")
    try:
        source = StaticSource(_snapshot(), lb=ctl, readonly=True)
        what_if = await source.lb_action(ActionRequest("drain", "haproxy", "web5", "s1",
                                                       dry_run=True))
        assert what_if.dry_run and what_if.ok and "what if" in what_if.message
        refused = await source.lb_action(ActionRequest("drain", "haproxy", "web5", "s1"))
        assert (refused.ok, refused.message) == (False, READONLY_REFUSAL)
        assert _on_haproxy(ctl, "web5", "s1") == "serving"
    finally:
        ctl.journal.close()


async def test_a_source_without_a_balancer_plans_with_the_balancers_own_guard():
    """No controller behind the snapshots: the dialog's plan still comes from the planner,
    with the last-server guard, and the change is refused with the reason."""
    servers = (RealServerView("a", "10.0.0.2", 80, 1, "serving", 3, 0, 0.0),
               RealServerView("b", "10.0.0.3", 80, 1, "drained", 0, 0, 0.0))
    source = StaticSource(_snapshot(lb=(LBServiceView("web", "haproxy", "HTTP", "roundrobin",
                                                       servers),)))
    plan = await source.lb_plan(ActionRequest("drain", "haproxy", "web", "a"))
    assert (plan.before, plan.after) == (1, 0)
    assert "last serving server" in plan.guard
    result = await source.lb_action(ActionRequest("drain", "haproxy", "web", "a", force=True))
    assert not result.ok and "no load balancer configured" in result.message


async def test_a_failed_probe_result_is_published_before_the_next_tick(tmp_path, haproxy):
    """Automation reads snapshots: a failed result reaches the published one within the
    0.1 s liveness check, not a whole tick later."""
    eng = make_engine(tmp_path, tick=60.0, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()

    def report(seq: int, status: str) -> bytes:
        msg = Report(Header("n1", 7, seq, time.time()), 1.0, "g",
                          {"cpu_percent": 5.0}, (ServiceStatus("http", status, None, "",
                                                                   seq),))
        return encode(eng.key, msg)

    def status() -> str:
        node = eng.snapshot().node("n1")
        return node.services[0].status if node is not None and node.services else ""

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(report(1, "ok"), ("127.0.0.1", eng.port))
            await until(lambda: eng.model.received >= 1)
            eng.tick(time.time())
            assert status() == "ok"
            tick = eng.snapshot().tick
            tx.sendto(report(2, "fail"), ("127.0.0.1", eng.port))
            await until(lambda: status() == "fail", timeout=2.0)
            assert eng.snapshot().tick == tick  # no tick in between: published at once
            assert eng.snapshot().node("n1").services[0].seq == 2
    finally:
        await eng.stop()


def test_automatic_advice_does_not_touch_a_read_only_balancer(tmp_path, haproxy):
    """[lb.advice] auto = true under read-only: the advice is shown, nothing is set. The same
    service built writable moves the weights, so the read-only run had something to refuse."""
    from ctop.lb.factory import build_service
    from ctop.lb.limits import LBLimits

    for server, weight in (("s1", 1), ("s2", 1), ("s3", 6)):  # one node's servers: equal targets
        haproxy.cmd(f"set server web6/{server} weight {weight}")
    cfg = parse_config({"lb": {"haproxy": {"socket": haproxy.admin_socket},
                               "advice": {"auto": True, "max_step": 1.0}}})
    snap = _snapshot((_node(haproxy.servers["s1"].port),))

    def weights(ctl) -> dict[str, int]:
        vs = next(v for v in ctl.balancers["haproxy"].services() if v.key == "web6")
        return {rs.key: rs.weight for rs in vs.servers}

    for readonly in (True, False):
        events: list = []
        lb = build_service(cfg, tmp_path / f"{readonly}.db", lambda: snap, readonly=readonly,
                           limits=LBLimits(), on_events=events.extend)
        assert lb is not None
        try:
            for _ in range(3):
                lb.round(snap)
            view = next(v for v in lb.views if v.key == "web6")
            if readonly:
                assert weights(lb.controller) == {"s1": 1, "s2": 1, "s3": 6}
                assert any(s.advised_weight not in (None, s.weight) for s in view.servers), view
                assert lb.controller.journal.actions() == []
            else:
                assert weights(lb.controller) != {"s1": 1, "s2": 1, "s3": 6}
                assert {r.origin for r in lb.controller.journal.actions()} == {"auto"}
        finally:
            lb.close()
            lb.controller.journal.close()
