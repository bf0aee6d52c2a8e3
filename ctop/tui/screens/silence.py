"""The silence dialog (`S`): what it silences, for how long, and why (ctop.silences)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from ctop.silences import SilenceError, checked

DEFAULT_FOR = "2h"


class SilenceDialog(ModalScreen["dict[str, str] | None"]):
    """Dismissed with {"node", "rule", "for", "reason"} (checked: a reason, a duration up to
    30 days), or None when cancelled."""

    DEFAULT_CSS = """
    SilenceDialog { align: center middle; }
    SilenceDialog > Vertical {
        width: 64; height: auto; padding: 1 2; border: thick $warning; background: $surface;
    }
    SilenceDialog Input { margin-bottom: 1; }
    SilenceDialog #silence-error { color: $error; height: auto; }
    SilenceDialog Horizontal { height: auto; align-horizontal: right; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", tooltip="cancel: nothing is silenced"),
    ]

    def __init__(self, node: str, rule: str = "") -> None:
        super().__init__()
        self.node, self.rule = node, rule

    @property
    def target(self) -> str:
        return " ".join(f"{k}={v}" for k, v in (("node", self.node), ("rule", self.rule)) if v)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Silence {self.target}: its alerts still show, dimmed; no hook runs",
                        id="silence-title")
            yield Label("for (30m, 2h, 1d)")
            yield Input(DEFAULT_FOR, id="silence-for")
            yield Label("reason (required)")
            yield Input(placeholder="why: shown beside every silenced alert", id="silence-reason")
            yield Label("", id="silence-error")
            with Horizontal():
                yield Button("Silence", variant="warning", id="silence-ok")
                yield Button("Cancel", id="silence-cancel")

    def on_mount(self) -> None:
        self.query_one("#silence-reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "silence-ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        duration = self.query_one("#silence-for", Input).value
        reason = self.query_one("#silence-reason", Input).value
        try:
            checked(self.node, "", self.rule, duration, reason)
        except SilenceError as e:  # said in the dialog; nothing is sent
            self.query_one("#silence-error", Label).update(str(e))
            return
        self.dismiss({"node": self.node, "rule": self.rule, "for": duration,
                      "reason": reason.strip()})
