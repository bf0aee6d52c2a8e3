"""The one place that decides which firing alerts page nobody: silences (ctop.silences),
maintenance windows and operator drains (ctop.maintenance).

The engine passes each tick's firing set and notifications through `Mute.apply`: a muted
alert stays in the firing set (marked, so every view shows it dimmed with who muted it and
until when), and its notifications never reach the hooks. An alert whose firing was withheld
and that still fires when its silence ends is notified then, so an expired silence hides
nothing. A node drained longer than `remind_after` raises a reminder alert of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ctop.alerts import Notification, Rule
from ctop.maintenance import HELD_KINDS, Drained, MaintenanceConfig
from ctop.silences import Silence, SilenceBook
from ctop.snapshot import AlertView, EventView, Severity

REMINDER = "maintenance-reminder"  # the reminder alert's rule name (silence it like any rule)


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def muted_text(alert: AlertView | Mapping[str, Any]) -> str:
    """Who muted an alert and until when, in words (`ctop status`, the alerts pane)."""
    get = alert.get if isinstance(alert, Mapping) else lambda k, d=None: getattr(alert, k, d)
    muted, by, until, note = (get(k, "") for k in ("muted", "muted_by", "muted_until",
                                                   "muted_note"))
    if not muted:
        return ""
    if muted == "held":
        return f"held: {note}"
    who = "a maintenance window" if by == "window" else by
    text = f"silenced by {who} until {_clock(float(until))}"
    if note and by != "window":
        text += f": {note}"
    elif note:
        text += f" ({note})"
    return text


@dataclass
class Mute:
    rules: Sequence[Rule]
    config: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    book: SilenceBook | None = None
    cluster: str = "cluster"
    # node -> who drained it (ctop.maintenance.operator_drains), replaced whole by the LB
    # worker thread after each round
    drains: dict[str, Drained] = field(default_factory=dict)
    _kinds: dict[str, str] = field(default_factory=dict)
    _withheld: set[str] = field(default_factory=set)  # keys whose "firing" paged nobody
    _reminders: dict[str, AlertView] = field(default_factory=dict)
    _silences: dict[int, Silence] = field(default_factory=dict)  # active at the last tick

    def __post_init__(self) -> None:
        self._kinds = {r.name: r.kind for r in self.rules}

    def silences(self, now: float) -> tuple[Silence, ...]:
        return self.book.active(now) if self.book is not None else ()

    def mark(self, alert: AlertView, group_of: Callable[[str], str], now: float,
             silences: Sequence[Silence]) -> AlertView:
        """`alert` with why it is muted ("" fields: it is not)."""
        group = group_of(alert.node_id) if alert.node_id else ""
        for s in silences:
            if s.matches(alert.rule, alert.node_id, group):
                return replace(alert, muted="silenced", muted_by=s.author,
                               muted_until=s.expires, muted_note=s.reason)
        drained = self.drains.get(alert.node_id) if alert.node_id else None
        if drained is not None and self._kinds.get(alert.rule) in HELD_KINDS:
            return replace(alert, muted="held", muted_by=drained.user, muted_until=0.0,
                           muted_note=f"in maintenance by {drained.user} since "
                                      f"{_clock(drained.since)}")
        for w in self.config.window:
            if w.matches(alert.rule, alert.node_id, group):
                ends = w.until(now)
                if ends is not None:
                    note = f"maintenance window {w.text}" + (f": {w.reason}" if w.reason else "")
                    return replace(alert, muted="silenced", muted_by="window",
                                   muted_until=ends, muted_note=note)
        return alert

    def apply(
        self, firing: Sequence[AlertView], notes: Sequence[Notification],
        group_of: Callable[[str], str], now: float,
    ) -> tuple[tuple[AlertView, ...], list[Notification], list[EventView]]:
        """(the firing set marked, unmuted first; the notifications for the hooks; events)."""
        silences = self.silences(now)
        events: list[EventView] = []
        self._expired(silences, now, events)
        reminders, notes = self._remind(now, list(notes), events)
        marked = [self.mark(a, group_of, now, silences) for a in (*firing, *reminders)]
        by_key = {a.key: a for a in marked}
        out: list[Notification] = []
        told: set[str] = set()
        for note in notes:
            key = note.alert.key
            view = by_key.get(key) or self.mark(note.alert, group_of, now, silences)
            told.add(key)
            if view.muted:
                if note.state == "resolved":
                    self._withheld.discard(key)
                else:
                    self._withheld.add(key)
                continue
            if note.state == "resolved" and key in self._withheld:
                self._withheld.discard(key)  # its firing paged nobody: nor does its end
                continue
            self._withheld.discard(key)
            out.append(replace(note, alert=view))
        for key in [k for k in self._withheld if k not in told]:
            view = by_key.get(key)
            if view is None:  # gone without a notification (a restart of the rules)
                self._withheld.discard(key)
            elif not view.muted:  # the silence ended while it fires: tell the hooks now
                self._withheld.discard(key)
                out.append(Notification("firing", view, self.cluster, now))
        marked.sort(key=lambda a: bool(a.muted))  # stable: severity order within each part
        return tuple(marked), out, events

    def _expired(self, silences: Sequence[Silence], now: float, events: list[EventView]
                 ) -> None:
        """An event for each silence that ran out since the last tick (a removal is the
        engine's own event)."""
        current = {s.id: s for s in silences}
        for sid, s in self._silences.items():
            if sid not in current and s.expires <= now:
                events.append(EventView(now, "action", s.node,
                                        f"silence #{sid} ({s.target}, by {s.author}) expired"))
        self._silences = current

    def _remind(self, now: float, notes: list[Notification], events: list[EventView]
                ) -> tuple[list[AlertView], list[Notification]]:
        """The reminder alerts of nodes drained longer than remind_after; their firing and
        resolved notifications join `notes`."""
        due: dict[str, AlertView] = {}
        for node, d in self.drains.items():
            if now - d.since < self.config.remind_after:
                continue
            key = f"{REMINDER}:{node}"
            old = self._reminders.get(key)
            text = (f"{node} in maintenance by {d.user} for {_span(now - d.since)} (since "
                    f"{_clock(d.since)}, {', '.join(d.servers)}): restore it or silence this")
            due[key] = AlertView(key, REMINDER, node, Severity.WARN, text,
                                 old.since if old else now)
            if old is None:
                events.append(EventView(now, "alert", node, f"[warn] {text}"))
                notes.append(Notification("firing", due[key], self.cluster, now))
        for key, gone in self._reminders.items():
            if key not in due:
                events.append(EventView(now, "resolved", gone.node_id,
                                        f"resolved: {gone.message}"))
                notes.append(Notification("resolved", gone, self.cluster, now))
        self._reminders = due
        return list(due.values()), notes
