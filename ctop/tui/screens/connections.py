"""Connections of one real server (`c` on a real server): IPVS from /proc/net/ip_vs_conn
(client, state, expiry, persistence templates), HAProxy from `show sess` (client, frontend,
age). Read on demand and every 2 s while open, from the UI's source: the embedded engine's
balancer, or the daemon's (a `conns` request on the control socket) when attached."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ctop.lb.base import Connection
from ctop.tui.colors import RICH, Palette
from ctop.tui.widgets.lb_pane import Target

REFRESH_S = 2.0
SHOWN = 200  # rows; a server with thousands of connections shows the count and the first ones


class ConnectionsScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,c,q", "dismiss(None)", "Close", tooltip="close"),
        Binding("r", "reload", "Reload", tooltip="read again now (it re-reads every 2 s)"),
    ]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.connections: list[Connection] | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        t = self.target
        with Vertical(id="dialog"):
            yield Label(f"Connections of {t.server.key} ({t.balancer} {t.service})", id="title")
            yield Static(Text("reading…", "dim"), id="conns")

    def on_mount(self) -> None:
        self.action_reload()
        self.set_interval(REFRESH_S, self.action_reload)

    def action_reload(self) -> None:
        self.run_worker(self._read(), exclusive=True)

    async def _read(self) -> None:
        t = self.target
        source = self.app.source  # type: ignore[attr-defined]
        try:  # the engine's balancer, or the daemon's when the UI is attached
            self.connections = await source.lb_connections(t.balancer, t.service, t.server.key)
            self.error = ""
        except Exception as exc:  # LBError, OS and daemon errors: say it in the screen
            self.error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        pal = self.app.palette  # type: ignore[attr-defined]
        self.query_one("#conns", Static).update(render(self.connections, self.error, pal))


def render(conns: list[Connection] | None, error: str = "", pal: Palette = RICH) -> Text:
    text = Text()
    if error:
        text.append(error + "\n", pal.fail)
    if conns is None:
        return text
    templates = [c for c in conns if c.template]
    plain = [c for c in conns if not c.template]
    text.append(f"{len(plain)} connection{'s' if len(plain) != 1 else ''}", "bold")
    if templates:
        text.append(
            f", {len(templates)} persistence template{'s' if len(templates) != 1 else ''}"
            " (clients sent here until they expire)",
            pal.warn,
        )
    text.append("\n\n")
    ipvs = any(c.expires_s is not None for c in conns)
    head = (
        f"{'CLIENT':<42} {'STATE':<12} {'EXPIRES':>8}  KIND"
        if ipvs
        else f"{'CLIENT':<42} {'FRONTEND':<20} {'AGE':>8}"
    )
    text.append(head + "\n", "dim")
    for c in (templates + plain)[:SHOWN]:
        if ipvs:
            kind = "template" if c.template else c.protocol
            when = "" if c.expires_s is None else f"{c.expires_s:.0f} s"
            text.append(f"{c.client:<42} {c.state:<12} {when:>8}  {kind}\n",
                        pal.warn if c.template else "")  # fmt: skip
        else:
            age = "" if c.age_s is None else f"{c.age_s:.0f} s"
            text.append(f"{c.client:<42} {c.virtual:<20} {age:>8}\n")
    if len(conns) > SHOWN:
        text.append(f"… and {len(conns) - SHOWN} more\n", "dim")
    return text
