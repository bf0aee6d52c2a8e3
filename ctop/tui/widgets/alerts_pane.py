"""Alerts pane: firing alerts first (most severe, oldest first, as the snapshot orders them;
silenced and held ones after them, dimmed, with who muted them and until when), then recent
events newest first, including the operator's own actions from this session. Focused, up/down
select a firing alert (`S` silences its rule on its node)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.strip import Strip

from ctop.mute import muted_text
from ctop.snapshot import AlertView, EventView, Snapshot
from ctop.tui.format import age
from ctop.tui.widgets.line_view import LineView, strip

KIND_WIDTH = 8


class AlertsPane(LineView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False, tooltip="select a firing alert"),
        Binding("down,j", "move(1)", "Down", show=False),
    ]

    def __init__(self, *, limit: int = 200, **kw) -> None:
        super().__init__(**kw)
        self.limit = limit
        self._items: list[AlertView | EventView | str] = []
        self._alerts = 0  # firing alerts shown (lines 1.._alerts)
        self._pick = 0  # index of the selected firing alert
        self._picked: str | None = None  # its key, kept across ticks
        self._now = 0.0
        self._names: dict[str, str] = {}
        self._same: tuple[object, ...] | None = None  # the alerts and events shown
        self._ages: tuple[str, ...] = ()  # their ages as shown

    def show(self, snap: Snapshot, local: Sequence[EventView] = ()) -> None:
        """`local`: events this UI produced (action results) not yet in the snapshot."""
        # A tick that brought no new alert or event moves only the ages: when none of them
        # shows another value either, nothing is rebuilt or compared; else the rows whose age
        # moved are repainted (LineView.refresh_changed), not the pane.
        ages = tuple(age(x.since if isinstance(x, AlertView) else x.ts, snap.ts)
                     for x in self._items if not isinstance(x, str))
        same = (snap.alerts, snap.events, tuple(local))
        if same == self._same and ages == self._ages:
            self._now = snap.ts
            return
        self._now = snap.ts
        events = sorted((*snap.events, *local), key=lambda e: e.ts, reverse=True)[: self.limit]
        items: list[AlertView | EventView | str] = []
        items.append(f"{len(snap.alerts)} firing" if snap.alerts else "no alerts firing")
        items += snap.alerts
        items.append("recent events")
        items += events
        self._items = items
        self._alerts = len(snap.alerts)
        keys = [a.key for a in snap.alerts]
        if self._picked in keys:
            self._pick = keys.index(self._picked)
        self._pick = max(0, min(self._pick, self._alerts - 1))
        self._picked = keys[self._pick] if keys else None
        self._same = same
        self._ages = tuple(age(x.since if isinstance(x, AlertView) else x.ts, snap.ts)
                           for x in items if not isinstance(x, str))
        # as wide as its longest line: the top border says "→ more" when the pane is narrower
        self.set_size(len(items), max(map(_length, items)))

    def body_strip(self, line: int, width: int) -> Strip:
        pal = self.palette
        item = self._items[line]
        if isinstance(item, str):
            return strip([Segment(item, pal.heading)], width)
        if isinstance(item, AlertView):
            sev = pal.fail if item.severity == "crit" else pal.warn
            segs = [
                Segment(f" {item.severity.upper():<{KIND_WIDTH}}", sev),
                Segment(f"{age(item.since, self._now):>5} ", pal.dim),
                Segment(item.message, pal.value),
            ]
            if item.muted:  # still firing, pages nobody: dimmed, and why
                segs = [Segment(t, pal.dim) for t, _, _ in segs]
                segs[0] = Segment(f" {item.muted.upper():<{KIND_WIDTH}}", pal.dim)
                segs.append(Segment(f"  ({muted_text(item)})", pal.dim + Style(italic=True)))
            row = strip(segs, width)
            if line - 1 == self._pick and self.has_focus:
                row = row.apply_style(pal.cursor)
            return row
        style = {
            "leave": pal.left,
            "state": pal.suspect,
            "alert": pal.warn,
            "resolved": pal.ok,
            "action": pal.drained,
            "join": pal.alive,
            "restart": pal.suspect,
            "error": pal.fail,
            "drift": pal.warn,
        }.get(item.kind, pal.label)
        return strip(
            [
                Segment(f" {item.kind:<{KIND_WIDTH}}", style),
                Segment(f"{age(item.ts, self._now):>5} ", pal.dim),
                Segment(item.message, pal.value),
            ],
            width,
        )


    # -- selection -----------------------------------------------------------------------------

    @property
    def selected(self) -> AlertView | None:
        """The firing alert the cursor is on (None: none firing)."""
        if not self._alerts:
            return None
        item = self._items[1 + self._pick]
        return item if isinstance(item, AlertView) else None

    def action_move(self, delta: int) -> None:
        """Select the next / previous firing alert; past the first or last one, scroll (the
        events below stay in reach)."""
        beyond = self._pick + delta < 0 or self._pick + delta >= self._alerts
        if beyond:
            self.scroll_relative(y=delta, animate=False)
            return
        self._pick = max(0, min(self._pick + delta, self._alerts - 1))
        self._picked = self.selected.key if self.selected else None
        self.scroll_to_line(1 + self._pick)
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        line = self.line_at(event.y)
        if line is not None and 1 <= line <= self._alerts:
            self._pick = line - 1
            self._picked = self.selected.key if self.selected else None
            self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def _length(item: AlertView | EventView | str) -> int:
    """Cells a line of the pane takes (kind column, age, message, why it is muted)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, AlertView) and item.muted:
        return 1 + KIND_WIDTH + 6 + len(item.message) + 4 + len(muted_text(item))
    return 1 + KIND_WIDTH + 6 + len(item.message)
