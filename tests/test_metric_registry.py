"""The metric registry (agentd/metrics.py) drives the docs, the alert rules' metric names, and
a metric's way from a real agent through the director's store and Prometheus to its chart."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agentd.metrics import BY_NAME, METRICS, Metric, _check
from ctop.alerts import RuleError, parse_rule
from ctop.config import ConfigError, DirectorConfig, LivenessConfig, StoreConfig, load
from ctop.engine import Engine
from ctop.snapshot import Liveness, NodeView
from ctop.store import Store
from ctop.tui.app import CtopApp
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.widgets.chart import Chart
from tests.helpers.agent_helpers import start_agent, write_key

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_metric_tables_are_the_registry():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "metrics_doc.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = (ROOT / "docs" / "agentd.md").read_text()
    for m in METRICS:  # every metric has its row, with its Prometheus name where exported
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{m.name}` |"))
        assert (f"`{m.prometheus}`" in row) == bool(m.prometheus)


def test_an_alert_rule_on_a_metric_nobody_sends_is_refused_with_the_known_names():
    with pytest.raises(RuleError, match=r"unknown metric 'cpu_precent'.*cpu_percent"):
        parse_rule({"name": "typo", "when": "cpu_precent > 90 for 30s"})
    with pytest.raises(RuleError, match=r"key 'metric': unknown metric 'net_ifaces'"):
        parse_rule({"name": "a map", "metric": "net_ifaces", "warn": 1})  # no single value
    assert parse_rule({"name": "ok", "when": "load > 4"}).metric == "load"


def test_the_config_names_the_line_of_an_alert_on_an_unknown_metric(tmp_path):
    path = tmp_path / "ctop.toml"
    path.write_text('[[alert]]\nname = "rss"\n\nwhen = "rss_total > 1000"\n')
    with pytest.raises(ConfigError, match=r"ctop.toml:4: \[\[alert\]\] #1: key 'when': "
                                          r"unknown metric 'rss_total'"):
        load(str(path))


async def _until(predicate: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_registry_metric_flows_from_a_real_agent_to_store_prometheus_and_chart(tmp_path):
    """procs_rss (the seed's "process size") is stored, exported and charted because its
    registry line says so: nothing else names it on the director."""
    rss = BY_NAME["procs_rss"]
    prom = _free_port()
    (tmp_path / "none.toml").write_text("")
    cfg = DirectorConfig(
        cluster="test", listen=("127.0.0.1", 0),
        key_file=str(write_key(tmp_path / "cluster.key")), tick=0.1,
        liveness=LivenessConfig(suspect_after=2.5, dead_after=5.0),
        store=StoreConfig(path=str(tmp_path / "ctop.db"), raw_every=0.2),
        control_socket=str(tmp_path / "ctop.sock"), prometheus=("127.0.0.1", prom),
    )
    eng = Engine(cfg)
    await eng.start()
    agent = start_agent("--config", str(tmp_path / "none.toml"), "--director",
                        f"127.0.0.1:{eng.port}", "--key-file", str(tmp_path / "cluster.key"),
                        "--node-id", "rss-1", "--interval", "0.2")
    try:
        node = await _until(lambda: (n := eng.snapshot().node("rss-1")) and n.metrics and n)
        sent = node.metrics["procs_rss"]  # type: ignore[union-attr]
        assert sent > 1 << 20  # a real node's processes hold more than a MiB
        # the store: a column of its own, read back as history in bytes
        points = await _until(lambda: eng.history("rss-1", ["procs_rss"], 60)["procs_rss"])
        assert all(v > 1 << 20 for _, v in points)  # type: ignore[union-attr]
        # Prometheus: under its registry name and help, the node's latest value
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{prom}/metrics")).text
        assert f"# HELP {rss.prometheus} {rss.description}, bytes" in text
        assert f"# TYPE {rss.prometheus} gauge" in text
        line = next(li for li in text.splitlines()
                    if li.startswith(f'{rss.prometheus}{{node="rss-1"'))
        assert float(line.rsplit(" ", 1)[1]) > 1 << 20
        # the node detail charts it, from that history
        app = CtopApp(eng, view="table", poll=0.1)
        async with app.run_test(size=(140, 60)):
            await app.push_screen(NodeDetail("rss-1"))
            chart = app.screen.query_one(f"#c-{rss.column}", Chart)
            await _until(lambda: len(chart.points) >= 2)
            stored = {round(t, 3) for t, _ in eng.history("rss-1", ["procs_rss"], 900)["procs_rss"]}
            assert chart.title == rss.chart and {round(t, 3) for t, _ in chart.points} <= stored
    finally:
        agent.kill()
        agent.wait()
        await eng.stop()


def test_a_database_from_before_a_stored_metric_gains_its_column_and_keeps_its_history(tmp_path):
    """A metric given a column in the registry on a director with history: its database is
    made before the column existed (here: the column dropped again, as SQLite allows)."""
    path = str(tmp_path / "ctop.db")
    t0 = 1_800_000_000.0
    old = Store(path)
    old.record_tick(t0, [_view("n1", t0, 10.0, rss=None)], ())
    old.flush()
    old.close()
    db = sqlite3.connect(path)
    for table, column in (("samples", "procs_rss"), ("rollups", "procs_rss_avg"),
                          ("rollups", "procs_rss_max"), ("hourly", "procs_rss_avg"),
                          ("hourly", "procs_rss_max")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.commit()
    db.close()

    new = Store(path)  # the upgraded director
    for i in range(1, 4):
        new.record_tick(t0 + i, [_view("n1", t0 + i, 20.0, rss=5 << 20)], ())
    new.flush()
    got = new.history("n1", ["cpu_percent", "procs_rss"], 60, now=t0 + 4)
    new.close()
    assert [v for _, v in got["cpu_percent"]] == [10.0, 20.0, 20.0, 20.0]  # old rows kept
    assert [v for _, v in got["procs_rss"]] == [5 << 20] * 3  # none made up for old rows


def _view(node: str, now: float, cpu: float, rss: int | None) -> NodeView:
    metrics = {"procs": 7} if rss is None else {"procs": 7, "procs_rss": rss}
    return NodeView(node, node, "g", Liveness.ALIVE, now, 1, 1.0, cpu=cpu, metrics=metrics)


def test_a_registry_line_that_cannot_work_fails_at_import_naming_the_metric():
    with pytest.raises(ValueError, match="metric rss: a chart reads history: it needs a column"):
        _check((*METRICS, Metric("rss", "rs", "list", "x", view="rss", chart="RSS")))
    with pytest.raises(ValueError, match="metric cpu: name 'cpu' is used twice"):
        _check((*METRICS, Metric("cpu", "c2", "list", "x"), Metric("cpu", "c3", "list", "x")))
    with pytest.raises(ValueError, match="scalar metrics come first"):
        _check((METRICS[-1], *METRICS[:-1]))
