"""History at scale: `[history] victoria_url` (docs/scaling.md). A real `ctop serve` writes its
samples to SQLite and to a real VictoriaMetrics; the node detail's charts read from
VictoriaMetrics are the same points as from SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from ctop.nats.config import NatsConfig
from ctop.nats.view import NatsSource
from ctop.store import StoreReader
from ctop.store.schema import METRIC_COLUMNS
from ctop.tui.app import CtopApp
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.widgets.chart import Chart
from ctop.victoria import VictoriaReader
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
