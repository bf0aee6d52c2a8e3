"""The `?` help screen: every key, grouped."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    (
        "Move",
        (
            ("↑ ↓ ← → / h j k l", "move the selection"),
            ("pgup pgdn home end", "jump"),
            ("tab / shift+tab", "next / previous pane (nodes, load balancer, alerts)"),
            ("enter", "open the selected node"),
            ("esc", "back"),
        ),
    ),
    (
        "View",
        (
            ("t", "toggle panel grid / table"),
            ("g", "group by node group on/off"),
            ("s", "sort: name, cpu, memory, connections, ratio, state"),
            ("/", "filter by name, group, state or address (enter keeps, esc clears)"),
            ("a", "alerts and events screen"),
            ("x", "rejected datagrams by reason and the hosts sending them (or click the header)"),
            ("T", "look back: the whole screen as it was, read-only; ← → 1 min, shift 10 min, "
                  "esc back to live"),
            ("1 … 6", "node detail history: 2 min (live), 15 min, 1 h, 24 h, 7 d, 30 d"),
            (":", "command palette"),
            ("?", "this help"),
            ("q", "quit"),
        ),
    ),
    (
        "Load balancer (selected real server; hidden in read-only mode)",
        (
            ("d", "drain: no new connections, existing ones finish"),
            ("m", "maintenance: no traffic at all, not even sticky sessions (HAProxy)"),
            ("w", "set weight"),
            ("+ / -", "step the weight up / down by 1"),
            ("r", "restore the weight before the drain or maintenance"),
            ("A", "apply the advised weight"),
            ("R", "drift (≠): re-apply the journal's drain or weight on the balancer"),
            ("L", "drift (≠): accept the live state (clears the journal's intent)"),
            ("c", "connections of the server (IPVS: with persistence templates); also read-only"),
        ),
    ),
    (
        "In the confirmation dialog (it shows each server's share and CPU after the action)",
        (
            ("y", "apply; the last serving server (or below quorum) asks a second time"),
            ("p", "restore: raise the weight in steps over 60 s"),
            ("x", "maintenance: also cut the server's open sessions (HAProxy)"),
            ("e", "drain of a persistent IPVS service: expire persistence templates too"),
        ),
    ),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss(None)", "Close")
    ]

    def compose(self) -> ComposeResult:
        # Section titles are lines of their own: in the key column they widened it until the
        # descriptions had no room left. Every section's key column has the widest key's width.
        key_width = max(len(key) for _, rows in KEYS for key, _ in rows)
        parts: list[Text | Table] = []
        for title, rows in KEYS:
            parts.append(Text(title, style="bold"))
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold cyan", no_wrap=True, width=key_width)
            table.add_column(ratio=1)
            for key, what in rows:
                table.add_row(key, what)
            parts += [table, Text("")]
        with VerticalScroll(id="dialog"):
            yield Static(Group(*parts))
