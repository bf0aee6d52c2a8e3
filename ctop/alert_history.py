"""The alerts firing, stored after each change, so a past moment shows them exactly (ctop --at).

Alert and resolved events alone cannot say which alerts fired at a moment: a resolved event
carries the alert's last message (a metric alert's value moves), and a warning that became
critical has two alert events. So the engine stores the whole firing set whenever an alert
starts, changes level or resolves, and at its first tick (which ends the previous run's set).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgpack

from ctop.snapshot import AlertView, Severity

SCHEMA = """
CREATE TABLE alert_states (ts REAL PRIMARY KEY, firing BLOB NOT NULL);
"""


def pack(firing: Sequence[AlertView]) -> bytes:
    # the last four: why it paged nobody (ctop.mute); rows stored before them have seven
    return msgpack.packb([[a.key, a.rule, a.node_id, str(a.severity), a.message, a.since,
                           a.value, a.muted, a.muted_by, a.muted_until, a.muted_note]
                          for a in firing])


def firing_at(db: sqlite3.Connection, at: float) -> tuple[AlertView, ...]:
    """The alerts firing at `at`, as the engine last stored them before it."""
    try:
        row = db.execute("SELECT firing FROM alert_states WHERE ts <= ? ORDER BY ts DESC "
                         "LIMIT 1", (at,)).fetchone()
    except sqlite3.OperationalError:  # a database from before alert history
        return ()
    if row is None:
        return ()
    return tuple(AlertView(key, rule, node, Severity(level), message, since, value, *muted)
                 for key, rule, node, level, message, since, value, *muted
                 in msgpack.unpackb(row[0]))


def prune(db: sqlite3.Connection, before: float) -> None:
    """Older states go, but the one in force at `before` stays (it still tells that moment)."""
    db.execute("DELETE FROM alert_states WHERE ts < (SELECT max(ts) FROM alert_states "
               "WHERE ts <= ?)", (before,))
