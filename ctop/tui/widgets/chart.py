"""A small block-character history chart (no plotting dependency): title, current, max, and
one column per time bucket, several rows tall."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.widget import Widget

from ctop.tui.format import BLOCKS

Points = Sequence[tuple[float, float]]


def buckets(
    points: Points, width: int, window: tuple[float, float] | None = None
) -> list[float | None]:
    """Average of the points falling in each of `width` equal time buckets (None: no data).

    With a window (start, end) the x axis is that span of time, so 15 s of data in a 15-minute
    chart sits at its right edge; without one, the points' own span."""
    if not points or width <= 0:
        return [None] * max(width, 0)
    t0, t1 = window if window is not None else (points[0][0], points[-1][0])
    span = (t1 - t0) or 1.0
    sums, ns = [0.0] * width, [0] * width
    for t, v in points:
        if t < t0:
            continue
        k = min(width - 1, int((t - t0) / span * width))
        sums[k] += v
        ns[k] += 1
    return [s / n if n else None for s, n in zip(sums, ns, strict=True)]


def chart_rows(values: list[float | None], height: int, top: float) -> list[str]:
    """Rows of block characters, top row first."""
    rows = []
    for r in range(height - 1, -1, -1):
        line = []
        for v in values:
            if v is None:
                line.append(" ")
                continue
            level = (v / top * height if top > 0 else 0) - r  # in rows; fraction selects a block
            line.append(
                "█" if level >= 1 else BLOCKS[max(0, round(level * 8))] if level > 0 else " "
            )
        rows.append("".join(line))
    return rows


class Chart(Widget):
    DEFAULT_CSS = "Chart { height: 5; }"

    def __init__(
        self,
        title: str,
        fmt: Callable[[float], str],
        *,
        top: float | None = None,
        style: str = "green",
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title, self.fmt, self.top, self.style = title, fmt, top, style
        self.points: Points = ()
        self.window: tuple[float, float] | None = None

    def set_points(self, points: Points, window: tuple[float, float] | None = None) -> None:
        self.points, self.window = points, window
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, max(1, self.size.height - 1)
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
        for row in chart_rows(buckets(self.points, width, self.window), height, top):
            text.append("\n")
            text.append(row, self.style)
        return text
