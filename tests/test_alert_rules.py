"""Metric alert rules (`when`, `crit`, `for`), `repeat`, `imbalance_above` and a hook's `on`.

The rules are judged on snapshot views, the same objects the engine hands the alert engine each
tick; the hook is a real shell command whose runs are counted in a file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ctop.alerts import AlertEngine, parse_rules
from ctop.hooks import HookRunner, parse_hooks
from ctop.snapshot import LBServiceView, Liveness, NodeView, RealServerView, Severity


def node(cpu: float, liveness: Liveness = Liveness.ALIVE, node_id: str = "n1") -> NodeView:
    return NodeView(node_id, node_id, "g", liveness, 0.0, 1, 1.0, cpu=cpu)


def cpu_rule(**extra: object) -> AlertEngine:
    table: dict[str, object] = {"name": "cpu-high", "when": "cpu_percent > 90 for 30s"}
    table.update(extra)
    return AlertEngine(parse_rules([table]), "c")


def firing(engine: AlertEngine) -> list[tuple[str, Severity]]:
    return [(a.node_id, a.severity) for a in engine.firing()]


def test_a_metric_rule_fires_only_after_its_duration_and_resolves():
    eng = cpu_rule()
    eng.evaluate([node(95)], 1000.0)
    eng.evaluate([node(95)], 1029.0)
    assert firing(eng) == [], "a breach shorter than `for` must not fire"
    events, notes = eng.evaluate([node(95)], 1030.0)
    assert firing(eng) == [("n1", Severity.WARN)]
    assert [n.state for n in notes] == ["firing"]
    assert "cpu_percent on n1 is 95.0" in events[0].message
    events, notes = eng.evaluate([node(50)], 1031.0)
    assert firing(eng) == [] and [n.state for n in notes] == ["resolved"]


def test_a_dip_below_the_threshold_restarts_the_duration():
    eng = cpu_rule()
    eng.evaluate([node(95)], 0.0)
    eng.evaluate([node(10)], 20.0)
    eng.evaluate([node(95)], 25.0)
    eng.evaluate([node(95)], 50.0)
    assert firing(eng) == [], "only 25 s of the new breach so far"
    eng.evaluate([node(95)], 55.0)
    assert firing(eng) == [("n1", Severity.WARN)]


def test_crit_escalates_the_same_alert_and_notifies_again():
    eng = cpu_rule(crit=98)
    eng.evaluate([node(95)], 0.0)
    eng.evaluate([node(95)], 30.0)
    _, notes = eng.evaluate([node(99)], 31.0)
    assert firing(eng) == [("n1", Severity.CRIT)]
    assert [n.state for n in notes] == ["firing"], "a new level is a new notification"
    assert len(eng.firing()) == 1


def test_an_under_rule_and_a_node_not_alive():
    eng = AlertEngine(parse_rules([{"name": "idle", "when": "cpu_percent < 5"}]), "c")
    eng.evaluate([node(2), node(2, Liveness.DEAD, "n2")], 0.0)
    assert firing(eng) == [("n1", Severity.WARN)], "no metric alerts for a dead node"


def test_repeat_notifies_while_firing_at_its_period():
    eng = cpu_rule(repeat="10m")
    states = []
    for t in range(0, 1900, 30):  # 31 minutes of a node stuck at 95 %
        _, notes = eng.evaluate([node(95)], float(t))
        states += [(t, n.state) for n in notes]
    assert states == [(30, "firing"), (630, "repeat"), (1230, "repeat"), (1830, "repeat")]


def lb(shares: tuple[float, float], imbalance: float) -> LBServiceView:
    servers = tuple(
        RealServerView(key=f"s{i}", address=f"10.0.0.{i}", port=80, weight=1,
                       state="serving", active_conns=0, inactive_conns=0, conns_per_s=0.0,
                       node_id="", conn_share=share, weight_share=0.5, ratio=share / 0.5,
                       advised_weight=None, forward="")
        for i, share in enumerate(shares, 1)
    )
    return LBServiceView("web", "haproxy", "HTTP", "roundrobin", servers, imbalance, "conns")


def test_imbalance_above_fires_for_its_service_only():
    rules = parse_rules([{"name": "skew", "lb_service": "web", "imbalance_above": 0.4,
                          "for": "10s"}])
    eng = AlertEngine(rules, "c")
    eng.evaluate([], 0.0, [lb((0.9, 0.1), 0.8)])
    assert eng.firing() == ()
    events, _ = eng.evaluate([], 10.0, [lb((0.9, 0.1), 0.8)])
    assert [a.rule for a in eng.firing()] == ["skew"]
    assert "imbalance 0.80 (> 0.4)" in events[0].message
    eng.evaluate([], 11.0, [lb((0.55, 0.45), 0.1)])
    assert eng.firing() == ()
    other = AlertEngine(parse_rules([{"name": "skew", "lb_service": "api",
                                      "imbalance_above": 0.4}]), "c")
    other.evaluate([], 0.0, [lb((0.9, 0.1), 0.8)])
    assert other.firing() == (), "a rule for another service must not fire"


async def test_a_hook_runs_only_for_the_states_in_its_on_list(tmp_path: Path):
    log = tmp_path / "hook.log"
    hooks = parse_hooks([{"command": f'echo "$CTOP_ALERT_STATE $CTOP_ALERT_NODE" >> {log}',
                          "on": ["resolved"]},
                         {"command": f'echo "all $CTOP_ALERT_STATE" >> {log}'}])
    runner = HookRunner(hooks)
    eng = cpu_rule(**{"when": "cpu_percent > 90"})
    for t, cpu in ((0.0, 95.0), (1.0, 95.0), (2.0, 20.0)):
        _, notes = eng.evaluate([node(cpu)], t)
        runner.notify(notes)
        await runner.drain(timeout=10)
    lines = sorted(log.read_text().split("\n")[:-1])
    assert lines == ["all firing", "all resolved", "resolved n1"], json.dumps(lines)
    assert runner.failures == 0


async def test_a_failing_hook_is_counted_and_does_not_stop_the_others(tmp_path: Path):
    log = tmp_path / "ok.log"
    runner = HookRunner(parse_hooks([{"command": "exit 3"}, {"command": f"echo x >> {log}"}]))
    eng = cpu_rule(**{"when": "cpu_percent > 90"})
    _, notes = eng.evaluate([node(95)], 0.0)
    runner.notify(notes)
    await asyncio.wait_for(runner.drain(timeout=10), 15)
    assert runner.failures == 1 and runner.delivered == 1 and log.read_text() == "x\n"
