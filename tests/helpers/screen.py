"""What a terminal would show of a running (pilot) app: its text, and the colours it sends."""

from __future__ import annotations

import io

from rich.color import ColorType
from rich.console import Console
from rich.segment import Segment


def _record(app, color_system: str = "truecolor") -> Console:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=color_system, record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console


def screen_text(app) -> list[str]:
    """The screen's lines as plain text."""
    return _record(app).export_text(styles=False).splitlines()


def segments(app) -> list[Segment]:
    return list(_record(app)._record_buffer)


def colours_beyond_8(app) -> set[str]:
    """Every colour on screen that an 8-colour terminal cannot show: anything but the
    terminal's default and ANSI colours 0-7 (bright 8-15, the 256 palette, truecolor)."""
    out = set()
    for seg in segments(app):
        style = seg.style
        if style is None:
            continue
        for colour in (style.color, style.bgcolor):
            if colour is None or colour.type == ColorType.DEFAULT:
                continue
            if colour.type == ColorType.STANDARD and (colour.number or 0) < 8:
                continue
            out.add(f"{colour.name} in {seg.text!r}")
    return out
