"""Synthetic histories written into a real history database (the daemon's schema, the
writer's scaled integers): hourly rollups for the baselines, minute rollups for the current
value. For the anomaly tests and bench/anomaly.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from ctop.anomaly.config import BASELINE_METRICS
from ctop.store.schema import SCALES, connect, migrate

HOUR = 3600
DAY = 86400
WEEK = 7 * DAY
# A Monday 00:00 UTC (2027-01-04): hour-of-week tests name days and hours from here.
MONDAY = 1_799_020_800.0

Values = Callable[[str, int], dict[str, float]]  # (node, epoch hour) -> metric -> value


def open_store(path: str, nodes: dict[str, str]) -> sqlite3.Connection:
    """The database at `path` with the daemon's schema and these nodes (node -> group)."""
    db = connect(path)
    migrate(db)
    with db:
        db.executemany("INSERT OR IGNORE INTO nodes (node_id, hostname, grp) VALUES (?, ?, ?)",
                       [(n, n, g) for n, g in nodes.items()])
    return db


def _ids(db: sqlite3.Connection) -> dict[str, int]:
    return dict(db.execute("SELECT node_id, id FROM nodes"))


def scaled_row(metrics: dict[str, float]) -> tuple[list[str], list[int]]:
    cols, vals = [], []
    for name, value in metrics.items():
        c = BASELINE_METRICS[name]
        scaled = round(value * SCALES[c])
        cols += (f"{c}_avg", f"{c}_max")
        vals += (scaled, scaled)
    return cols, vals


def write_hours(db: sqlite3.Connection, hours: Iterable[int], values: Values) -> None:
    """Hourly rows of every node for these epoch hours."""
    ids = _ids(db)
    with db:
        for hour in hours:
            for node, rowid in ids.items():
                cols, vals = scaled_row(values(node, hour))
                db.execute(f"INSERT OR REPLACE INTO hourly (node, hour, n, {', '.join(cols)}) "
                           f"VALUES (?, ?, 360, {', '.join('?' * len(vals))})",
                           (rowid, hour, *vals))


def write_minutes(db: sqlite3.Connection, now: float, current: dict[str, dict[str, float]],
                  minutes: int = 15) -> None:
    """Minute rows for the `minutes` before `now`, each node at its current values."""
    ids = _ids(db)
    last = int(now // 60)
    with db:
        for node, metrics in current.items():
            cols, vals = scaled_row(metrics)
            for minute in range(last - minutes, last):
                db.execute(f"INSERT OR REPLACE INTO rollups (node, minute, n, {', '.join(cols)}) "
                           f"VALUES (?, ?, 6, {', '.join('?' * len(vals))})",
                           (ids[node], minute, *vals))


def history_hours(now: float, days: float) -> range:
    """Every finished hour of the `days` before now."""
    end = int(now // HOUR)
    return range(end - round(days * 24), end)
