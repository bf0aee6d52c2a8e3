"""The 1-minute and hourly rollups: built, flushed and rebuilt.

The writer thread builds each node's current minute from every report (MinuteRollups, fed by
ctop.store.tickrows from the views the event loop hands it) and writes finished minutes as
rows; it rolls each finished hour's minute rows up into one hourly row per node (roll_hours),
so neither level costs the event loop anything but handing over the tick's new views.
At start, the minute a killed daemon had in progress is rebuilt from raw samples
(rebuild_minutes).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import add, itemgetter
from typing import Any

from ctop.store.schema import COLS, PAIR_COLS, SCALE, TS_SCALE, meta
from ctop.store.services import ServiceIds, mean_services

log = logging.getLogger(__name__)

# One hourly pass reads at most this many minute rows (one hour of 10,000 nodes), so catching
# up a backlog (an upgraded database, downtime) goes in short steps between the tick batches.
HOURLY_ROWS_PER_PASS = 600_000
CATCHUP_EVERY = 5.0  # seconds between hourly passes while behind
REBUILD_MINUTES = 10  # at start, minutes after the last written one rebuilt from raw samples

_FIRST = itemgetter(0)


def hour_avg(c: str, t: str = "") -> str:
    """An hour's value of column c from its minute rows (table alias t): each minute's average
    weighted by its sample count, which is the average over all the hour's samples."""
    # total(), a float sum: sum() of integers raises "integer overflow" past 2^63
    return f"CAST(round(total({t}{c}_avg * {t}n) / sum({t}n)) AS INTEGER)"


HOUR_SQL = (
    f"INSERT OR REPLACE INTO hourly (node, hour, n, {', '.join(PAIR_COLS)}, svc) "
    "SELECT r.node, ?, sum(r.n), "
    + ", ".join(f"{hour_avg(c, 'r.')}, max(r.{c}_max)" for c in COLS)
    # CROSS JOIN: one primary-key range per node, where "minute BETWEEN" alone would scan
    # the whole table (rows are clustered by node)
    + ", NULL FROM nodes CROSS JOIN rollups AS r "
    "WHERE r.node = nodes.id AND r.minute >= ? AND r.minute < ? GROUP BY nodes.id"
)
# A minute already in the table (the part before a stop, or rebuilt from raw samples at start)
# and the rest of it: one row, averages weighted by sample count. SET reads the old row.
ROLLUP_SQL = (
    f"INSERT INTO rollups (node, minute, n, {', '.join(PAIR_COLS)}, svc) "
    f"VALUES ({', '.join('?' * (2 * len(COLS) + 4))}) "
    "ON CONFLICT (node, minute) DO UPDATE SET n = n + excluded.n, "
    + ", ".join(f"{c}_avg = CAST(round(({c}_avg * n + excluded.{c}_avg * excluded.n) * 1.0 "
                f"/ (n + excluded.n)) AS INTEGER), {c}_max = max({c}_max, excluded.{c}_max)"
                for c in COLS)
    + ", svc = coalesce(excluded.svc, svc)"
)
# Minutes with raw samples but no rollup row (the one in progress at a crash), per node.
_REBUILD_SQL = (
    f"INSERT INTO rollups (node, minute, n, {', '.join(PAIR_COLS)}, svc) "
    "SELECT s.node, s.ts / 60000, count(*), "
    + ", ".join(f"CAST(round(avg(s.{c})) AS INTEGER), max(s.{c})" for c in COLS)
    + ", NULL FROM nodes CROSS JOIN samples AS s WHERE s.node = nodes.id "
    "AND s.ts >= ? AND s.ts < ? AND NOT EXISTS (SELECT 1 FROM rollups AS r "
    "WHERE r.node = s.node AND r.minute = s.ts / 60000) GROUP BY s.node, s.ts / 60000"
)
_REBUILD_SVC_SQL = (
    "SELECT s.node, s.ts / 60000, s.svc FROM nodes CROSS JOIN samples AS s "
    "WHERE s.node = nodes.id AND s.ts >= ? AND s.ts < ? AND s.svc IS NOT NULL "
    "ORDER BY s.node, s.ts"
)
_HOUR_SVC_SQL = (
    "SELECT r.node, r.n, r.svc FROM nodes CROSS JOIN rollups AS r "
    "WHERE r.node = nodes.id AND r.minute >= ? AND r.minute < ? AND r.svc IS NOT NULL "
    "ORDER BY nodes.id"
)


