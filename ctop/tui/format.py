"""Small pure formatting helpers shared by the widgets (numbers, ages, bars, sparklines)."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = " ▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"


def rate(bps: float) -> str:
    """Bytes per second, compact: 950B 12K 3.4M 1.2G (per second implied by the column)."""
    v = float(bps)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(v) < 1000 or unit == "T":
            if unit == "B":
                return f"{v:.0f}{unit}"
            return f"{v:.1f}{unit}" if abs(v) < 10 else f"{v:.0f}{unit}"
        v /= 1000
    return f"{v:.0f}T"  # pragma: no cover


def count(n: float) -> str:
    """Counts: 999, 12.3k, 4.5M."""
    n = float(n)
    if abs(n) < 1000:
        return f"{n:.0f}"
    if abs(n) < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def size(n: float) -> str:
    """Bytes as a size: 512M, 16G."""
    v = float(n)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(v) < 1024 or unit == "P":
            return f"{v:.0f}{unit}" if v >= 10 or unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    return f"{v:.0f}P"  # pragma: no cover


def age(ts: float, now: float) -> str:
    """How long ago `ts` was, relative to `now` (the snapshot's time, so tests are stable)."""
    s = max(0.0, now - ts)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def seen(ts: float, now: float, interval: float) -> str:
    """When a node was last heard of: "now" while it is on time (within two of its report
    intervals), else its age. An exact age flips 0s/1s at every report, which would redraw
    every row of an idle cluster every second for nothing the operator needs."""
    if now - ts < 2 * max(interval, 1.0):
        return "now"
    return age(ts, now)


def bar(fraction: float, width: int) -> tuple[str, str]:
    """A horizontal bar in eighths: (filled part, empty part), together exactly `width` cells."""
    f = min(1.0, max(0.0, fraction))
    eighths = round(f * width * 8)
    full, rest = divmod(eighths, 8)
    filled = "█" * full + (EIGHTHS[rest] if rest and full < width else "")
    return filled, "·" * (width - len(filled))


def sparkline(values: Sequence[float], width: int, top: float | None = 100.0) -> str:
    """The last `width` values as block characters; `top` fixes the scale (None = own max)."""
    vals = list(values)[-width:]
    if not vals:
        return " " * width
    hi = top if top is not None else (max(vals) or 1.0)
    out = []
    for v in vals:
        level = 0 if hi <= 0 else round(min(1.0, max(0.0, v / hi)) * 8)
        out.append(BLOCKS[max(level, 1) if v > 0 else 0])
    return "".join(out).rjust(width)


def fit(text: str, width: int) -> str:
    """Pad or cut `text` to exactly `width` cells (ellipsis when cut)."""
    if len(text) <= width:
        return text.ljust(width)
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


def rfit(text: str, width: int) -> str:
    return text.rjust(width) if len(text) <= width else text[: max(0, width - 1)] + "…"


def with_unit(v: float, unit: str) -> str:
    """A value as a chart labels it: "%" 38%, "B/s" 1.4M/s, "B" 16G, "ms" 2.5ms, "" 1.2k.

    Units are strings (as a metric registry would give them) so a new chart needs no code."""
    if unit == "%":
        return f"{v:.0f}%"
    if unit == "B/s":
        return f"{rate(v)}/s"
    if unit == "B":
        return size(v)
    if unit == "ms":
        return f"{v:.1f}ms" if abs(v) < 100 else f"{v:.0f}ms"
    if unit == "s":
        return f"{v:.1f}s" if abs(v) < 100 else f"{v:.0f}s"
    return count(v) if not unit else f"{count(v)} {unit}"


def span(seconds: float) -> str:
    """A duration for an axis mark: 30s, 5m, 1m30s, 2h, 3d."""
    s = round(abs(seconds))
    for size_s, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size_s:
            whole, rest = divmod(s, size_s)
            if not rest:
                return f"{whole}{unit}"
            if unit == "m":
                return f"{whole}m{rest}s"
            return f"{s / size_s:.1f}{unit}"
    return f"{s}s"
