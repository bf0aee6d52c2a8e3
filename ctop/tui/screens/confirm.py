"""Modal dialogs for load-balancer actions: the weight input, and the confirmation that shows
backend, service, server, before and after."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ctop.tui.actions import Request


class ConfirmAction(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "dismiss(False)", "Cancel"),
        Binding("y", "confirm", "Apply"),
    ]

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        body = Text()
        for label, value in (("backend", r.backend), ("service", r.service), ("server", r.server)):
            body.append(f"{label:>8}  ", "dim")
            body.append(f"{value}\n", "bold")
        body.append(f"{'before':>8}  ", "dim")
        body.append(f"weight {_w(r.before)}  {r.state_before}\n")
        body.append(f"{'after':>8}  ", "dim")
        body.append(f"weight {_w(r.after)}  {r.state_after}", "bold")
        if r.message:
            body.append(f"\n\n{r.message}", "yellow" if r.ok else "red")
        with Vertical(id="dialog"):
            yield Label(f"{r.title}?" if r.ok and not r.noop else r.title, id="title")
            yield Static(body, id="body")
            with Horizontal(id="buttons"):
                if r.ok and not r.noop:
                    yield Button(f"{r.title} (y)", variant="warning", id="yes")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_confirm(self) -> None:
        if self.request.ok and not self.request.noop:
            self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.action_confirm()
        else:
            self.dismiss(False)


def _w(weight: int | None) -> str:
    return "?" if weight is None else str(weight)


class WeightInput(ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, server: str, current: int, top: int | None = None) -> None:
        super().__init__()
        self.server, self.current, self.top = server, current, top

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"New weight for {self.server}", id="title")
            yield Static(
                f"now {self.current}" + (f", range 0..{self.top}" if self.top else ""), id="body"
            )
            yield Input(str(self.current), type="integer", id="weight")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(int(event.value))
        except ValueError:
            self.notify("a weight is a whole number", severity="error")
