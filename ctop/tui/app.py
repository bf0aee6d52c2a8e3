"""CtopApp: polls the source's snapshot and hands each new tick to the visible screen; runs the
load-balancer action flow (input, confirmation, action, report)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Input

from ctop.gcpolicy import process_heap
from ctop.lb.request import ActionRequest
from ctop.past import PastError, PastSource
from ctop.snapshot import EventView, Snapshot
from ctop.tui.actions import Request, from_plan
from ctop.tui.colors import palette_for
from ctop.tui.screens.alerts import AlertsScreen
from ctop.tui.screens.confirm import ConfirmAction, WeightInput
from ctop.tui.screens.help import HelpScreen
from ctop.tui.screens.main import MainScreen
from ctop.tui.screens.node_detail import NodeDetail
from ctop.tui.screens.silence import SilenceDialog
from ctop.tui.source import EngineLike
from ctop.tui.strip_cycles import install as install_acyclic_strips
from ctop.tui.theme import use_color
from ctop.tui.widgets.lb_pane import Target

install_acyclic_strips()  # before any frame: repainted lines must not become cyclic garbage

POLL_S = 0.5
LOCAL_EVENTS = 100


# A stale plan is refused and the dialog opens again with the new state, at most this often.
STALE_RETRIES = 3


def history_db(source: object) -> str | None:
    """The history database a source reads: the engine's store, the daemon's (attached UI),
    or one a test or script names (`db_path`)."""
    store = getattr(source, "store", None)
    path = getattr(store, "path", None) or getattr(source, "db_path", None)
    if path is None:  # the attached UI's RemoteSource reads the daemon's database
        path = getattr(getattr(source, "_store", None), "path", None)
    return path if path and path != ":memory:" else None


class CtopApp(App[None]):
    TITLE = "ctop"
    CSS_PATH = Path(__file__).with_name("styles.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", tooltip="quit (an attached UI leaves `ctop serve` running)"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding("colon", "command_palette", "Commands", key_display=":", show=False,
                tooltip="command palette (also ctrl+p)"),
        # the past (ctop.past; T on the main screen): the screen as it was, read-only
        Binding("left", "past_step(-60)", "1 min back", priority=True, show=False,
                tooltip="in the past: one minute back"),
        Binding("right", "past_step(60)", "1 min on", priority=True, show=False,
                tooltip="in the past: one minute on"),
        Binding("shift+left", "past_step(-600)", "10 min back", priority=True, show=False,
                tooltip="in the past: ten minutes back"),
        Binding("shift+right", "past_step(600)", "10 min on", priority=True, show=False,
                tooltip="in the past: ten minutes on"),
        Binding("escape", "live", "Back to live", priority=True, show=False,
                tooltip="in the past: back to the live view"),
    ]

    def __init__(
        self,
        source: EngineLike,
        *,
        readonly: bool = False,
        color: str | None = None,
        view: str | None = None,
        poll: float = POLL_S,
    ) -> None:
        super().__init__()
        self.source = source
        self._readonly = readonly or bool(getattr(source, "readonly", False))
        self.readonly = self._readonly
        self.palette = palette_for(color)
        use_color(self, color)
        self.color = color
        self.poll = poll
        self.snapshot: Snapshot = source.snapshot()
        self.readonly = self.readonly or self.snapshot.readonly
        self.local_events: list[EventView] = []  # action results, shown until the engine has them
        self._view = view
        self._tick = -1
        self.loading: float | None = None  # the past moment being read (T, ←/→)
        # ctop --at starts in the past with nothing live to go back to
        self.live_source: EngineLike | None = None if isinstance(source, PastSource) else source

    def get_driver_class(self):  # type: ignore[no-untyped-def]
        """Textual's terminal driver, with Esc delivered when due (ctop.tui.driver)."""
        from textual.drivers.linux_driver import LinuxDriver

        from ctop.tui.driver import PromptEscapeDriver

        driver = super().get_driver_class()
        return PromptEscapeDriver if driver is LinuxDriver else driver

    def on_mount(self) -> None:
        self.push_screen(MainScreen(self._view))
        self.call_after_refresh(self.refresh_snapshot, True)
        self.set_interval(self.poll, self.refresh_snapshot)

    def refresh_snapshot(self, force: bool = False) -> None:
        """Timer: fetch the latest snapshot; redraw only when the tick moved."""
        if not self.screen_stack:  # shutting down (the kept screens still being removed)
            return
        snap = self.source.snapshot()
        if snap.tick == self._tick and not force:
            return
        self.snapshot, self._tick = snap, snap.tick
        readonly = self._readonly or snap.readonly  # a daemon started --readonly says so
        if readonly != self.readonly:
            self.readonly = readonly
            self.screen.refresh_bindings()  # action keys leave (or join) the footer
        self._update_screen(every=force)
        # An attached UI decodes 10,000 NodeViews a tick: keep the collector off them too.
        process_heap.after_tick(len(snap.nodes))

    def _update_screen(self, every: bool = False) -> None:
        # forced (the first snapshot, another source: T, esc): every screen on the stack, so
        # the one under a dialog opened before the first refresh is not left empty
        for screen in self.screen_stack if every else [self.screen]:
            update = getattr(screen, "update_snapshot", None)
            if update is None:
                continue
            # a screen still composing or torn down has no widgets: it takes the next tick
            with contextlib.suppress(NoMatches):
                update(self.snapshot)

    # -- the past ------------------------------------------------------------------------------

    @property
    def past(self) -> PastSource | None:
        return self.source if isinstance(self.source, PastSource) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "past_step":  # only in the past, and never while typing (the filter)
            return self.past is not None and not isinstance(self.focused, Input)
        if action == "live":  # esc leaves the past from the main screen only (else: back)
            return (self.past is not None and isinstance(self.screen, MainScreen)
                    and not isinstance(self.focused, Input))
        return True


    def get_system_commands(self, screen):  # type: ignore[no-untyped-def]
        """The command palette (`:`), and `ctx NAME` for each context a NATS view offers."""
        yield from super().get_system_commands(screen)
        contexts = getattr(self.source, "contexts", None)
        if contexts is not None:
            for name, what in contexts():
                yield SystemCommand(f"ctx {name}", what,
                                    lambda name=name: self.source.use_context(name))
    def action_time_travel(self) -> None:
        """T: the screen as it was a minute ago, from the history database."""
        if self.past is not None:
            return
        path = history_db(self.source)
        if path is None:
            self.notify("no history database to look back in", severity="error")
            return
        self._show_loading(self.snapshot.ts - 60)
        self._enter_past(path, self.snapshot.ts - 60, self.snapshot.cluster)

    @work(thread=True, exclusive=True, group="past")
    def _enter_past(self, path: str, at: float, cluster: str) -> None:
        # reading a moment of 10,000 nodes takes a while: never on the event loop
        try:
            past = PastSource(path, at, cluster=cluster)
            past.snapshot()
        except PastError as e:
            self.call_from_thread(self._show_loading, None)
            self.call_from_thread(self.notify, str(e), severity="error")
            return
        self.call_from_thread(self._show_past, past)

    def _show_past(self, past: PastSource) -> None:
        if self.past is None:
            self.source = past
            self.loading = None
            self.refresh_snapshot(force=True)

    def action_past_step(self, seconds: float) -> None:
        """←/→: the header says "loading 14:05…" at once, a worker reads the moment; a newer
        step supersedes it (the older one is never shown, and stops reading early)."""
        past = self.past
        if past is not None:
            at = past.want(seconds)  # quick presses add up
            self._show_loading(at)
            self._scrub(past, at)

    @work(thread=True, exclusive=True, group="past-step")
    def _scrub(self, past: PastSource, at: float) -> None:
        if past.load(at) is not None:
            self.call_from_thread(self._stepped, past, at)

    def _stepped(self, past: PastSource, at: float) -> None:
        if self.past is past and past.target == at:
            self.loading = None
            self.refresh_snapshot(force=True)

    def _show_loading(self, at: float | None) -> None:
        """The moment being read, in the main screen's header until it is shown."""
        self.loading = at
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                with contextlib.suppress(NoMatches):
                    screen.show_header()

    def action_live(self) -> None:
        past, live = self.past, self.live_source
        if past is None:
            return
        if live is None:
            self.notify("ctop --at shows the past only: run ctop for the live view")
            return
        self.source = live
        self.loading = None
        self.refresh_snapshot(force=True)
        self._close_past(past)

    @work(thread=True, group="past-close")
    def _close_past(self, past: PastSource) -> None:
        past.close()  # (waits for a scrub still reading)

    # -- navigation ----------------------------------------------------------------------------

    def kept(self, name: str, make: Callable[[], Screen[None]]) -> Screen[None]:
        """A screen composed on first use and kept installed: a key switches to it (and it
        updates its widgets) instead of composing and styling a new one (100s of ms a key at
        10,000 nodes)."""
        if not self.is_screen_installed(name):
            self.install_screen(make(), name)
        return self.get_screen(name)

    def open_node(self, node_id: str) -> None:
        screen = self.kept("node-detail", NodeDetail)
        if screen not in self.screen_stack:  # (already open under a dialog: leave it)
            self.push_screen(screen.show_node(node_id))  # type: ignore[attr-defined]

    def action_alerts(self) -> None:
        screen = self.kept("alerts", AlertsScreen)
        if screen not in self.screen_stack:
            self.push_screen(screen)
            self.call_after_refresh(screen.update_snapshot, self.snapshot)  # type: ignore[attr-defined]

    def action_drops(self) -> None:
        from ctop.tui.screens.drops import DropsScreen

        screen = DropsScreen()
        self.push_screen(screen)
        self.call_after_refresh(screen.update_snapshot, self.snapshot)

    def action_help(self) -> None:
        screen = self.kept("help", HelpScreen)
        if screen not in self.screen_stack:
            self.push_screen(screen)

    # -- silences -------------------------------------------------------------------------------

    @work(exclusive=True, group="silence")
    async def silence_request(self, node: str, rule: str = "") -> None:
        """`S`: the dialog (duration, reason), then the silence through the source (the
        engine, or the daemon that takes the author from the socket)."""
        add = getattr(self.source, "silence", None)
        if add is None or self.past is not None:
            self.notify("silences are for the live cluster", severity="error")
            return
        answer = await self.push_screen_wait(SilenceDialog(node, rule))
        if answer is None:
            return
        try:
            s = await add(node=answer["node"], rule=answer["rule"], duration=answer["for"],
                          reason=answer["reason"])
        except Exception as exc:  # refused (permission, a bad value), daemon gone: say why
            self.notify(f"silence not added: {exc}", severity="error", timeout=8)
            return
        self.notify(f"silence {s.id}: {s.target} until "
                    f"{time.strftime('%H:%M', time.localtime(s.expires))}: {s.reason}",
                    timeout=6)
        self.refresh_snapshot(force=True)

    # -- load-balancer actions ------------------------------------------------------------------

    @work(exclusive=True, group="lb-action")
    async def lb_request(self, verb: str, target: Target, value: int | None = None) -> None:
        """Ask (weight), show the plan, act when confirmed, report the balancer's answer."""
        if self.readonly:
            self.notify("read-only mode: load-balancer actions are disabled", severity="error")
            return
        rs = target.server
        if verb == "weight":
            value = await self.push_screen_wait(
                WeightInput(rs.key, rs.weight, self._max_weight(target))
            )
            if value is None:
                return
        elif verb == "advice":
            if rs.advised_weight is None or rs.advised_weight == rs.weight:
                self.notify(f"{rs.key}: no advice differing from weight {rs.weight}")
                return
            value = rs.advised_weight
        ask = ActionRequest(verb, target.balancer, target.service, rs.key, value)
        what = f"{target.balancer} {target.service}/{rs.key}: {verb}"
        changed = ""  # why the dialog opens again: the server changed under the last one
        for _ in range(STALE_RETRIES):
            try:
                # The source's plan: the engine's or the daemon's own reading of the balancer.
                planned = await self.source.lb_plan(ask)
            except Exception as exc:  # no balancer, daemon gone: say so, open no dialog
                self.report(False, str(exc) or type(exc).__name__, what)
                return
            request: Request = from_plan(verb, value, planned)
            if changed:
                request = replace(request, message="\n".join(filter(None, (
                    f"changed since you confirmed: {changed}", request.message))))
            options = await self.push_screen_wait(ConfirmAction(request))
            if options is None:  # cancelled; else the dialog's choices (force, ramp, cut, ...)
                return
            # the plan confirmed is the plan that runs, or nothing does
            run = replace(ask, expect=request.expect)
            run = replace(run, **options)  # the dialog's choice: force, ramp, cut sessions, ...
            events_before = self.source.snapshot().events
            try:
                result = await self.source.lb_action(run)
                ok, message = result.ok, result.message or ("done" if result.ok else "failed")
            except Exception as exc:  # the source's own failure (no LB, daemon gone): show it
                result, ok, message = None, False, str(exc) or type(exc).__name__
            # the engine or daemon logged it as an event
            recorded = (getattr(self.source, "records_actions", False)
                        or self.source.snapshot().events != events_before)
            self.report(ok, message, what, event=not recorded)
            self.refresh_snapshot(force=True)
            if result is None or not result.stale:
                return
            # Refused because the server changed: show the dialog again with its new state.
            changed = f"now weight {result.before} ({result.state_before})"

    def _max_weight(self, target: Target) -> int | None:
        be = self.source.lb.balancers.get(target.balancer) if self.source.lb else None
        return getattr(be, "max_weight", None)

    def report(self, ok: bool, message: str, what: str, *, event: bool = True) -> None:
        """Notify, and add an event to the alerts pane unless the source already recorded one."""
        text = message if what in message else f"{what}: {message}"
        self.notify(text, severity="information" if ok else "error", timeout=6)
        if event:
            kind = "action" if ok else "error"
            self.local_events.append(EventView(self.snapshot.ts, kind, "", text))
            del self.local_events[:-LOCAL_EVENTS]
