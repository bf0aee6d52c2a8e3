"""Rejected datagrams (`x`, or a click on the header's "dropped" counter): by reason, with the
sources sending most of them, so a node with a wrong key or clock is found at a glance."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ctop.snapshot import Snapshot
from ctop.tui.colors import RICH, Palette
from ctop.tui.widgets.key_bar import KeyBar

# What an operator checks first for each reason (docs/protocol.md has the full table).
HINTS = {
    "bad_tag": "wrong key on that host (or another cluster)",
    "stale": "that host's clock is off by more than max_age",
    "replay": "repeated or old datagrams (a capture replayed, or a restarted node's old boot)",
    "seq_jump": "sequence moved further than the node can send",
    "bad_field": "a field out of type or range (agent bug, or forged)",
    "bad_version": "a newer or older protocol version",
    "oversize": "datagram over 1,200 bytes",
    "malformed": "not a ctop datagram",
    "not_msgpack": "signed, but the body does not decode",
}


def render_drops(snap: Snapshot, pal: Palette = RICH) -> Text:
    out = Text()
    if not snap.drops:
        out.append("no datagram rejected since the engine started", pal.dim)
        return out
    for reason, count in sorted(snap.drops.items(), key=lambda kv: -kv[1]):
        out.append(f"{reason:<12} {count:>10}", pal.warn)
        out.append(f"   {HINTS.get(reason, '')}\n", pal.dim)
        for source, n in snap.drop_sources.get(reason, ()):
            out.append(f"    {source:<40} {n:>10}\n", pal.value)
    return out


class DropsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,x", "app.pop_screen", "Back", tooltip="back")
    ]

    def compose(self) -> ComposeResult:
        yield Static("Rejected datagrams by reason, busiest sources first", id="title")
        with VerticalScroll():
            yield Static(id="drops")
        yield KeyBar()

    def update_snapshot(self, snap: Snapshot) -> None:
        self.query_one("#drops", Static).update(
            render_drops(snap, self.app.palette))  # type: ignore[attr-defined]
