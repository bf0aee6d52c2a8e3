"""Node-detail charts: time marks on the x axis, the unit on the y axis, and a period with no
data drawn as a dotted baseline (a chart two minutes wide on a node reporting for 45 s)."""

from __future__ import annotations

from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import T0, sample_history, sample_snapshot
from tests.helpers.screen import screen_text

NO_DATA = "·"


def last_45_s(node_id, metrics, seconds):
    """A node that started reporting 45 s ago."""
    return {m: [(t, v) for t, v in pts if t > T0 - 45]
            for m, pts in sample_history(node_id, metrics, seconds).items()}


async def detail_text(history, size=(140, 42)) -> list[str]:
    app = CtopApp(StaticSource(sample_snapshot(16), history=history), view="grid", poll=3600)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("right", "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        return screen_text(app)


async def test_charts_have_time_marks_and_units():
    lines = await detail_text(sample_history)
    axis = [ln for ln in lines if "└" in ln and "now" in ln]
    assert len(axis) >= 4  # every chart on screen has its x axis
    assert all("-1m" in ln and "-30s" in ln for ln in axis)  # the default span is 2 minutes
    assert any("100%┤" in ln for ln in lines)  # CPU and memory: percent
    assert any("0B/s┤" in ln for ln in lines)  # network: bytes per second


async def test_no_data_is_a_dotted_baseline_not_an_empty_chart():
    lines = await detail_text(last_45_s)
    cpu_axis = next(i for i, ln in enumerate(lines) if "└" in ln and "now" in ln)
    axis = lines[cpu_axis]
    plot = lines[cpu_axis - 1][axis.index("└") + 1:axis.index("now") + 3]  # the chart's columns
    # the first 75 s of the two minutes: dots; the last 45 s: the node's values
    dots = len(plot) - len(plot.lstrip(NO_DATA))
    assert 0.55 < dots / len(plot) < 0.7
    assert NO_DATA not in plot[dots:]


def test_time_marks_never_overlap():
    from ctop.tui.widgets.chart import x_axis

    for width in (20, 47, 80, 200):
        for seconds in (120, 900, 3600, 86400, 7 * 86400, 30 * 86400):
            axis = x_axis(width, seconds)
            assert len(axis) == width and axis.endswith("now")
            labels = [w for w in axis.replace("─", " ").split() if w != "now"]
            assert all(lab.startswith("-") for lab in labels), axis


def test_a_chart_wider_than_its_samples_has_no_comb_of_gaps():
    """240 columns for 2 minutes of 1-second samples: 0.5 s a column. A column without a
    sample of its own holds the last value; a real gap of 10 s stays empty (dotted)."""
    from ctop.tui.widgets.chart import buckets

    points = [(float(t), 50.0) for t in range(0, 120) if not 60 <= t < 70]
    cols = buckets(points, 240, (0.0, 120.0))
    assert all(v == 50.0 for v in cols[:120])  # 0-60 s: every column drawn
    assert all(v is None for v in cols[124:138])  # the 10 s gap, less the held edge
    assert all(v == 50.0 for v in cols[140:])
