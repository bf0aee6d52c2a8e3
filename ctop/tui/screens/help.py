"""The `?` help screen, generated from the bindings themselves, so it cannot go stale.

One section per screen or pane that has keys (SECTIONS); a row per binding, its text the
binding's `tooltip` (else its footer description). Consecutive bindings of one action whose
later ones have no tooltip share a row (↑ ↓ ← →, pgup pgdn, 1-6). Key and description columns are
sized to their content; on a wide terminal the sections flow into several columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ctop.tui.colors import Palette
from ctop.tui.screens.alerts import AlertsScreen
from ctop.tui.screens.confirm import ConfirmAction, ConfirmConsequence, WeightInput
from ctop.tui.screens.connections import ConnectionsScreen
from ctop.tui.screens.drops import DropsScreen
from ctop.tui.screens.lb_keys import LBKeys
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.screens.silence import SilenceDialog
from ctop.tui.widgets.alerts_pane import AlertsPane
from ctop.tui.widgets.lb_pane import LBPane
from ctop.tui.widgets.node_list import NodeList

KEY_NAMES = {
    "up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "pgup", "pagedown": "pgdn",
    "escape": "esc", "question_mark": "?", "slash": "/", "colon": ":", "plus": "+",
    "minus": "-",
}
# Textual's own screen bindings we keep, with the words ctop uses for them
FRAMEWORK = {
    "app.focus_next": "next pane (nodes, load balancer, alerts)",
    "app.focus_previous": "previous pane",
}
COLUMN_WIDTH = 52  # one column of sections; 120 columns take two, 250 take four
MAX_COLUMN = 80  # wider, a column of sections is only blank
LB_SECTION = (
    "Load-balancer actions (selected real server, main screen and node detail; "
    "hidden when read-only)"
)


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: tuple[tuple[str, str], ...]  # (keys, what they do)


def key_label(binding: Binding) -> str:
    return " ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))


def _bindings(owner: type, skip: Iterable[BindingType] = ()) -> list[Binding]:
    """The bindings a class declares itself (not inherited ones), minus `skip`."""
    skipped = {id(b) for b in skip}
    own = owner.__dict__.get("BINDINGS", [])
    return [b for b in own if isinstance(b, Binding) and id(b) not in skipped]


def rows(bindings: Sequence[Binding]) -> tuple[tuple[str, str], ...]:
    """One row per binding; a binding without a tooltip joins the row before it when it runs
    the same action (its tooltip covers both)."""
    out: list[tuple[str, str]] = []
    last_action = None
    for b in bindings:
        action = b.action.split("(")[0]
        if out and action == last_action and not b.tooltip:
            keys, what = out[-1]
            out[-1] = (f"{keys} {key_label(b)}", what)
            continue
        what = b.tooltip or FRAMEWORK.get(b.action) or b.description or b.action
        out.append((key_label(b), what))
        last_action = action
    return tuple(out)


def sections(app_bindings: Sequence[BindingType]) -> list[Section]:
    """Every key of the UI, grouped by where it works."""
    lb = LBKeys.LB_BINDINGS
    focus = [b for b in _bindings(Screen) if b.action in FRAMEWORK]
    plan: list[tuple[str, list[Binding]]] = [
        ("Everywhere", [b for b in app_bindings if isinstance(b, Binding)] + focus),
        ("Nodes pane (grid or table)", _bindings(NodeList)),
        ("Main screen", _bindings(MainScreen, lb)),
        ("Load-balancer pane", _bindings(LBPane)),
        (LB_SECTION, [b for b in lb if isinstance(b, Binding)]),
        ("Node detail", _bindings(NodeDetail, lb)),
        ("Confirmation dialog (shows each server's share and CPU after)",
         _bindings(ConfirmAction)),
        ("Second confirmation (last serving server, below quorum)",
         _bindings(ConfirmConsequence)),
        ("Weight input", _bindings(WeightInput)),
        ("Connections of a real server (c)", _bindings(ConnectionsScreen)),
        ("Alerts pane (main screen, alerts screen)", _bindings(AlertsPane)),
        ("Alerts and events (a)", _bindings(AlertsScreen)),
        ("Silence dialog (S)", _bindings(SilenceDialog)),
        ("Rejected datagrams (x)", _bindings(DropsScreen)),
        ("This help", _bindings(HelpScreen)),
    ]
    return [Section(title, rows(bs)) for title, bs in plan if bs]


def render_section(section: Section, pal: Palette) -> Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style=pal.group, no_wrap=True)  # as wide as its widest key
    table.add_column(style=pal.value)
    for keys, what in section.rows:
        table.add_row(keys, what)
    return Group(Text(section.title, pal.heading), table, Text(""))


def balance(heights: Sequence[int], columns: int) -> list[list[int]]:
    """Split sections (in order) into `columns` runs of about equal height."""
    total, out, run, acc = sum(heights), [], [], 0
    for i, h in enumerate(heights):
        if run and acc + h / 2 > total * (len(out) + 1) / columns and len(out) < columns - 1:
            out.append(run)
            run = []
        run.append(i)
        acc += h
    return [*out, run]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss(None)", "Close", tooltip="close")
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Horizontal(id="help-columns")

    def on_mount(self) -> None:
        self._columns = 0
        self.on_resize()

    def on_screen_resume(self) -> None:
        # kept installed (app.kept): built once; again only if the terminal's width changed
        # while it was closed (the bindings it lists are the classes', fixed)
        self.on_resize()

    def on_resize(self) -> None:
        width = self.app.size.width
        columns = max(1, min(4, (width - 6) // (COLUMN_WIDTH + 2)))
        dialog = self.query_one("#dialog")
        # each column as wide as the screen allows, up to what a description needs
        dialog.styles.width = min(width, columns * min(MAX_COLUMN, (width - 6) // columns) + 6)
        if columns == getattr(self, "_columns", 0):
            return
        self._columns = columns
        pal: Palette = self.app.palette  # type: ignore[attr-defined]
        secs = sections(type(self.app).BINDINGS)
        heights = [len(s.rows) + 2 for s in secs]
        box = self.query_one("#help-columns", Horizontal)
        box.remove_children()
        box.mount_all(
            Static(Group(*(render_section(secs[i], pal) for i in run)), classes="help-column")
            for run in balance(heights, columns)
        )
