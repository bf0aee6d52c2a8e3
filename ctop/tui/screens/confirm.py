"""Modal dialogs for load-balancer actions: the weight input, the confirmation that shows
balancer, service, server, before and after and the what-if, and the second confirmation of a
guarded action."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ctop.lb.request import MAX_WHY, ActionRequest, checked_why
from ctop.lb.service import PAIR_REFUSAL_PREFIX
from ctop.tui.actions import Request

RAMP_S = 60.0  # the restore dialog's ramp


class ConfirmAction(ModalScreen["dict[str, Any] | None"]):
    """The plan, then the what-if (each server's share and CPU after the action, from a dry
    run: the daemon's when attached), and the choices the action has: restore with a ramp,
    maint that cuts sessions, a drain that expires IPVS persistence templates. Dismissed with
    the ActionRequest options to run with ({} = as planned), or None when cancelled. A guarded
    action (the last serving server, or below the quorum) asks a second time, naming the
    consequence, and then runs with force."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel", tooltip="cancel: nothing changes"),
        Binding("y", "confirm", "Apply",
                tooltip="apply; the last serving server (or below quorum) asks again"),
        Binding("p", "choice('ramp')", "Ramp", show=False,
                tooltip="restore: raise the weight in steps over 60 s"),
        Binding("x", "choice('cut')", "Cut sessions", show=False,
                tooltip="maintenance that also cuts open sessions (HAProxy)"),
        Binding("e", "choice('expire')", "Expire templates", show=False,
                tooltip="drain a persistent IPVS service and expire its templates"),
        Binding("o", "choice('local')", "This director only", show=False,
                tooltip="director pair: act here alone when the peer cannot confirm"),
        Binding("w", "focus_why", "Why", show=False,
                tooltip="type the reason (journaled, shared with the peer); enter applies"),
    ]

    def __init__(self, request: Request) -> None:
        super().__init__()
        self.request = request
        self.guard = ""  # from the dry run: the consequence that needs a second confirmation
        self.whatif: list[str] = []
        self.templates: int | None = None

    def compose(self) -> ComposeResult:
        r = self.request
        body = Text()
        where = (("balancer", r.balancer), ("service", r.service), ("server", r.server))
        for label, value in where:
            body.append(f"{label:>8}  ", "dim")
            body.append(f"{value}\n", "bold")
        body.append(f"{'before':>8}  ", "dim")
        body.append(f"weight {_w(r.before)}  {r.state_before}\n")
        body.append(f"{'after':>8}  ", "dim")
        body.append(f"weight {_w(r.after)}  {r.state_after}", "bold")
        if r.message:
            pal = self.app.palette  # type: ignore[attr-defined]
            body.append(f"\n\n{r.message}", pal.warn if r.ok else pal.fail)
        active = r.ok and not r.noop
        with Vertical(id="dialog"):
            yield Label(f"{r.title}?" if active else r.title, id="title")
            yield Static(body, id="body")
            if active:
                yield Static(Text("what if: reading…", "dim"), id="whatif")
                yield Input(placeholder="why (optional, w): enter applies", id="why",
                            max_length=MAX_WHY)
            with Horizontal(id="buttons"):
                if active:
                    yield Button(f"{r.title} (y)", variant="warning", id="yes")
                    if r.verb == "restore":
                        yield Button(f"Ramp {RAMP_S:g} s (p)", id="ramp")
                    if r.verb == "maint":
                        yield Button("+ cut sessions (x)", id="cut")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        if self.request.ok and not self.request.noop:
            self.run_worker(self._what_if(), exclusive=True)

    async def _what_if(self) -> None:
        r = self.request
        source = self.app.source  # type: ignore[attr-defined]
        try:  # the engine's or the daemon's dry run (it has the node metrics)
            req = ActionRequest(r.verb, r.balancer, r.service, r.server, r.value, dry_run=True)
            res = await source.lb_action(req)
        except Exception as exc:  # no what-if is no reason to block the action
            self._show_whatif([f"what if: unavailable ({exc})"])
            return
        if not getattr(res, "dry_run", False):  # refused before planning: say why
            self._show_whatif([f"what if: unavailable ({res.message})"])
            return
        lines = res.message.splitlines()
        head = next((i for i, ln in enumerate(lines) if ln.startswith("what if")), len(lines))
        self.guard = getattr(res, "guard", "")
        self.templates = getattr(res, "templates", None)
        self._show_whatif([ln for ln in lines[head:] if not ln.startswith("dry run")])
        if any(ln.startswith(PAIR_REFUSAL_PREFIX) for ln in lines) and not self.query("#local"):
            # the peer director cannot confirm now: acting is refused unless here alone
            self.query_one("#buttons").mount(
                Button("this director only (o)", id="local"), before="#no"
            )
        if self.templates is not None and r.verb == "drain" and not self.query("#expire"):
            self.query_one("#buttons").mount(
                Button("+ expire templates (e)", id="expire"), before="#no"
            )

    def _show_whatif(self, lines: list[str]) -> None:
        pal = self.app.palette  # type: ignore[attr-defined]
        text = Text()
        for ln in lines:
            style = pal.fail if " CRIT > " in ln else pal.warn if " WARN > " in ln else ""
            if "persistence template" in ln:
                style = pal.warn
            text.append(ln + "\n", style)
        if self.guard:
            text.append(f"\n{self.guard}", pal.fail + Style(bold=True))
        self.whatif = lines
        for w in self.query("#whatif"):
            w.update(text)  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_focus_why(self) -> None:
        for field in self.query("#why"):
            field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "why":  # enter in the reason applies, as y does
            self.action_confirm()

    def action_confirm(self) -> None:
        self._go({})

    def action_choice(self, which: str) -> None:
        if not self.query(f"#{which}"):
            return  # not offered for this action
        options: dict[str, Any] = {
            "ramp": {"ramp_s": RAMP_S},
            "cut": {"cut_sessions": True},
            "expire": {"expire_templates": True},
            "local": {"local": True},
        }[which]
        self._go(options)

    def _go(self, options: dict[str, Any]) -> None:
        if not (self.request.ok and not self.request.noop):
            return
        try:  # the reason rides along with every choice; a bad one keeps the dialog open
            why = checked_why(self.query_one("#why", Input).value)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        if why:
            options = {**options, "why": why}
        if not self.guard:
            self.dismiss(options)
            return

        def second(sure: bool | None) -> None:
            if sure:
                self.dismiss({**options, "force": True})

        self.app.push_screen(ConfirmConsequence(self.request.title, self.guard), second)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.action_confirm()
        elif event.button.id in ("ramp", "cut", "expire", "local"):
            self.action_choice(event.button.id)
        else:
            self.dismiss(None)


class ConfirmConsequence(ModalScreen[bool]):
    """The second confirmation of a guarded action: it names what will happen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "dismiss(False)", "Cancel", tooltip="cancel: nothing changes"),
        Binding("y", "dismiss(True)", "Do it anyway",
                tooltip="do it anyway, forced (the dialog names the consequence)"),
    ]

    def __init__(self, title: str, consequence: str) -> None:
        super().__init__()
        self.title_text, self.consequence = title, consequence

    def compose(self) -> ComposeResult:
        body = Text()
        pal = self.app.palette  # type: ignore[attr-defined]
        body.append(self.consequence, pal.fail + Style(bold=True))
        body.append("\n\nDo it anyway?")
        with Vertical(id="dialog"):
            yield Label(f"{self.title_text}: are you sure?", id="title")
            yield Static(body, id="body")
            with Horizontal(id="buttons"):
                yield Button(f"{self.title_text} anyway (y)", variant="error", id="yes")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


def _w(weight: int | None) -> str:
    return "?" if weight is None else str(weight)


class WeightInput(ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", tooltip="cancel (enter sets the weight)")
    ]

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