# -- the minute in progress (writer thread) -------------------------------------------------


@dataclass(slots=True)
class _Rollup:
    """One node's current minute, in readable units (scaled when the row is written)."""

    minute: int
    n: int = 0
    sums: list[float] = field(default_factory=list)
    maxes: list[float] = field(default_factory=list)
    # Service latencies: while every sample has the same services, all with a latency (the
    # usual case), sums in the order of `names` (one C-level map per sample); else per name.
    names: list[str] | None = None
    lat_sums: list[float] = field(default_factory=list)
    svc: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]


class MinuteRollups:
    """Each node's current minute, summed from every report; rows for the rollups table."""

    def __init__(self, services: ServiceIds) -> None:
        self._services = services
        self._rollups: dict[int, _Rollup] = {}

    def finished(self, minute: int) -> list[tuple[Any, ...]]:
        """Rows of the minutes before `minute`, which are forgotten here."""
        done = [self.row(rid, r) for rid, r in self._rollups.items() if r.minute < minute]
        if done:
            self._rollups = {rid: r for rid, r in self._rollups.items() if r.minute >= minute}
        return done

    def take_all(self) -> list[tuple[Any, ...]]:
        """Rows of every minute in progress (a clean stop), which are forgotten here."""
        rows = [self.row(rid, r) for rid, r in self._rollups.items()]
        self._rollups = {}
        return rows

    def add(
        self, rowid: int, minute: int, values: tuple[float, ...], names: list[str],
        latencies: list[float | None], finished: list[tuple[Any, ...]],
    ) -> None:
        r = self._rollups.get(rowid)
        if r is None or r.minute != minute:
            if r is not None:  # only when the clock stepped back: keep what we had
                finished.append(self.row(rowid, r))
            r = self._rollups[rowid] = _Rollup(minute)
        r.n += 1
        if r.n == 1:
            r.sums, r.maxes = list(values), list(values)
            if None not in latencies:
                r.names, r.lat_sums = names, latencies  # type: ignore[assignment]
                return
        else:
            r.sums = list(map(add, r.sums, values))
            # not map(max, ...): the builtin's argument handling costs 3x this comparison
            r.maxes = [m if m >= x else x for m, x in zip(r.maxes, values, strict=True)]
            if names == r.names and None not in latencies:
                r.lat_sums = list(map(add, r.lat_sums, latencies))
                return
        # Services changed within the minute, or some had no latency: count per name.
        svc = r.svc
        if r.names is not None:
            for name, total in zip(r.names, r.lat_sums, strict=True):
                svc[name] = [total, r.n - 1]
            r.names, r.lat_sums = None, []
        for name, latency in zip(names, latencies, strict=True):
            if latency is not None:
                acc = svc.get(name)
                if acc is None:
                    svc[name] = [latency, 1]
                else:
                    acc[0] += latency
                    acc[1] += 1

    def row(self, rowid: int, r: _Rollup) -> tuple[Any, ...]:
        n = r.n
        pairs: list[int] = []
        for total, mx, scale in zip(r.sums, r.maxes, SCALE, strict=True):
            pairs += (round(total / n * scale), round(mx * scale))
        names: list[str] = []
        means: list[float | None] = []
        if r.names is not None:
            names, means = list(r.names), [total / n for total in r.lat_sums]
        for name, (total, count) in r.svc.items():
            names.append(name)
            means.append(total / count)
        return (rowid, r.minute, n, *pairs, self._services.pack(names, means))


