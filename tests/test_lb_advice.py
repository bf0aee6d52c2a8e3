"""Weight advice: concrete inputs, damping, bounds, and no oscillation in a closed loop."""

from __future__ import annotations

import itertools
import random

from ctop.lb.actions import LBController
from ctop.lb.advice import AdvicePolicy, ServerLoad, WeightAdvisor, advise
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Journal
from tests.helpers.haproxy_peer import HAProxyLab

COST = 0.004  # cores per active connection, the same on every server (same software)


def simulate(
    cores: dict[str, float],
    weights: dict[str, int],
    conns: float = 600,
    noise: float = 0.0,
    rng: random.Random | None = None,
) -> list[ServerLoad]:
    """The cluster's answer to a set of weights: load follows weight, CPU follows load."""
    total = sum(weights.values())
    out = []
    for name, c in cores.items():
        load = conns * weights[name] / total
        idle = max(0.0, 1 - load * COST / c)
        if noise and rng:
            idle = min(1.0, max(0.0, idle + rng.uniform(-noise, noise)))
        out.append(ServerLoad(name, weights[name], c, idle, load))
    return out


def test_capacity_from_cores_and_idle() -> None:
    # 4 and 8 cores, both 50 % busy with 100 and 200 connections: same cost per connection,
    # so capacity is 2x and the weights should become 1:2 of the total (30) = 10:20.
    loads = [ServerLoad("a", 15, 4, 0.5, 100), ServerLoad("b", 15, 8, 0.5, 200)]
    adv = {a.server: a for a in advise(loads, AdvicePolicy(max_step=1.0))}
    assert round(adv["a"].target) == 10 and round(adv["b"].target) == 20
    assert (adv["a"].suggested, adv["b"].suggested) == (10, 20)


def test_damping_limits_each_step() -> None:
    loads = [ServerLoad("a", 20, 2, 0.5, 100), ServerLoad("b", 20, 16, 0.5, 800)]
    adv = {a.server: a for a in advise(loads, AdvicePolicy(max_step=0.25))}
    assert adv["a"].suggested == 15 and adv["b"].suggested == 25  # ±25 % of 20
    assert "limited to 25% per step" in adv["a"].reason


def test_bounds() -> None:
    loads = [ServerLoad("a", 2, 1, 0.5, 10), ServerLoad("b", 90, 64, 0.5, 640)]
    pol = AdvicePolicy(max_step=1.0, min_weight=2, max_weight=80)
    adv = {a.server: a for a in advise(loads, pol)}
    assert adv["a"].suggested == 2  # wants ~1.4, held at min_weight
    assert adv["b"].suggested == 80 and "bounded" in adv["b"].reason


def test_idle_servers_sized_by_cores_and_missing_data_kept() -> None:
    loads = [
        ServerLoad("a", 10, 4, 0.5, 100),
        ServerLoad("b", 10, 4, 0.99, 1),  # too idle to measure: uses a's cost
        ServerLoad("c", 10, None, None, 50),  # no agent: keeps its weight
        ServerLoad("d", 0, 8, 1.0, 0),  # drained: not advised
    ]
    adv = {a.server: a for a in advise(loads, AdvicePolicy(max_step=1.0))}
    assert adv["a"].suggested == adv["b"].suggested == 10
    assert adv["c"].suggested == 10 and adv["c"].target is None
    assert adv["d"].suggested == 0 and not adv["d"].change


def test_slow_server_loses_weight_within_floor() -> None:
    loads = [ServerLoad(n, 10, 4, 0.5, 100, lat) for n, lat in (("a", 10), ("b", 10), ("c", 90))]
    adv = {a.server: a for a in advise(loads, AdvicePolicy(max_step=1.0))}
    assert adv["c"].suggested < adv["a"].suggested
    assert adv["c"].target >= 0.5 * adv["a"].target  # latency takes at most half


def test_single_server_gets_no_advice() -> None:
    [a] = advise([ServerLoad("a", 5, 4, 0.2, 100)])
    assert not a.change and a.reason == "not enough data"


def test_closed_loop_converges_without_oscillation() -> None:
    cores = {"a": 2.0, "b": 4.0, "c": 8.0}
    weights = {"a": 10, "b": 10, "c": 10}
    pol = AdvicePolicy(max_step=0.25, deadband=0.1)
    history = [dict(weights)]
    for _ in range(30):
        for a in advise(simulate(cores, weights), pol):
            assert abs(a.suggested - a.current) <= max(1, 0.25 * a.current) + 0.5
            weights[a.server] = a.suggested
        history.append(dict(weights))
    # converged near 2:4:8 of the total 30 (≈ 4.3 : 8.6 : 17.1)
    assert abs(weights["a"] - 4.3) <= 1 and abs(weights["c"] - 17.1) <= 2
    for name in cores:  # each server moved in one direction only: no oscillation
        steps = [b[name] - a[name] for a, b in itertools.pairwise(history)]
        assert not (any(s > 0 for s in steps) and any(s < 0 for s in steps)), (name, steps)
    assert history[-1] == history[-5]  # and came to rest


def test_noise_does_not_make_weights_wander() -> None:
    rng = random.Random(5)
    cores = {"a": 4.0, "b": 4.0, "c": 8.0}
    weights = {"a": 10, "b": 10, "c": 20}  # already right
    seen = {n: set() for n in cores}
    advisor = WeightAdvisor(AdvicePolicy(deadband=0.1), alpha=0.3)
    for _ in range(50):  # CPU about 40 % busy, idle readings jitter by ±3 points
        for a in advisor.advise(simulate(cores, weights, 1500, noise=0.03, rng=rng)):
            weights[a.server] = a.suggested
            seen[a.server].add(a.suggested)
    assert seen == {"a": {10}, "b": {10}, "c": {20}}  # the dead band absorbs the noise


def test_advised_weights_set_by_automation_move_real_haproxy_traffic(
    haproxy: HAProxyLab, tmp_path
) -> None:
    """As the monitor applies advice ([lb.advice] auto): through the controller, origin auto."""
    ctl = LBController({"haproxy": HAProxyBalancer(haproxy.admin_socket)}, Journal(tmp_path / "db"))
    loads = [
        ServerLoad("s1", 1, 2, 0.5, 10),
        ServerLoad("s2", 1, 2, 0.5, 10),
        ServerLoad("s3", 1, 8, 0.5, 40),
    ]
    advice = advise(loads, AdvicePolicy(max_step=1.0))
    results = [ctl.set_weight("haproxy", "web8", a.server, a.suggested, origin="auto")
               for a in advice if a.change]
    assert [r.ok for r in results] == [True] and results[0].after == 2
    counts = haproxy.hits("web8", 40)
    assert counts["s3"] == 20 and counts["s1"] == 10


def test_a_handful_of_connections_is_not_a_measurement() -> None:
    # Two identical servers, equally busy, with 1 and 2 open connections: a cost per
    # connection from so few is noise (it would say one can carry twice the other).
    loads = [ServerLoad("a", 10, 2, 0.9, 1), ServerLoad("b", 10, 2, 0.9, 2)]
    assert not any(a.change for a in advise(loads))
    # With real load the same difference is a measurement.
    loads = [ServerLoad("a", 10, 2, 0.9, 100), ServerLoad("b", 10, 2, 0.9, 200)]
    adv = {a.server: a for a in advise(loads)}
    assert adv["a"].suggested < 10 < adv["b"].suggested
