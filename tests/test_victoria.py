"""History at scale: `[history] victoria_url` (docs/scaling.md). A real `ctop serve` writes its
samples to SQLite and to a real VictoriaMetrics; the node detail's charts read from
VictoriaMetrics are the same points as from SQLite."""

from __future__ import annotations

import random
import time
from pathlib import Path

from ctop.nats.config import NatsConfig
from ctop.nats.view import NatsSource
from ctop.snapshot import Liveness, NodeView
from ctop.store import Store, StoreReader
from ctop.store.schema import METRIC_COLUMNS
from ctop.tui.app import CtopApp
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.widgets.chart import Chart
from ctop.victoria import VictoriaReader, VictoriaSink
from tests.helpers.nats_servers import NatsServer
from tests.helpers.screen import screen_text
from tests.helpers.serve_helpers import Daemon, Sender
from tests.helpers.tui_helpers import SIZE
from tests.helpers.victoria import Victoria


def test_charts_from_victoria_metrics_match_sqlite(tmp_path: Path, victoria: Victoria) -> None:
    d = Daemon(tmp_path, f'tick = 0.2\n[history]\nvictoria_url = "{victoria.url}"').start()
    agent = Sender("vm1", key=d.key)
    try:
        d.send(agent.join())
        for i in range(12):  # distinct values, with fractions SQLite rounds to its scale
            d.send(agent.report(interval=0.25, cpu_percent=10 + i * 3.33333,
                                mem_percent=50 - i * 1.77777, tcp_established=i,
                                load1=0.5 + i / 7))
            time.sleep(0.25)
        metrics = list(METRIC_COLUMNS)
        store = StoreReader(str(d.db))
        vm = VictoriaReader(victoria.url, "t")
        deadline = time.monotonic() + 15
        while True:
            victoria.flush()
            want = store.history("vm1", metrics, 600)
            got = vm.history("vm1", metrics, 600)
            if (len(want["cpu_percent"]) >= 3 and got == want) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(want["cpu_percent"]) >= 3, want["cpu_percent"]
        assert got["cpu_percent"] == want["cpu_percent"]
        assert got == want
        # and the daemon's own reader (the node detail of an embedded or attached UI) is it
        assert d.status()["nodes"][0]["node_id"] == "vm1"
    finally:
        d.stop()


def test_a_bad_victoria_url_is_a_config_error(tmp_path: Path) -> None:
    d = Daemon(tmp_path, '[history]\nvictoria_url = "victoria:8428"')
    out = d.ctop("status")
    assert out.returncode == 2
    assert "victoria_url" in out.stderr and "http://" in out.stderr


