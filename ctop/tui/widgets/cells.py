"""Segment builders shared by the line widgets: meters, service dots, sparklines, padding."""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style

from ctop.snapshot import ServiceView
from ctop.tui.colors import Palette
from ctop.tui.format import bar, fit, rfit, sparkline


def text(value: str, width: int, style: Style | None = None, right: bool = False) -> Segment:
    return Segment(rfit(value, width) if right else fit(value, width), style)


def meter(percent: float, width: int, pal: Palette, label: bool = True) -> list[Segment]:
    """A utilisation bar coloured by level, then the value: `█████···· 45%`."""
    full, empty = bar(percent / 100, width)
    segs = [Segment(full, pal.level(percent)), Segment(empty, pal.meter_empty)]
    if label:
        segs.append(Segment(f"{percent:4.0f}%", pal.value))
    return segs


def service_dots(services: Iterable[ServiceView], width: int, pal: Palette) -> list[Segment]:
    segs = [Segment("●", pal.service(s.status)) for s in list(services)[:width]]
    segs.append(Segment(" " * (width - len(segs))))
    return segs


def spark(values: tuple[float, ...], width: int, style: Style) -> Segment:
    return Segment(sparkline(values, width), style)


def pad(segments: list[Segment], width: int, style: Style | None = None) -> list[Segment]:
    """Cut or pad a line of segments to exactly `width` cells."""
    length = sum(len(s.text) for s in segments)
    if length < width:
        return [*segments, Segment(" " * (width - length), style)]
    if length > width:
        return list(Segment.adjust_line_length(segments, width, style))
    return segments
