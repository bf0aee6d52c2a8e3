"""A small block-character history chart (no plotting dependency): a title line with the
current, highest and average value, the plot with its y axis labelled in the chart's unit, and
an x axis with time marks back from the window's end ("now").

Buckets with no data at all show a dotted baseline, so "no data yet" (or a node that was
down) never looks like a value of zero."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from ctop.tui.format import BLOCKS, span, with_unit

Points = Sequence[tuple[float, float]]
# time between x-axis marks: the first that leaves room for a label between two marks
STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
         86400, 172800, 604800)
MARK_GAP = 14  # columns between marks at least: room for "-1m30s" and some axis
NO_DATA = "·"
HOLD = 2.5  # sample intervals a value is held across buckets that got no sample of their own


def buckets(
    points: Points, width: int, window: tuple[float, float] | None = None
) -> list[float | None]:
    """Average of the points falling in each of `width` equal time buckets (None: no data).

    With a window (start, end) the x axis is that span of time, so 15 s of data in a 15-minute
    chart sits at its right edge; without one, the points' own span. A bucket narrower than the
    interval between samples (a wide chart) holds the value before it; only a real gap (more
    than HOLD intervals without a sample) stays empty."""
    if not points or width <= 0:
        return [None] * max(width, 0)
    t0, t1 = window if window is not None else (points[0][0], points[-1][0])
    length = (t1 - t0) or 1.0
    sums, ns = [0.0] * width, [0] * width
    latest = [t0 - length] * width  # time of each bucket's last point
    for t, v in points:
        if t < t0:
            continue
        k = min(width - 1, int((t - t0) / length * width))
        sums[k] += v
        ns[k] += 1
        latest[k] = max(latest[k], t)
    out: list[float | None] = [s / n if n else None for s, n in zip(sums, ns, strict=True)]
    hold = HOLD * _interval(points)
    last: tuple[float, float] | None = None  # (time, value) of the last bucket with data
    for k in range(width):
        if ns[k]:
            last = (latest[k], out[k])  # type: ignore[assignment]
        elif last is not None and t0 + (k + 1) * length / width - last[0] <= hold:
            out[k] = last[1]
    return out


def _interval(points: Points) -> float:
    """The usual time between samples (the median gap)."""
    gaps = sorted(b[0] - a[0] for a, b in pairwise(points) if b[0] > a[0])
    return gaps[len(gaps) // 2] if gaps else 0.0


def chart_rows(values: list[float | None], height: int, top: float) -> list[str]:
    """Rows of block characters, top row first; no data is a dotted bottom row."""
    rows = []
    for r in range(height - 1, -1, -1):
        line = []
        for v in values:
            if v is None:
                line.append(NO_DATA if r == 0 else " ")
                continue
            level = (v / top * height if top > 0 else 0) - r  # in rows; fraction selects a block
            line.append(
                "█" if level >= 1 else BLOCKS[max(0, round(level * 8))] if level > 0 else " "
            )
        rows.append("".join(line))
    return rows


def x_axis(width: int, seconds: float) -> str:
    """`width` columns of axis: marks every nice step back from the right edge ("now")."""
    line = ["─"] * width
    if width <= 0 or seconds <= 0:
        return "".join(line)
    per_col = seconds / width
    step = next((s for s in STEPS if s / per_col >= MARK_GAP), STEPS[-1])

    def put(col: int, label: str) -> None:
        start = max(0, min(width - len(label), col - len(label) + 1))
        if all(c == "─" for c in line[max(0, start - 1):start + len(label) + 1]):
            line[start:start + len(label)] = label

    put(width - 1, "now")
    back = step
    while back <= seconds:
        put(width - 1 - round(back / per_col), f"-{span(back)}")
        back += step
    return "".join(line)


class Chart(Widget):
    # a narrow chart cuts its title line rather than wrap it over the plot
    DEFAULT_CSS = "Chart { height: 6; text-wrap: nowrap; text-overflow: ellipsis; }"

    def __init__(
        self,
        title: str,
        unit: str = "",
        *,
        top: float | None = None,
        style: Style | str = "green",
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title, self.unit, self.top = title, unit, top
        self.style = Style.parse(style) if isinstance(style, str) else style
        self.points: Points = ()
        self.window: tuple[float, float] | None = None

    def set_points(self, points: Points, window: tuple[float, float] | None = None) -> None:
        self.points, self.window = points, window
        self.refresh()

    def fmt(self, v: float) -> str:
        return with_unit(v, self.unit)

    def render(self) -> Text:
        plot_h = max(1, self.size.height - 2)  # title line, plot, x axis
        vals = [v for _, v in self.points]
        text = Text()
        text.append(self.title, "bold")
        if vals:
            text.append(
                f"  now {self.fmt(vals[-1])}  max {self.fmt(max(vals))}"
                f"  avg {self.fmt(sum(vals) / len(vals))}",
                "dim",
            )
        else:
            text.append("  no data", "dim")
        top = self.top if self.top is not None else (max(vals, default=0.0) * 1.1 or 1.0)
        labels = {0: self.fmt(top), plot_h - 1: self.fmt(0)}
        if plot_h >= 5:
            labels[plot_h // 2] = self.fmt(top * (plot_h - plot_h // 2) / plot_h)
        gutter = max(len(s) for s in labels.values()) + 1
        width = max(1, self.size.width - gutter)
        for r, row in enumerate(chart_rows(buckets(self.points, width, self.window), plot_h, top)):
            text.append("\n")
            text.append(f"{labels.get(r, ''):>{gutter - 1}}{'┤' if r in labels else '│'}", "dim")
            text.append(row, self.style)
        seconds = (self.window[1] - self.window[0]) if self.window else (
            (self.points[-1][0] - self.points[0][0]) if len(self.points) > 1 else 0.0)
        text.append("\n" + " " * (gutter - 1) + "└", "dim")
        text.append(x_axis(width, seconds), "dim")
        return text
