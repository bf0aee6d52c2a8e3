"""Watched processes in the history (agentd.toml `watch`, metric "watched"): one row per node,
watch and change, written when a node's report carries a new value (count or restarts change
at once, CPU and RSS on the agent's refresh: agentd/slowfacts.py), so a day of a steady watch
is a few thousand small rows, not one per second.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

SCHEMA = """
    CREATE TABLE watched (
        node TEXT NOT NULL, label TEXT NOT NULL, ts REAL NOT NULL,
        count INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER, restarts INTEGER NOT NULL,
        cpu REAL NOT NULL, rss INTEGER NOT NULL, threads INTEGER NOT NULL, fds INTEGER,
        PRIMARY KEY (node, label, ts)
    ) WITHOUT ROWID;
    CREATE INDEX watched_ts ON watched (ts);
"""

Row = tuple[Any, ...]  # (node, label, ts, count, low, high, restarts, cpu, rss, threads, fds)


class WatchedChanges:
    """The rows to write for this tick: the nodes whose watched value is new."""

    def __init__(self) -> None:
        self._last: dict[str, Any] = {}

    def rows(self, node: str, ts: float, value: Sequence[Sequence[Any]] | None) -> list[Row]:
        if not value:
            return []
        last = self._last.get(node)
        if value is last or value == last:  # kept by the cluster while reports leave it out
            return []
        self._last[node] = value
        return [(node, w[0], ts, *w[1:9]) for w in value]


def write(db: sqlite3.Connection, rows: list[Row]) -> None:
    db.executemany("INSERT OR REPLACE INTO watched VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)


def prune(db: sqlite3.Connection, before: float) -> None:
    db.execute("DELETE FROM watched WHERE ts < ?", (before,))


def history(db: sqlite3.Connection, node: str, since: float) -> list[Row]:
    """A node's watched rows since `since`, oldest first."""
    return db.execute("SELECT * FROM watched WHERE node = ? AND ts >= ? ORDER BY ts, label",
                      (node, since)).fetchall()
