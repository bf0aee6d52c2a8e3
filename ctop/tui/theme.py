"""The Textual theme for `--color 16` and `--color 8`: only the terminal's default colours and
ANSI colours 0-7, sent as ANSI codes (Textual's default theme is truecolor, which a 16- or
8-colour terminal would get as the nearest of 16, bright ones included)."""

from __future__ import annotations

from textual.app import App
from textual.theme import Theme

ANSI8 = Theme(
    name="ctop-ansi8",
    ansi=True,
    dark=True,
    primary="ansi_blue",
    secondary="ansi_cyan",
    accent="ansi_cyan",
    warning="ansi_yellow",
    error="ansi_red",
    success="ansi_green",
    foreground="ansi_default",
    background="ansi_default",
    surface="ansi_default",
    panel="ansi_default",
    boost="ansi_default",
    variables={
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
        "border-blurred": "ansi_black",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_white",
        "input-cursor-background": "ansi_white",
        "input-cursor-foreground": "ansi_black",
        "input-cursor-text-style": "none",
        "input-selection-background": "ansi_blue",
        "input-selection-foreground": "ansi_black",
        "screen-selection-background": "ansi_blue",
        "screen-selection-foreground": "ansi_black",
        "footer-key-foreground": "ansi_cyan",
        "footer-description-foreground": "ansi_default",
        "footer-background": "ansi_default",
        "footer-item-background": "ansi_default",
        "scrollbar": "ansi_white",
        "scrollbar-hover": "ansi_white",
        "scrollbar-active": "ansi_white",
        "scrollbar-background": "ansi_default",
        "scrollbar-background-hover": "ansi_default",
        "scrollbar-background-active": "ansi_default",
        "scrollbar-corner-color": "ansi_default",
        "link-color": "ansi_blue",
        "link-background": "ansi_default",
        "link-color-hover": "ansi_blue",
        "link-background-hover": "ansi_default",
    },
)


def use_color(app: App, option: str | None) -> None:
    """Give a 16- or 8-colour terminal the ANSI theme; others keep Textual's."""
    if option in ("16", "8"):
        app.register_theme(ANSI8)
        app.theme = ANSI8.name
