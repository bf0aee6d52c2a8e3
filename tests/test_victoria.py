"""History at scale: `[history] victoria_url` (docs/scaling.md). A real `ctop serve` writes its
samples to SQLite and to a real VictoriaMetrics; the node detail's charts read from
VictoriaMetrics are the same points as from SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from ctop.store import StoreReader
from ctop.store.schema import METRIC_COLUMNS
from ctop.victoria import VictoriaReader
from tests.helpers.serve_helpers import Daemon, Sender
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
