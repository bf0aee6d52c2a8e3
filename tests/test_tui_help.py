"""The `?` help screen is generated from the bindings: every key of every screen and pane is in
it, with its description, readable at 80 columns."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from textual.binding import Binding
from textual.dom import DOMNode

import ctop.tui
from ctop.tui.app import CtopApp
from ctop.tui.screens.lb_keys import LBKeys
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_snapshot
from tests.helpers.screen import screen_text

NAMES = {"up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "pgup",
         "pagedown": "pgdn", "escape": "esc", "question_mark": "?", "slash": "/", "colon": ":",
         "plus": "+", "minus": "-"}


def every_binding() -> list[tuple[str, Binding]]:
    """(owner, binding) for every binding a ctop screen, widget or the app declares."""
    for mod in pkgutil.walk_packages(ctop.tui.__path__, "ctop.tui."):
        importlib.import_module(mod.name)
    owners: dict[str, list] = {}
    for module_name, module in list(__import__("sys").modules.items()):
        if not module_name.startswith("ctop.tui"):
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, DOMNode) and cls.__module__.startswith("ctop.tui"):
                owners[cls.__qualname__] = cls.__dict__.get("BINDINGS", [])
    owners["LBKeys"] = LBKeys.LB_BINDINGS
    return [(o, b) for o, bs in owners.items() for b in bs if isinstance(b, Binding)]


def flat(lines: list[str]) -> str:
    """The text without box-drawing and block characters (dialog borders, scrollbars), one
    space between words: wrapped descriptions read as one."""
    text = " ".join(lines)
    return " ".join("".join(" " if 0x2500 <= ord(c) <= 0x259F else c for c in text).split())


async def open_help(size: tuple[int, int]) -> list[str]:
    app = CtopApp(StaticSource(sample_snapshot(16)), view="grid", poll=3600)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        return screen_text(app)


async def test_every_key_of_every_screen_is_in_the_help():
    found = every_binding()
    assert len({owner for owner, _ in found}) >= 10  # the walk found the screens and panes
    lines = await open_help((80, 200))  # one column of sections, tall enough for all of them
    text = flat(lines)
    missing = []
    for owner, b in found:
        keys = [NAMES.get(k, k) for k in b.key.split(",")]
        if not any(set(keys) <= set(line.replace("│", " ").split()) for line in lines):
            missing.append(f"{owner}: {b.key}")
        words = " ".join((b.tooltip or b.description).split()[:3])
        if b.tooltip and words not in text:
            missing.append(f"{owner}: {b.key} says {words!r}")
    assert not missing, missing


async def test_history_keys_say_what_they_show():
    text = flat(await open_help((80, 200)))
    assert "1 2 3 4 5 6" in text
    assert "2 min, 15 min, 1 h, 24 h, 7 days, 30 days" in text


async def test_help_reads_at_80_columns():
    """Key and description columns are sized to their content: at 80×24 a description is one
    line beside its key, not one word per line."""
    lines = await open_help((80, 24))
    assert any("sort by name, cpu, memory, connections, ratio, state" in line for line in lines)
    row = next(line for line in lines if "command palette" in line)
    assert row.index("command palette") - row.index(":") < 16
