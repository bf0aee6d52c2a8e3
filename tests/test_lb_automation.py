"""Auto-quiesce: pure decisions, and end to end on a real HAProxy with real service checks."""

from __future__ import annotations

import httpx
import pytest

from ctop.lb.actions import LBController
from ctop.lb.automation import (
    AutoQuiescer,
    Health,
    HealthTracker,
    QuiescePolicy,
    ResultStreak,
    decide,
    policy_lookup,
)
from ctop.lb.base import RealServer, ServerState, VirtualService
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Intent, Journal
from tests.helpers.haproxy_peer import HAProxyLab

ON = QuiescePolicy(enabled=True, quiesce_after=2, restore_after=2, keep_last=True)


def _vs(*servers: tuple[str, int, ServerState]) -> VirtualService:
    return VirtualService(
        key="web",
        balancer="haproxy",
        protocol="HTTP",
        address="",
        port=0,
        servers=tuple(RealServer(k, "10.0.0.1", 80, w, st) for k, w, st in servers),
    )


def _intent(server: str, drained_by: str | None, saved: int | None = None) -> Intent:
    return Intent("haproxy", "web", server, saved, drained_by, "alice", 0.0, None, None)


S = ServerState.SERVING


def test_tracker_counts_results_in_a_row_per_check() -> None:
    t = HealthTracker()
    key = ("haproxy", "web", "a")
    for ok in (False, False, True, False):
        t.observe([Health(*key, "http", ok)])
    t.judge({key: (("http",), False)})
    assert (t.counters[key].fails, t.counters[key].oks) == (1, 0)
    t.observe([])  # no new result this round changes nothing
    t.judge({key: (("http",), False)})
    assert t.counters[key].fails == 1
    # two checks: the worst failure streak, the least ok streak
    t.observe([Health(*key, "tcp", True), Health(*key, "tcp", True), Health(*key, "http", False)])
    t.judge({key: (("http", "tcp"), False)})
    assert (t.counters[key].fails, t.counters[key].oks) == (2, 0)
    t.judge({key: ((), False)})  # nothing judges it: no counters, no automation
    assert key not in t.counters
    # a check that never produced a result does not hold a restore back
    t.observe([Health(*key, "http", True), Health(*key, "http", True)])
    t.judge({key: (("http", "slow"), False)})
    assert (t.counters[key].fails, t.counters[key].oks) == (0, 2)


def test_decide_quiesce_after_n_and_off_by_default() -> None:
    vs = _vs(("a", 1, S), ("b", 1, S))
    counters = {("haproxy", "web", "a"): ResultStreak(fails=1)}
    assert decide([vs], counters, {}, policy_lookup({"web": ON})) == []
    counters = {("haproxy", "web", "a"): ResultStreak(fails=2)}
    [d] = decide([vs], counters, {}, policy_lookup({"web": ON}))
    assert (d.kind, d.server) == ("quiesce", "a")
    assert decide([vs], counters, {}, policy_lookup({})) == []  # off unless configured
    # a dead node alone is no reason: only the director's own failed checks are
    assert decide([vs], {("haproxy", "web", "b"): ResultStreak(node_dead=True)}, {},
                  policy_lookup({"haproxy:web": ON})) == []
    [d] = decide([vs], {("haproxy", "web", "b"): ResultStreak(fails=2, node_dead=True)}, {},
                 policy_lookup({"haproxy:web": ON}))
    assert (d.kind, d.server) == ("quiesce", "b") and "director" in d.reason


def test_decide_never_last_serving() -> None:
    vs = _vs(("a", 1, S), ("b", 1, S))
    both = {("haproxy", "web", k): ResultStreak(fails=5) for k in "ab"}
    kinds = [(d.kind, d.server) for d in decide([vs], both, {}, policy_lookup({"web": ON}))]
    assert kinds == [("quiesce", "a"), ("hold", "b")]
    off = QuiescePolicy(enabled=True, quiesce_after=2, keep_last=False)
    kinds = [d.kind for d in decide([vs], both, {}, policy_lookup({"web": off}))]
    assert kinds == ["quiesce", "quiesce"]


def test_decide_restore_only_own_drains() -> None:
    vs = _vs(("a", 1, ServerState.DRAINED), ("b", 1, ServerState.DRAINED), ("c", 1, S))
    counters = {("haproxy", "web", k): ResultStreak(oks=2) for k in "ab"}
    intents = {
        ("haproxy", "web", "a"): _intent("a", "auto", 1),
        ("haproxy", "web", "b"): _intent("b", "operator", 1),
    }
    ds = decide([vs], counters, intents, policy_lookup({"web": ON}))
    assert [(d.kind, d.server) for d in ds] == [("restore", "a")]


# -- end to end --------------------------------------------------------------------------------