# -- written rows (writer thread) -------------------------------------------------------------


def write_minutes(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], *,
                  finished: bool) -> None:
    """Rollup rows, merged into a row of the same minute; finished minutes move
    meta.rollup_next on (where a restart rebuilds from), a clean stop's partial ones do not."""
    db.executemany(ROLLUP_SQL, rows)
    if finished:
        done = max(row[1] for row in rows) + 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('rollup_next', ?)", (str(done),))


def hourly_next(db: sqlite3.Connection) -> int | None:
    """The first hour not rolled up yet (None: none ever was)."""
    value = meta(db, "hourly_next")
    return None if value is None else int(value)


def roll_hours(db: sqlite3.Connection, now: float, nodes: int, next_hour: int | None,
               retention: float) -> int:
    """Roll the finished hours from next_hour on into hourly rows; return the first hour not
    rolled up after this pass (also stored as meta.hourly_next). At most HOURLY_ROWS_PER_PASS
    minute rows are read, so a backlog takes several passes.

    An aggregation pass over the hour's minute rows rather than hourly sums kept as the
    minutes finish: the 22 numbers are aggregated by SQLite in C, without the GIL, once an
    hour, where incremental sums would cost the event loop (or the writer, in Python) per
    node every minute; only the service latencies (msgpack) need Python. And the minute
    rows on disk are the state, so a restart or an upgrade loses nothing.
    """
    hour = int(now // 3600)  # the current hour: not finished
    floor = int((now - retention) // 3600)
    start = max(floor if next_hour is None else next_hour, floor)
    # Skip hours without minute rows (downtime, a new database): one key lookup per node.
    first = db.execute(
        "SELECT min((SELECT min(minute) FROM rollups WHERE node = nodes.id AND minute >= ?))"
        " FROM nodes", (start * 60,)
    ).fetchone()[0]
    start = hour if first is None else max(start, min(first // 60, hour))
    end = min(hour, start + max(1, HOURLY_ROWS_PER_PASS // (60 * max(nodes, 1))))
    for h in range(start, end):
        lo, hi = h * 60, h * 60 + 60
        db.execute(HOUR_SQL, (h, lo, hi))
        # Service latencies are msgpack blobs: averaged in Python, one node at a time.
        updates = [(blob, node, h) for node, group in groupby(
            db.execute(_HOUR_SVC_SQL, (lo, hi)), _FIRST)
            if (blob := mean_services(group)) is not None]
        db.executemany("UPDATE hourly SET svc = ? WHERE node = ? AND hour = ?", updates)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('hourly_next', ?)", (str(end),))
    return end


def rebuild_minutes(db: sqlite3.Connection) -> None:
    """Minutes after the last one written (meta.rollup_next) that have raw samples but
    no rollup row: the minute in progress when the daemon was killed. Rebuilt from the
    samples (fewer points than the live rollup had, the same averages and maxima)."""
    value = meta(db, "rollup_next")
    if value is None:  # a new database: from the minute this daemon starts in
        with db:
            db.execute("INSERT INTO meta VALUES ('rollup_next', ?)",
                       (str(int(time.time() // 60)),))
        return
    first = int(value)
    last = min(int(time.time() // 60) + 1, first + REBUILD_MINUTES)
    span = (first * 60 * TS_SCALE, last * 60 * TS_SCALE)
    with db:
        rebuilt = db.execute(_REBUILD_SQL, span).rowcount
        updates = [(blob, node, minute) for (node, minute), group in groupby(
            db.execute(_REBUILD_SVC_SQL, span), itemgetter(0, 1))
            if (blob := mean_services((k, 1, b) for *k, b in group)) is not None]
        db.executemany("UPDATE rollups SET svc = ? WHERE node = ? AND minute = ? "
                       "AND svc IS NULL", updates)
    if rebuilt > 0:
        log.info("rebuilt %d minute rollup(s) from raw samples", rebuilt)
