"""Warnings as events: while the UI owns the terminal, log records go to the alert pane
instead of stderr (text there would tear the screen)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ctop.snapshot import EventView

EventSink = Callable[[Sequence[EventView]], None]


class EventLogHandler(logging.Handler):
    """Each warning (and worse) becomes one "log" event handed to `note`."""

    def __init__(self, note: EventSink) -> None:
        super().__init__(logging.WARNING)
        self.note = note

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.note([EventView(record.created, "log", "",
                                 f"{record.levelname.lower()}: {record.getMessage()}")])
        except Exception:
            self.handleError(record)


def log_to_events(note: EventSink) -> None:
    """Replace the root logger's handlers: warnings become events passed to `note`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(EventLogHandler(note))
    root.setLevel(logging.WARNING)