def _check(rs: RealServer) -> bool:
    """The service check: a real HTTP GET to the real server."""
    try:
        return httpx.get(f"http://{rs.address}:{rs.port}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _round(ctl: LBController, service: str) -> list[Health]:
    """One new result of the "http" check per real server."""
    [vs] = [v for v in ctl.services() if v.key == service]
    return [Health(vs.balancer, vs.key, rs.key, "http", _check(rs)) for rs in vs.servers]


@pytest.fixture
def auto(haproxy: HAProxyLab, tmp_path) -> tuple[LBController, AutoQuiescer]:
    journal = Journal(tmp_path / "ctop.db")
    ctl = LBController({"haproxy": HAProxyBalancer(haproxy.admin_socket)}, journal)
    yield ctl, AutoQuiescer(ctl, policy_lookup({"web7": ON}))
    journal.close()


def _state(ctl: LBController, server: str) -> RealServer:
    return ctl.find("haproxy", "web7", server)[1]


def test_quiesce_and_restore_end_to_end(auto, haproxy: HAProxyLab) -> None:
    ctl, aq = auto
    assert ctl.set_weight("haproxy", "web7", "s2", 3).ok  # an operator's weight
    haproxy.servers["s2"].stop()
    assert "HTTP 503" in haproxy.hits("web7", 3)  # HAProxy has no check: requests fail
    assert aq.step(_round(ctl, "web7")) == []  # one failure is not enough
    [(d, res)] = aq.step(_round(ctl, "web7"))
    assert d.kind == "quiesce" and res.ok and res.origin == "auto", res.message
    assert _state(ctl, "s2").state == ServerState.QUIESCED
    assert set(haproxy.hits("web7", 20)) == {"s1", "s3"}  # no more failed requests
    haproxy.servers["s2"].start()
    assert aq.step(_round(ctl, "web7")) == []
    [(d, res)] = aq.step(_round(ctl, "web7"))
    assert d.kind == "restore" and res.ok and res.after == 3, res.message
    assert haproxy.hits("web7", 50)["s2"] == 30  # 1:3:1, the operator's weight is back
    rows = ctl.journal.actions()
    assert [(r.origin, r.action, r.result) for r in rows[:2]] == [
        ("auto", "restore", "ok"),
        ("auto", "drain", "ok"),
    ]


def test_never_quiesces_last_serving(auto, haproxy: HAProxyLab) -> None:
    ctl, aq = auto
    assert ctl.drain("haproxy", "web7", "s1").ok
    assert ctl.drain("haproxy", "web7", "s2").ok
    haproxy.servers["s3"].stop()
    for _ in range(3):
        decisions = aq.step(_round(ctl, "web7"))
    assert ("hold", "s3") in [(d.kind, d.server) for d, _ in decisions]
    assert _state(ctl, "s3").state == ServerState.SERVING


def test_never_undoes_operator_drain(auto, haproxy: HAProxyLab) -> None:
    ctl, aq = auto
    assert ctl.drain("haproxy", "web7", "s1").ok
    for _ in range(4):  # s1 is perfectly healthy
        assert all(d.kind != "restore" for d, _ in aq.step(_round(ctl, "web7")))
    assert _state(ctl, "s1").state == ServerState.DRAINED
    assert not ctl.restore("haproxy", "web7", "s1", origin="auto").ok  # the controller agrees


def test_operator_takes_over_auto_quiesce(auto, haproxy: HAProxyLab) -> None:
    ctl, aq = auto
    haproxy.servers["s3"].stop()
    aq.step(_round(ctl, "web7"))
    aq.step(_round(ctl, "web7"))
    assert _state(ctl, "s3").state == ServerState.QUIESCED
    res = ctl.drain("haproxy", "web7", "s3")  # the operator now owns the drain
    assert res.ok and "automation will not restore" in res.message
    haproxy.servers["s3"].start()
    for _ in range(3):
        assert all(d.kind != "restore" for d, _ in aq.step(_round(ctl, "web7")))
    assert _state(ctl, "s3").state == ServerState.DRAINED
    assert ctl.restore("haproxy", "web7", "s3").after == 1


def test_auto_weights_leave_human_weights_alone(auto) -> None:
    ctl, _ = auto
    assert ctl.set_weight("haproxy", "web7", "s1", 4).ok
    res = ctl.set_weight("haproxy", "web7", "s1", 9, origin="auto")
    assert not res.ok and "set by operator" in res.message
    assert ctl.drain("haproxy", "web7", "s2", origin="auto").ok
    res = ctl.set_weight("haproxy", "web7", "s2", 5, origin="auto")
    assert not res.ok and "only restore" in res.message


def test_a_failed_automatic_action_backs_off(haproxy: HAProxyLab, tmp_path) -> None:
    # A balancer that refuses the drain (a read-only socket): automation tries once, then
    # waits instead of flooding the journal with the same error every round.
    journal = Journal(tmp_path / "ctop.db")
    ctl = LBController({"haproxy": HAProxyBalancer(haproxy.user_socket)}, journal)
    admin = LBController({"haproxy": HAProxyBalancer(haproxy.admin_socket)}, None)
    now = [1000.0]
    aq = AutoQuiescer(ctl, policy_lookup({"web7": ON}), retry_after=10, clock=lambda: now[0])
    haproxy.servers["s2"].stop()
    aq.step(_round(admin, "web7"))  # (a user-level socket hides the servers' addresses)
    [(d, res)] = aq.step(_round(admin, "web7"))
    assert d.kind == "quiesce" and not res.ok and "Permission denied" in res.message
    for _ in range(5):
        assert aq.step(_round(admin, "web7")) == []
    now[0] += 10
    [(d, res)] = aq.step(_round(admin, "web7"))  # retried once the delay is over
    assert not res.ok
    now[0] += 10
    assert aq.step(_round(admin, "web7")) == []  # the delay doubled
    assert [r.result != "ok" for r in journal.actions()] == [True, True]
    journal.close()


# -- which checks judge a server, results counted once ----------------------------------------


def test_checks_config_is_a_table_of_probe_lists_with_clear_errors() -> None:
    from ctop.lb.config import ConfigError, parse_config

    cfg = parse_config({"automation": {"checks": {"web": ["http"], "haproxy:api": ["a", "b"]},
                                       "web": {}}})
    assert cfg.checks == {"web": ("http",), "haproxy:api": ("a", "b")}
    assert cfg.automation["web"].enabled and "checks" not in cfg.automation
    for bad, says in ((["http"], "must be a table"), ({"web": "http"}, '"web" must be'),
                      ({"web": []}, "non-empty list"), ({"web": [1]}, "probe names")):
        with pytest.raises(ConfigError, match=says) as info:
            parse_config({"automation": {"checks": bad}})
        assert "[lb.automation].checks" in str(info.value)


def test_a_server_is_judged_by_the_probes_on_its_port_unless_mapped() -> None:
    from agentd.protocol import ProbeInfo
    from ctop.lb.health import checks_for

    probes = (ProbeInfo("http", "http", 8080, 10.0), ProbeInfo("ssh", "ssh", 22, 10.0),
              ProbeInfo("mysql", "tcp", 3306, 5.0), ProbeInfo("alive", "tcp", 8080, 10.0))
    key = ("haproxy", "web", "s1")
    assert checks_for(key, "n1", 8080, probes, {}).checks == ("http", "alive")
    assert checks_for(key, "n1", 8080, probes, {"web": ("mysql",)}).checks == ("mysql",)
    assert checks_for(key, "n1", 8080, probes, {"haproxy:web": ("ssh",)}).checks == ("ssh",)
    none = checks_for(key, "n1", 9000, probes, {})
    assert none.checks == () and "no check" in none.describe()


def test_each_result_counts_once_whatever_the_reports_repeat() -> None:
    from agentd.protocol import ServiceStatus as S
    from ctop.lb.health import ResultReader

    r, key = ResultReader(), ("haproxy", "web", "s1")
    fail = S("http", "fail", None, "refused", 7)
    assert len(r.agent_results(key, 1, [fail], ["http"])) == 1
    for _ in range(5):  # the same result in the next reports / LB rounds
        assert r.agent_results(key, 1, [fail], ["http"]) == []
    assert r.agent_results(key, 1, [fail._replace(seq=8)], ["http"])[0].ok is False
    assert r.agent_results(key, 2, [fail._replace(seq=8)], ["http"])  # a restarted agent
    assert r.agent_results(key, 2, [S("http", "unknown", None, "not checked yet")],
                           ["http"]) == []
    assert r.agent_results(key, 2, [S("http", "warn", 3.0, "cert expires", 9)],
                           ["http"])[0].ok is True
    assert r.agent_results(key, 2, [S("ssh", "fail", None, "", 1)], ["http"]) == []
    # an agent that does not number results: a result counts when it differs
    old = S("http", "fail", None, "refused")
    assert len(r.agent_results(key, 3, [old], ["http"])) == 1
    assert r.agent_results(key, 3, [old], ["http"]) == []
    assert r.agent_results(key, 3, [old._replace(detail="timed out")], ["http"])


def test_the_directors_own_check_is_the_agents_probe_aimed_at_the_real_server() -> None:
    from agentd.protocol import ProbeInfo
    from ctop.lb.director_checks import director_spec

    spec = director_spec("x", ProbeInfo("web", "http", 80, 2.0, "/health"), "10.0.0.5", 8080)
    assert (spec.type, spec.host, spec.port, spec.path, spec.interval) == (
        "http", "10.0.0.5", 8080, "/health", 2.0)
    assert director_spec("y", ProbeInfo("c", "command", None, 5.0), "10.0.0.5", 3306).type == "tcp"
    assert director_spec("z", None, "10.0.0.5", 25).type == "tcp"  # an agent without probe info


def test_a_stale_human_drain_record_does_not_hold_automation_back() -> None:
    # the journal says "drained by operator" but the balancer serves (reset outside ctop)
    vs = _vs(("a", 1, S), ("b", 1, S))
    failing = {("haproxy", "web", "a"): ResultStreak(fails=2)}
    stale = {("haproxy", "web", "a"): _intent("a", "operator", 1)}
    [d] = decide([vs], failing, stale, policy_lookup({"web": ON}))
    assert (d.kind, d.server) == ("quiesce", "a")
    # while the balancer still shows the drain, the human's drain is respected
    held = _vs(("a", 1, ServerState.DRAINED), ("b", 1, S))
    [d] = decide([held], failing, stale, policy_lookup({"web": ON}))
    assert (d.kind, d.server) == ("hold", "a")
