"""Alerts pane: firing alerts first (most severe, oldest first, as the snapshot orders them),
then recent events newest first, including the operator's own actions from this session."""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from textual.strip import Strip

from ctop.snapshot import AlertView, EventView, Snapshot
from ctop.tui.format import age
from ctop.tui.widgets.line_view import LineView, strip

KIND_WIDTH = 8


class AlertsPane(LineView):
    def __init__(self, *, limit: int = 200, **kw) -> None:
        super().__init__(**kw)
        self.limit = limit
        self._items: list[AlertView | EventView | str] = []
        self._now = 0.0
        self._names: dict[str, str] = {}

    def show(self, snap: Snapshot, local: Sequence[EventView] = ()) -> None:
        """`local`: events this UI produced (action results) not yet in the snapshot."""
        self._now = snap.ts
        events = sorted((*snap.events, *local), key=lambda e: e.ts, reverse=True)[: self.limit]
        items: list[AlertView | EventView | str] = []
        items.append(f"{len(snap.alerts)} firing" if snap.alerts else "no alerts firing")
        items += snap.alerts
        items.append("recent events")
        items += events
        self._items = items
        # as wide as its longest line: the top border says "→ more" when the pane is narrower
        self.set_size(len(items), max(map(_length, items)))

    def body_strip(self, line: int, width: int) -> Strip:
        pal = self.palette
        item = self._items[line]
        if isinstance(item, str):
            return strip([Segment(item, pal.heading)], width)
        if isinstance(item, AlertView):
            sev = pal.fail if item.severity == "crit" else pal.warn
            return strip(
                [
                    Segment(f" {item.severity.upper():<{KIND_WIDTH}}", sev),
                    Segment(f"{age(item.since, self._now):>5} ", pal.dim),
                    Segment(item.message, pal.value),
                ],
                width,
            )
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


def _length(item: AlertView | EventView | str) -> int:
    """Cells a line of the pane takes (kind column, age, message)."""
    if isinstance(item, str):
        return len(item)
    return 1 + KIND_WIDTH + 6 + len(item.message)
