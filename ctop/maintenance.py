"""Maintenance: scheduled windows from ctop.toml, and nodes an operator drained.

    [maintenance]
    remind_after = "4h"            # a node drained longer than this: a reminder alert

    [[maintenance.window]]         # every day, local time (may cross midnight)
    every = "daily 02:30-03:15"    # or "mon,thu 02:30-03:15"
    group = "web"                  # and/or node = "…", rule = "…"; none: every alert
    reason = "nightly backup"

    [[maintenance.window]]         # one-off range, local time
    from = "2026-12-24 00:00"
    to = "2026-12-26 00:00"

Inside a window, the alerts it matches are held (still shown, no hooks run). A node whose real
server an operator drained or put in maint (the load-balancer journal says who and when) is
"in maintenance by USER since …": its liveness and service alerts are held until a restore.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ctop.parse import TableError, parse_duration
from ctop.snapshot import LBServiceView

REMIND_AFTER = 4 * 3600.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EVERY = re.compile(r"^\s*(daily|[a-z,\s]+?)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MOMENT = "%Y-%m-%d %H:%M"
# the alert rule kinds an operator's drain holds: the node is down on purpose
HELD_KINDS = ("liveness", "service")


class WindowError(TableError):
    """A [[maintenance.window]] table is wrong; `key` names the key."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int] = frozenset()  # weekdays (0 = Monday) of a recurring window
    start: int = 0  # minutes after midnight
    end: int = 0  # minutes after midnight; < start: the window ends the next day
    begins: float = 0.0  # a one-off range: Unix seconds
    ends: float = 0.0
    node: str = ""
    group: str = ""
    rule: str = ""
    reason: str = ""
    text: str = ""  # how the config wrote it, for the alerts pane

    def until(self, now: float) -> float | None:
        """When the window that holds `now` ends (None: `now` is outside every occurrence)."""
        if self.begins or self.ends:
            return self.ends if self.begins <= now < self.ends else None
        local = datetime.fromtimestamp(now)
        for back in (0, 1):  # today's occurrence, or yesterday's that crosses midnight
            day = (local - timedelta(days=back)).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
            if day.weekday() not in self.days:
                continue
            length = (self.end - self.start) % 1440 or 1440
            opens = day + timedelta(minutes=self.start)
            closes = opens + timedelta(minutes=length)
            if opens <= local < closes:
                return closes.timestamp()
        return None

    def matches(self, rule: str, node: str, group: str) -> bool:
        return ((not self.node or self.node == node) and (not self.group or self.group == group)
                and (not self.rule or self.rule == rule))


@dataclass(frozen=True)
class MaintenanceConfig:
    remind_after: float = REMIND_AFTER
    window: tuple[Window, ...] = ()  # the [[maintenance.window]] tables


def _bad(key: str, problem: str) -> WindowError:
    return WindowError(f"key '{key}': {problem}", key)


def _moment(table: Mapping[str, Any], key: str) -> float:
    value = table[key]
    try:
        return time.mktime(time.strptime(str(value).strip(), _MOMENT))
    except ValueError:
        raise _bad(key, f'expected "YYYY-MM-DD HH:MM" (local time), got {value!r}') from None


def parse_window(table: Mapping[str, Any]) -> Window:
    """One [[maintenance.window]] table -> Window; WindowError names the offending key."""
    known = {"every", "from", "to", "node", "group", "rule", "reason"}
    for key in table:
        if key not in known:
            raise _bad(key, f"unknown key (known: {', '.join(sorted(known))})")
    for key in ("node", "group", "rule", "reason"):
        if not isinstance(table.get(key, ""), str):
            raise _bad(key, f"expected a string, got {table[key]!r}")
    targets = {k: str(table.get(k, "")) for k in ("node", "group", "rule", "reason")}
    if "every" in table:
        if "from" in table or "to" in table:
            raise _bad("every", "give either 'every' or 'from' and 'to', not both")
        text = str(table["every"])
        m = _EVERY.match(text.lower())
        if not m:
            raise _bad("every", f'expected "daily HH:MM-HH:MM" or "mon,thu HH:MM-HH:MM", '
                                f"got {text!r}")
        if m[1] == "daily":
            days = frozenset(range(7))
        else:
            names = [d.strip() for d in m[1].split(",") if d.strip()]
            wrong = [d for d in names if d not in DAYS]
            if wrong or not names:
                raise _bad("every", f"unknown day {(wrong or [m[1]])[0]!r} "
                                    f"(days: daily or {','.join(DAYS)})")
            days = frozenset(DAYS.index(d) for d in names)
        h1, m1, h2, m2 = (int(m[i]) for i in range(2, 6))
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise _bad("every", f"not a time of day in {text!r}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end % 1440 and start == end:
            raise _bad("every", f"the window {text!r} is empty")
        return Window(days=days, start=start, end=end % 1440 if end == 1440 else end,
                      text=text, **targets)
    if "from" not in table or "to" not in table:
        raise WindowError("a window needs 'every', or 'from' and 'to'")
    begins, ends = _moment(table, "from"), _moment(table, "to")
    if ends <= begins:
        raise _bad("to", "must be after 'from'")
    return Window(begins=begins, ends=ends, text=f"{table['from']} – {table['to']}", **targets)


def parse_remind_after(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Drained:
    """A node an operator took out: by whom, since when, which real servers."""

    user: str
    since: float
    servers: tuple[str, ...]  # "balancer service/server"


def operator_drains(views: Iterable[LBServiceView], intents: Iterable[Any]
                    ) -> dict[str, Drained]:
    """node -> who drained it and since when: each real server a human drained or put in
    maint (the journal's intent: ctop.lb.journal.Intent) and that is still out of service,
    by the node it maps to. A node with several: the earliest drain, its user."""
    human = {(i.balancer, i.service, i.server): i for i in intents
             if i.human_drain and i.drained_at is not None}
    out: dict[str, Drained] = {}
    for view in views:
        for rs in view.servers:
            intent = human.get((view.balancer, view.key, rs.key))
            if intent is None or not rs.node_id or rs.state == "serving":
                continue
            where = f"{view.balancer} {view.key}/{rs.key}"
            known = out.get(rs.node_id)
            if known is None or intent.drained_at < known.since:
                servers = (*known.servers, where) if known else (where,)
                out[rs.node_id] = Drained(intent.drained_user or "?", intent.drained_at,
                                          servers)
            else:
                out[rs.node_id] = Drained(known.user, known.since, (*known.servers, where))
    return out
