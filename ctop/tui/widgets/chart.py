"""A small block-character history chart (no plotting dependency): a title line with the
current, highest and average value, the plot with its y axis labelled in the chart's unit, and
an x axis with time marks back from the window's end ("now").

Buckets with no data at all show a dotted baseline, so "no data yet" (or a node that was
down) never looks like a value of zero."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from ctop.tui.format import BLOCKS, span, with_unit

Points = Sequence[tuple[float, float]]
# time between x-axis marks: the first that leaves room for a label between two marks
STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
         86400, 172800, 604800)
MARK_GAP = 14  # columns between marks at least: room for "-1m30s" and some axis
NO_DATA = "·"
HOLD = 2.5  # sample intervals a value is held across buckets that got no sample of their own
BOLD, DIM = Style(bold=True), Style(dim=True)


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
    """Drawn line by line (Textual's Line API) from strips built once per data and size: a
    rich `Text` render went through Textual's markup pipeline on every repaint, most of what
    opening the node detail cost."""

    DEFAULT_CSS = "Chart { height: 6; }"
    empty = "no data"  # the title's note without points (a NATS view: where history lives)

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
        self._title, self.unit, self.top = title, unit, top
        self.style = Style.parse(style) if isinstance(style, str) else style
        self.points: Points = ()
        self.window: tuple[float, float] | None = None
        self._lines: list[Strip] = []
        self._lines_at: tuple[int, int, Style] | None = None  # (width, height, base) drawn at

    @property
    def title(self) -> str:
        return self._title

    @title.setter
    def title(self, title: str) -> None:
        if title != self._title:
            self._title = title
            self._redraw()

    def set_points(self, points: Points, window: tuple[float, float] | None = None) -> None:
        self.points, self.window = points, window
        self._redraw()

    def _redraw(self) -> None:
        self._lines_at = None
        self.refresh()

    def fmt(self, v: float) -> str:
        return with_unit(v, self.unit)

    def render_line(self, y: int) -> Strip:
        width, height, base = self.size.width, self.size.height, self.rich_style
        if self._lines_at != (width, height, base):
            self._lines = [Strip(line).crop_extend(0, width, None).apply_style(base)
                           for line in self.lines(width, height)]
            self._lines_at = (width, height, base)
        return self._lines[y] if y < len(self._lines) else Strip.blank(width, base)

    def lines(self, width: int, height: int) -> list[list[Segment]]:
        """The chart as segments, a list per line: title, plot rows, x axis."""
        plot_h = max(1, height - 2)  # title line, plot, x axis
        vals = [v for _, v in self.points]
        stats = (f"  now {self.fmt(vals[-1])}  max {self.fmt(max(vals))}"
                 f"  avg {self.fmt(sum(vals) / len(vals))}") if vals else f"  {self.empty}"
        out = [_cut([Segment(self.title, BOLD), Segment(stats, DIM)], width)]
        top = self.top if self.top is not None else (max(vals, default=0.0) * 1.1 or 1.0)
        labels = {0: self.fmt(top), plot_h - 1: self.fmt(0)}
        if plot_h >= 5:
            labels[plot_h // 2] = self.fmt(top * (plot_h - plot_h // 2) / plot_h)
        gutter = max(len(s) for s in labels.values()) + 1
        plot_w = max(1, width - gutter)
        for r, row in enumerate(chart_rows(buckets(self.points, plot_w, self.window), plot_h, top)):
            axis = f"{labels.get(r, ''):>{gutter - 1}}{'┤' if r in labels else '│'}"
            out.append([Segment(axis, DIM), Segment(row, self.style)])
        seconds = (self.window[1] - self.window[0]) if self.window else (
            (self.points[-1][0] - self.points[0][0]) if len(self.points) > 1 else 0.0)
        out.append([Segment(" " * (gutter - 1) + "└" + x_axis(plot_w, seconds), DIM)])
        return out


def _cut(segments: list[Segment], width: int) -> list[Segment]:
    """A line cut to `width` with an ellipsis rather than wrapped over the plot."""
    if sum(s.cell_length for s in segments) <= width or width < 1:
        return segments
    return [*Strip(segments).crop(0, width - 1), Segment("…", segments[-1].style)]
