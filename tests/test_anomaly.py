"""Anomaly detection (ctop/anomaly): synthetic histories written into a real history
database, read back through a read-only connection as the daemon's job reads them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ctop.anomaly.baseline import MAD_TO_SIGMA, NodeAnomaly
from ctop.anomaly.config import AnomalyConfig
from ctop.anomaly.groups import cost_outliers
from ctop.anomaly.job import AnomalyDetector, AnomalyJob
from ctop.anomaly.levels import (
    COST,
    GROUP,
    NODE,
    SERVICE,
    AnomalyAlerts,
    escalate,
    node_levels,
)
from ctop.config import ConfigError, from_source
from ctop.snapshot import (
    Aggregate,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    Snapshot,
)
from ctop.tomlsource import TomlSource
from tests.helpers.anomaly_history import (
    HOUR,
    MONDAY,
    WEEK,
    history_hours,
    open_store,
    write_hours,
    write_minutes,
)
from tests.helpers.engine_helpers import make_engine, until

# Monday 14:00 is a quiet hour for this node (CPU ~20 %), every other hour a busy one (~80 %);
# the weeks differ (MAD 3 points), so the baseline has a real spread above the floor.
WEEK_NOISE = (0.0, 6.0, -6.0, 3.0, -3.0, 0.0)  # per week since MONDAY: median 0, MAD 3
QUIET, BUSY, MAD = 20.0, 80.0, 3.0
SPREAD = MAD_TO_SIGMA * MAD
NOW = MONDAY + 10 * WEEK + 14.5 * HOUR  # a Monday 14:30 UTC


def seasonal(node: str, hour: int) -> dict[str, float]:
    monday_14 = (hour - int(MONDAY // HOUR)) % 168 == 14
    noise = WEEK_NOISE[(hour - int(MONDAY // HOUR)) // 168 % len(WEEK_NOISE)]
    return {"cpu_percent": (QUIET if monday_14 else BUSY) + noise, "mem_percent": 40.0}


def store(tmp_path: Path, now: float, days: float, values=seasonal,
          nodes: dict[str, str] | None = None) -> str:
    path = str(tmp_path / "ctop.db")
    db = open_store(path, nodes or {"n1": "web"})
    write_hours(db, history_hours(now, days), values)
    db.close()
    return path


def current(path: str, now: float, **cpu: float) -> None:
    db = open_store(path, {})
    write_minutes(db, now, {n: {"cpu_percent": v, "mem_percent": 40.0} for n, v in cpu.items()})
    db.close()


def anomalies(path: str, now: float, cfg: AnomalyConfig | None = None) -> dict[str, str]:
    det = AnomalyDetector(cfg or AnomalyConfig(), path)
    try:
        return {k: b.message for k, b in det.evaluate(now, (), ()).breaches.items()}
    finally:
        det.close()


def test_a_value_far_above_this_hour_of_the_weeks_baseline_fires(tmp_path: Path) -> None:
    path = store(tmp_path, NOW, 42)
    current(path, NOW, n1=QUIET + 5.5 * SPREAD)  # robust z 5.5 at Monday 14:00
    found = anomalies(path, NOW)
    assert list(found) == [f"{NODE}:n1:cpu_percent"]
    assert "5.5 robust z above its usual 20" in found[f"{NODE}:n1:cpu_percent"]


def test_a_value_within_the_baselines_spread_does_not_fire(tmp_path: Path) -> None:
    path = store(tmp_path, NOW, 42)
    current(path, NOW, n1=QUIET + 4 * SPREAD)  # z 4 < the threshold 5
    assert anomalies(path, NOW) == {}


def test_the_same_value_at_an_hour_where_it_is_normal_does_not_fire(tmp_path: Path) -> None:
    later = NOW + HOUR  # Monday 15:30: a busy hour, where 80 % is the usual
    path = store(tmp_path, later, 42)
    current(path, later, n1=BUSY)
    assert anomalies(path, later) == {}
    current(path, NOW, n1=BUSY)  # and the same 80 % at Monday 14:30 is far from the usual 20
    assert list(anomalies(path, NOW)) == [f"{NODE}:n1:cpu_percent"]


def test_a_flat_cluster_never_fires(tmp_path: Path) -> None:
    nodes = {f"n{i}": "web" for i in range(5)}
    path = store(tmp_path, NOW, 42, lambda n, h: {"cpu_percent": 30.0, "mem_percent": 40.0},
                 nodes)
    # MAD 0: without a floor any change would be infinitely far; small ones stay quiet
    current(path, NOW, n0=30.0, n1=31.5, n2=28.5, n3=33.0, n4=30.2)
    assert anomalies(path, NOW) == {}


def test_a_new_cluster_never_fires(tmp_path: Path) -> None:
    path = store(tmp_path, NOW, 2)  # 2 days: Monday 14:00 was never seen
    current(path, NOW, n1=100.0)
    assert anomalies(path, NOW) == {}
    # 8 days: the hour was seen once; min_samples (3) of it are needed
    (tmp_path / "8").mkdir()
    path8 = store(tmp_path / "8", NOW, 8)
    current(path8, NOW, n1=100.0)
    assert anomalies(path8, NOW) == {}
    # with min_samples 1 that one sample would do; min_history_days (7) still decides
    assert anomalies(path8, NOW, AnomalyConfig(min_samples=1)) != {}
    assert anomalies(path8, NOW, AnomalyConfig(min_samples=1, min_history_days=9)) == {}


def node(nid: str, group: str, cpu: float, cores: int = 4) -> NodeView:
    return NodeView(nid, nid, group, Liveness.ALIVE, NOW, 1, 1.0, cores=cores, cpu=cpu)


def server(nid: str, conns: int, state: str = "serving") -> RealServerView:
    return RealServerView(f"{nid}:80", nid, 80, 10, state, conns, 0, 0.0, node_id=nid)


def service(*servers: RealServerView) -> LBServiceView:
    return LBServiceView("TCP 10.0.0.1:80", "ipvs", "TCP", "wlc", servers)


def test_a_node_costing_more_per_connection_than_its_group_fires_though_its_cpu_is_normal(
) -> None:
    cpus = {"w1": 42.0, "w2": 38.0, "w3": 45.0, "w4": 40.0, "w5": 39.0}
    nodes = [node(n, "web", c) for n, c in cpus.items()]
    # w5's CPU is inside the group's range, but it gets a third of the connections
    lb = [service(*(server(n, 30 if n == "w5" else 100) for n in cpus))]
    found = cost_outliers(nodes, lb, AnomalyConfig())
    assert [o.node_id for o in found] == ["w5"]
    assert min(cpus.values()) <= found[0].cpu <= max(cpus.values())
    assert "3.1x its group web's median CPU per connection" in found[0].describe()
    # the same CPUs with the connections shared alike: nobody is far
    even = [service(*(server(n, 100) for n in cpus))]
    assert cost_outliers(nodes, even, AnomalyConfig()) == []


def test_enough_anomalous_nodes_escalate_to_a_group_and_a_service_alert(tmp_path: Path) -> None:
    nodes = {f"w{i}": "web" for i in range(5)}
    path = store(tmp_path, NOW, 42, nodes=nodes)
    cfg = AnomalyConfig(group_fraction=0.4)
    views = [node(n, "web", 50.0) for n in nodes]
    lb = [service(*(server(n, 100) for n in ("w0", "w1", "w2")))]
    det = AnomalyDetector(cfg, path)

    current(path, NOW, w0=BUSY, w1=QUIET, w2=QUIET, w3=QUIET, w4=QUIET)  # 1 of 5: 20 %
    one = det.evaluate(NOW, views, lb).breaches
    assert {b.rule for b in one.values()} == {NODE}

    current(path, NOW, w0=BUSY, w1=BUSY)  # 2 of 5 = 40 %; the service has 1 healthy of 3
    two = det.evaluate(NOW, views, lb).breaches
    det.close()
    assert {b.rule for b in two.values()} == {NODE, GROUP, SERVICE}
    assert "group web: 2 of 5 nodes anomalous" in two[f"{GROUP}:web"].message
    assert "1 healthy real server(s) serving (< 2); anomalous: w0, w1" in \
        two[f"{SERVICE}:ipvs TCP 10.0.0.1:80"].message


def test_the_node_tables_level_names_each_nodes_highest_level() -> None:
    views = [node("a", "web", 40), node("b", "web", 40), node("c", "db", 40)]
    cfg = AnomalyConfig(min_group=2, group_fraction=1.0)
    alerts = AnomalyAlerts()
    alerts.update(escalate([NodeAnomaly("c", "cpu_percent", 90, 20, 3, 20)], [], views, [], cfg),
                  NOW)
    assert node_levels(alerts.firing(), views) == {"c": "node"}
    both = [NodeAnomaly(n, "cpu_percent", 90, 20, 3, 20) for n in ("a", "b")]
    events, _ = alerts.update(escalate(both, [], views, [], cfg), NOW + 60)
    assert node_levels(alerts.firing(), views) == {"a": "group", "b": "group"}
    assert sorted(e.kind for e in events) == ["alert", "alert", "alert", "resolved"]
    assert COST not in {a.rule for a in alerts.firing()}


async def test_the_daemon_raises_anomalies_from_its_own_store(tmp_path: Path) -> None:
    now = time.time()

    def at_this_hour(n: str, h: int) -> dict[str, float]:  # the baseline: 20 % at this hour
        return {"cpu_percent": 20.0 + WEEK_NOISE[(h // 168) % len(WEEK_NOISE)],
                "mem_percent": 40.0}
    path = store(tmp_path, now, 42, at_this_hour)
    current(path, now, n1=90.0)
    engine = make_engine(tmp_path, anomaly=AnomalyConfig(every=0.1))
    await engine.start()
    try:
        snap = await until(lambda: any(a.rule == NODE for a in engine.snapshot().alerts)
                           and engine.snapshot())
        alert = next(a for a in snap.alerts if a.rule == NODE)
        assert (alert.node_id, alert.key) == ("n1", f"{NODE}:n1:cpu_percent")
        await until(lambda: any("cpu_percent on n1 is 90" in e.message
                                for e in engine.snapshot().events))
    finally:
        await engine.stop()


CONFIG_ERRORS = [
    ('metrics = ["cpu_percent", "uptime"]', 3, "'uptime' has no baseline"),
    ("group_fraction = 2", 3, "expected a fraction in (0, 1]"),
    ("threshold = -1", 3, "expected a number > 0"),
    ("min_samples = 0", 3, "expected a whole number >= 1"),
    ("every = \"soon\"", 3, "anomaly.every"),
    ("colour = 1", 3, "unknown key"),
]


@pytest.mark.parametrize(("line", "at", "problem"), CONFIG_ERRORS)
def test_a_bad_anomaly_setting_names_its_file_and_line(tmp_path: Path, line: str, at: int,
                                                       problem: str) -> None:
    f = tmp_path / "ctop.toml"
    f.write_text(f'key_file = "k"\n[anomaly]\n{line}\n')
    with pytest.raises(ConfigError) as e:
        from_source(TomlSource.load(f))
    assert f"{f}:{at}:" in str(e.value) and problem in str(e.value)


def test_anomaly_settings_are_read(tmp_path: Path) -> None:
    f = tmp_path / "ctop.toml"
    f.write_text('key_file = "k"\n[anomaly]\nmetrics = ["cpu_percent"]\nthreshold = 4\n'
                 'min_history_days = 14\ngroup_fraction = 0.5\nenabled = false\n')
    cfg = from_source(TomlSource.load(f)).anomaly
    assert (cfg.metrics, cfg.threshold, cfg.min_history_days, cfg.group_fraction,
            cfg.enabled) == (("cpu_percent",), 4.0, 14.0, 0.5, False)


async def test_a_failing_evaluation_is_logged_and_the_next_one_runs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 100)
    seen: list = []
    job = AnomalyJob(AnomalyConfig(), str(bad), "test", lambda ev, notes: seen.append(ev))
    snap = Snapshot(NOW, 1, "test", (), (), Aggregate())
    await job.run_once(snap, NOW)  # raises nothing: logged, nothing fires
    assert job.last is None and seen == [] and "anomaly evaluation failed" in caplog.text
    job.detector.path = store(tmp_path, NOW, 42)  # the next period, a readable database
    current(job.detector.path, NOW, n1=BUSY)
    await job.run_once(snap, NOW)
    assert [a.key for a in job.firing()] == [f"{NODE}:n1:cpu_percent"]
    job.close()
