"""The what-if model, ramp steps, the drain-to-empty estimate and the limits from alert rules:
pure functions, with real numbers."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from ctop.alerts import parse_rules
from ctop.lb.drainwatch import DrainWatch, eta
from ctop.lb.ipvs_parse import parse_proc_conn
from ctop.lb.limits import limits_from_rules
from ctop.lb.ramp import ramp_steps
from ctop.lb.whatif import ServerNow, predict, table

FIXTURES = Path(__file__).parent / "fixtures" / "ipvs"


def test_drain_moves_the_load_by_weight_and_costs_it_by_measured_cpu() -> None:
    # 40 active connections on weights 2:1:1; s1 is drained
    servers = [
        ServerNow("s1", 2, 0, load=20, cores=4, cpu_percent=50),  # 0.1 core per connection
        ServerNow("s2", 1, 1, load=10, cores=4, cpu_percent=25),  # 0.1 core per connection
        ServerNow("s3", 1, 1, load=10, cores=4, cpu_percent=48),  # 0.192 core per connection
    ]
    p = {x.server: x for x in predict(servers, cpu_warn=90, cpu_crit=98)}
    assert (p["s1"].share, p["s1"].share_after) == (0.5, 0.0)
    assert (p["s2"].share, p["s2"].share_after) == (0.25, 0.5)
    assert (p["s2"].load_after, p["s3"].load_after) == (20, 20)
    # s2: 25 % + 0.1 core x 10 more connections / 4 cores = 50 %
    assert p["s2"].cpu_after == pytest.approx(50)
    # s3: 48 % + 0.192 x 10 / 4 = 96 %: above cpu-high's warn (90), below its crit (98)
    assert p["s3"].cpu_after == pytest.approx(96)
    assert (p["s2"].level, p["s3"].level) == ("", "warn")
    assert p["s1"].cpu_after == pytest.approx(0)
    text = "\n".join(table(list(p.values()), cpu_warn=90, cpu_crit=98))
    assert "WARN > 90%" in text and text.count("WARN") == 1


def test_an_idle_server_is_costed_at_the_median_of_the_others() -> None:
    servers = [
        ServerNow("a", 1, 0, load=30, cores=2, cpu_percent=60),  # 0.04 core per connection
        ServerNow("b", 1, 1, load=30, cores=2, cpu_percent=30),  # 0.02
        ServerNow("c", 1, 1, load=2, cores=2, cpu_percent=1),  # too few connections to measure
    ]
    p = {x.server: x for x in predict(servers, cpu_crit=98)}
    # 62 connections on b and c: 31 each; c takes 29 more at the median cost 0.03
    assert p["c"].load_after == 31
    assert p["c"].cpu_after == pytest.approx(1 + 0.03 * 29 * 100 / 2)
    assert p["c"].level == ""


def test_without_node_metrics_only_the_shares_are_predicted() -> None:
    servers = [ServerNow("s1", 1, 0, load=5), ServerNow("s2", 3, 3, load=5)]
    p = predict(servers, cpu_warn=90)
    assert [x.share_after for x in p] == [0.0, 1.0]
    assert all(x.cpu_after is None and x.level == "" for x in p)
    text = "\n".join(table(p, no_metrics="no node metrics"))
    assert "CPU unknown: no node metrics; shares are by weight" in text


def test_limits_from_the_default_and_configured_alert_rules() -> None:
    lim = limits_from_rules(parse_rules(None))
    assert (lim.cpu_warn, lim.cpu_crit) == (90, 98)
    assert lim.quorum("web").serving == 1
    lim = limits_from_rules(parse_rules([
        {"name": "web-cap", "lb_service": "web", "serving_below": 3},
        {"name": "all", "lb_service": "*", "serving_below": 2},
        {"name": "cpu", "when": "cpu_percent > 75", "crit": 85},
    ]))  # fmt: skip
    assert (lim.quorum("web").serving, lim.quorum("web").rule) == (3, "web-cap")
    assert (lim.quorum("db").serving, lim.quorum("db").rule) == (2, "all")
    assert (lim.cpu_warn, lim.cpu_crit) == (75, 85)


def test_ramp_steps() -> None:
    assert ramp_steps(4, 3) == [(0.0, 1), (1.0, 2), (2.0, 3), (3.0, 4)]
    steps = ramp_steps(100, 60)  # at most 10 steps, evenly spread, ending at the weight
    assert len(steps) == 10 and steps[-1] == (60.0, 100) and steps[0] == (0.0, 10)
    assert all(b[1] > a[1] for a, b in itertools.pairwise(steps))
    assert ramp_steps(3, 60) == [(0.0, 1), (30.0, 2), (60.0, 3)]
    assert ramp_steps(1, 60) == [] and ramp_steps(5, 0) == []


def test_time_to_empty_from_the_observed_decay() -> None:
    # halving every 10 s from 64: 6 more halvings to 1, then one more below one half
    samples = [(t, round(64 * 0.5 ** (t / 10))) for t in range(0, 21, 5)]
    assert eta(samples) == pytest.approx(10 * (math.log2(16) + 1), rel=0.05)
    assert eta([(0, 5), (10, 5)]) is None  # not falling
    assert eta([(0, 3)]) is None and eta([(0, 0)]) == 0.0
    w = DrainWatch()
    for t, n in [(0, 8), (1, 4), (2, 9)]:  # new connections: the decay starts over
        w.add(t, n)
    assert list(w.samples) == [(2, 9)] and w.eta() is None


def test_proc_ip_vs_conn_entries() -> None:
    conns = parse_proc_conn((FIXTURES / "proc_net_ip_vs_conn.txt").read_text())
    assert len(conns) == 12 and not any(c.template for c in conns)
    first = conns[0]
    assert (first.client, first.virtual, first.server) == (
        "172.16.0.2:55192", "10.0.0.1:80", "10.0.0.2:80"
    )
    assert (first.state, first.expires_s) == ("TIME_WAIT", 112.0)
    synced = parse_proc_conn((FIXTURES / "proc_net_ip_vs_conn_sync.txt").read_text())
    assert [c.expires_s for c in synced][:3] == [112.0, 110.0, 113.0]


def test_persistence_templates_in_ip_vs_conn() -> None:
    # captured in the VM: TCP 10.1.0.5:80 -p 300, one client, 4 connections to 10.1.2.2
    conns = parse_proc_conn((FIXTURES / "proc_net_ip_vs_conn_persistent.txt").read_text())
    templates = [c for c in conns if c.template]
    assert [(t.client, t.virtual, t.server, t.state, t.expires_s) for t in templates] == [
        ("172.16.0.2:0", "10.1.0.5:80", "10.1.2.2:80", "ASSURED", 299.0)
    ]
    # after expire_quiescent_template=1 the kernel parks the used-up template on port 65535
    # (it no longer matches the service) and makes a new one to the other server
    after = parse_proc_conn((FIXTURES / "proc_net_ip_vs_conn_expired_template.txt").read_text())
    live = {(t.virtual, t.server) for t in after if t.template}
    assert live == {("10.1.0.5:80", "10.1.1.2:80"), ("10.1.0.5:65535", "10.1.2.2:65535")}
