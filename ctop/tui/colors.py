"""Colours for every view, and the `--color` option's mapping onto Textual's colour system.

No Textual import here: the CLI calls `apply_color_option` before Textual is imported, because
Textual reads TEXTUAL_COLOR_SYSTEM once at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rich.style import Style

from ctop.snapshot import Liveness

# --color value -> Rich/Textual colour system name
COLOR_SYSTEMS = {"truecolor": "truecolor", "256": "256", "16": "standard", "8": "standard"}


def color_system(option: str | None) -> str:
    """Map `--color truecolor|256|16|8` (None = detect) to Textual's colour system name."""
    if option is None or option == "auto":
        return "auto"
    try:
        return COLOR_SYSTEMS[option]
    except KeyError:
        choices = ", ".join(COLOR_SYSTEMS)
        raise ValueError(f"--color must be one of {choices} (got {option!r})") from None


def apply_color_option(option: str | None) -> str:
    """Set Textual's colour system from `--color`; call before importing Textual."""
    system = color_system(option)
    os.environ["TEXTUAL_COLOR_SYSTEM"] = system
    return system


@dataclass(frozen=True, slots=True)
class Palette:
    """Every colour a view uses; one per colour depth so 8-colour terminals stay legible."""

    alive: Style
    suspect: Style
    dead: Style
    left: Style
    drained: Style
    quiesced: Style
    maint: Style
    ok: Style
    warn: Style
    fail: Style
    unknown: Style
    dim: Style
    label: Style
    value: Style
    group: Style
    heading: Style
    cursor: Style  # selected row when its widget has focus
    cursor_blur: Style  # selected row otherwise
    meter_empty: Style
    card: Style  # background of a grid card
    series: tuple[Style, ...]  # chart colours, one per chart in turn

    def liveness(self, state: Liveness | str) -> Style:
        return getattr(self, str(state), self.unknown)

    def server_state(self, state: str) -> Style:
        return {
            "serving": self.ok,
            "drained": self.drained,
            "quiesced": self.quiesced,
            "maint": self.maint,
            "down": self.fail,
        }.get(state, self.unknown)

    def service(self, status: str) -> Style:
        return {"ok": self.ok, "warn": self.warn, "fail": self.fail}.get(status, self.unknown)

    def level(self, percent: float) -> Style:
        """Meter colour for a utilisation percentage."""
        if percent >= 90:
            return self.fail
        if percent >= 70:
            return self.warn
        return self.ok

    def ratio(self, ratio: float | None) -> Style:
        if ratio is None:
            return self.dim
        off = abs(ratio - 1.0)
        return self.ok if off < 0.25 else self.warn if off < 0.6 else self.fail


S = Style.parse

RICH = Palette(  # truecolor and 256 colours (Rich picks the nearest of 256)
    alive=S("#4ec94e"),
    suspect=S("#e6c229"),
    dead=S("bold #f0504a"),
    left=S("#8a8a8a"),
    drained=S("#5aa0ff"),
    quiesced=S("#c678dd"),
    maint=S("#d08cff"),
    ok=S("#4ec94e"),
    warn=S("#e6c229"),
    fail=S("#f0504a"),
    unknown=S("#8a8a8a"),
    dim=S("#7a7f87"),
    label=S("#9aa4b2"),
    value=S("#e8e8e8"),
    group=S("bold #6fb3d2"),
    heading=S("bold #c9d1d9"),
    cursor=S("on #264f78"),
    cursor_blur=S("on #30363d"),
    meter_empty=S("#3a3f47"),
    card=S("on #1b2129"),
    series=(S("#4ec94e"), S("#56b6c2"), S("#5aa0ff"), S("#c678dd"), S("#e6c229"),
            S("#d19a66")),
)

ANSI = Palette(  # 16 and 8 colours: only the eight basic ANSI colours, no bright variants
    alive=S("green"),
    suspect=S("yellow"),
    dead=S("bold red"),
    left=S("dim white"),
    drained=S("blue"),
    quiesced=S("magenta"),
    maint=S("magenta"),
    ok=S("green"),
    warn=S("yellow"),
    fail=S("red"),
    unknown=S("dim white"),
    dim=S("dim white"),
    label=S("cyan"),
    value=S("white"),
    group=S("bold cyan"),
    heading=S("bold white"),
    cursor=S("bold on blue"),
    cursor_blur=S("underline"),
    meter_empty=S("dim white"),
    card=S(""),
    series=(S("green"), S("cyan"), S("blue"), S("magenta"), S("yellow"), S("green")),
)


def palette_for(option: str | None) -> Palette:
    return ANSI if option in ("16", "8") else RICH