async def test_the_nats_views_node_detail_draws_the_sqlite_chart_from_victoria_metrics(
        tmp_path: Path, victoria: Victoria, nats_server: NatsServer) -> None:
    """A collector writes SQLite and VictoriaMetrics; `ctop --nats` with the same
    victoria_url opens the node and draws the chart its collector's SQLite would."""
    d = Daemon(tmp_path, f'tick = 0.2\n[history]\nvictoria_url = "{victoria.url}"\n'
                         f'[nats]\nservers = ["{nats_server.url}"]\nname = "col-vm"\n'
                         'role = "collector"\n').start()
    agent = Sender("vm2", key=d.key)
    source = NatsSource(NatsConfig(servers=(nats_server.url,)), victoria_url=victoria.url)
    try:
        d.send(agent.join())
        for i in range(10):
            d.send(agent.report(interval=0.25, cpu_percent=20 + i * 6.66667, mem_percent=40))
            time.sleep(0.25)
        store = StoreReader(str(d.db))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            victoria.flush()
            want = store.history("vm2", ["cpu_percent"], 120)["cpu_percent"]
            if (len(want) >= 3 and source.snapshot().node("vm2") is not None
                    and source.history("vm2", ["cpu_percent"], 120)["cpu_percent"] == want):
                break
            time.sleep(0.3)
        assert len(want) >= 3
        app = CtopApp(source, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert isinstance(app.screen, NodeDetail) and app.screen.node_id == "vm2"
            cpu = app.screen.query_one("#c-cpu", Chart)
            for _ in range(50):
                await app.workers.wait_for_complete()
                if list(cpu.points) == want:
                    break
                await pilot.pause(0.1)
            assert list(cpu.points) == want  # the same points as SQLite's, drawn
            sqlite_chart = Chart(cpu.title, cpu.unit, top=cpu.top)
            sqlite_chart.set_points(want, cpu.window)
            drawn = [["".join(seg.text for seg in line)] for line in cpu.lines(60, 8)]
            assert drawn == [["".join(seg.text for seg in line)]
                             for line in sqlite_chart.lines(60, 8)]
            assert "no history in a NATS view" not in "\n".join(screen_text(app))
    finally:
        source.close()
        d.stop()


def test_charts_over_hours_from_query_range_match_sqlites_minute_rollups(
        tmp_path: Path, victoria: Victoria) -> None:
    """Spans over 6 h read 1-minute averages: VictoriaMetrics' /api/v1/query_range and
    SQLite's minute rollups give the same steps (each minute's start), the same gaps (minutes
    without samples have no point) and the same values, in the same units."""
    now = time.time()
    start = int(now - 7 * 3600) // 60 * 60  # a minute's start, 7 h ago
    db = str(tmp_path / "hist.db")
    store = Store(db, raw_every=1.0)
    sink = VictoriaSink(victoria.url, "qr", raw_every=1.0)
    rng = random.Random(15)
    minutes = [m for m in range(30) if not 10 <= m < 15]  # five minutes without a report
    try:
        for m in minutes:
            for k in range(3):  # three reports a minute, values on the registry's scale
                ts = start + m * 60 + 5 + k * 20
                v = NodeView("q1", "q1", "", Liveness.ALIVE, ts, 1, 20.0,
                             cpu=rng.randint(0, 1000) / 10, mem=rng.randint(0, 1000) / 10,
                             load1=rng.randint(0, 800) / 100, conns=rng.randint(0, 900),
                             metrics={"cpu_percent": 1.0})
                store.record_tick(ts, [v], [])
                sink.offer([v])
        store.record_tick(start + 31 * 60, [], [])  # the last minute's rollup is written
        store.flush()
        assert sink.flush()
        victoria.flush()
        metrics = ["cpu_percent", "mem_percent", "load", "tcp_established"]
        want = StoreReader(db).history("q1", metrics, 8 * 3600, now)
        got = VictoriaReader(victoria.url, "qr").history("q1", metrics, 8 * 3600, now)
        hours = (StoreReader(db).history("q1", metrics, 72 * 3600, now),
                 VictoriaReader(victoria.url, "qr").history("q1", metrics, 72 * 3600, now))
    finally:
        sink.close()
        store.close()
    steps = [t for t, _ in want["cpu_percent"]]
    assert steps == [start + m * 60 for m in minutes]  # SQLite: the minutes, the gap
    for m in metrics:
        assert [t for t, _ in got[m]] == steps, m
        assert got[m] == want[m], m
    # past the minute rollups' retention (48 h): hourly averages, each at its hour's start
    # (VictoriaMetrics averages the raw samples, SQLite the minute rollups already rounded to
    # the registry's scale: the last digit may differ by one, as 4.13 vs 4.14 in one CI run)
    assert hours[0]["cpu_percent"] and hours[1].keys() == hours[0].keys(), hours
    for m, points in hours[0].items():
        assert [t for t, _ in hours[1][m]] == [t for t, _ in points], (m, hours)
        for (_, a), (_, b) in zip(hours[1][m], points, strict=True):
            assert abs(a - b) <= max(0.1, 0.01 * abs(b)), (m, hours)
