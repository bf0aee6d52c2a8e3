"""Reading the history: charts, events and replay marks. A StoreReader cannot write: its
connection is read-only and it creates nothing, so `ctop` attached to a daemon (or any other
caller that only reads) never touches the daemon's database."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import msgpack

from ctop import lb_history
from ctop.snapshot import EventView
from ctop.store.rollups import hour_avg
from ctop.store.schema import (
    LATENCY_SCALE,
    METRIC_COLUMNS,
    MINUTE_RETENTION,
    TS_SCALE,
    connect_readonly,
    meta,
    unscaled,
)
from ctop.store.services import mean_services

RAW_SPAN = 6 * 3600.0  # history() reads raw samples for spans up to this
_FIRST = itemgetter(0)


class StoreReader:
    """Reads the history database at `path`, which may not exist yet (the daemon makes it).

    minute_retention: the longest span charts read from minute rollups; None reads the
    daemon's (meta.minute_retention), for readers in other processes.
    """

    def __init__(self, path: str, *, minute_retention: float | None = None) -> None:
        self.path = path
        self._minute_retention = minute_retention
        self._db: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}  # node id -> row id
        self._svc_ids: dict[str, int] = {}  # service name -> id in the services table
        self._load_ids()

    def _conn(self) -> sqlite3.Connection | None:
        """The read-only connection; None while the file does not exist."""
        if self._db is None:
            with contextlib.suppress(sqlite3.OperationalError):  # no file yet
                self._db = connect_readonly(self.path)
        return self._db

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Rows, or none while the database or its schema does not exist yet."""
        db = self._conn()
        if db is None:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise

    def _load_ids(self) -> None:
        self._ids.update(self._query("SELECT node_id, id FROM nodes"))
        self._svc_ids.update(self._query("SELECT name, id FROM services"))

    def history(
        self, node: str, metrics: Sequence[str], seconds: float, now: float | None = None
    ) -> dict[str, list[tuple[float, float]]]:
        """Points (time, value) per metric for one node over the last `seconds`.

        Up to 6 hours come from raw samples, spans up to the minute retention from the 1-minute
        rollups (avg), longer ones from the hourly rollups (avg; the hours not rolled up yet
        are averaged from their minute rows on the fly). A rollup point's time is the start of
        its minute or hour. Metric names are those of METRIC_COLUMNS, or "svc:<name>" for a
        service's latency.
        """
        now = time.time() if now is None else now
        rowid = self._ids.get(node)
        if rowid is None:
            self._load_ids()  # nodes registered since (by the daemon)
            rowid = self._ids.get(node)
        out: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
        lb = [m for m in metrics if m.startswith(lb_history.PREFIX)]
        db = self._conn()
        if lb and db is not None:  # real servers' shares (node detail): the LB history's tables
            with contextlib.suppress(sqlite3.OperationalError):  # no schema yet
                out.update(lb_history.series(db, lb, seconds, now, RAW_SPAN, self.minute_span()))
        if rowid is None:
            return out
        since = now - seconds
        plain = [m for m in metrics if m in METRIC_COLUMNS]
        services = [m[4:] for m in metrics if m.startswith("svc:")]
        if services and any(name not in self._svc_ids for name in services):
            self._load_ids()  # services named since (by the daemon)
        wanted = {self._svc_ids[n]: f"svc:{n}" for n in services if n in self._svc_ids}
        if seconds <= RAW_SPAN:
            cols = ", ".join(unscaled(METRIC_COLUMNS[m]) for m in plain) or "NULL"
            rows = self._query(
                f"SELECT ts / {float(TS_SCALE)}, svc, {cols} FROM samples "
                "WHERE node = ? AND ts >= ? ORDER BY ts",
                (rowid, round(since * TS_SCALE)),
            )
        elif seconds <= self.minute_span():
            cols = ", ".join(unscaled(f"{METRIC_COLUMNS[m]}_avg", METRIC_COLUMNS[m])
                             for m in plain) or "NULL"
            rows = self._query(
                f"SELECT minute * 60, svc, {cols} FROM rollups "
                "WHERE node = ? AND minute >= ? ORDER BY minute",
                (rowid, int(since // 60)),
            )
        else:
            rows = self._hourly_rows(rowid, [METRIC_COLUMNS[m] for m in plain],
                                     int(since // 3600), bool(wanted))
        columns = [out[m] for m in plain]
        for row in rows:
            ts = row[0]
            for i, points in enumerate(columns, start=2):
                if row[i] is not None:  # a metric's column is younger than the row
                    points.append((ts, row[i]))
            if wanted and row[1]:
                sids, latencies = msgpack.unpackb(row[1])
                for sid, latency in zip(sids, latencies, strict=True):
                    name = wanted.get(sid)
                    if name is not None:
                        out[name].append((ts, latency / LATENCY_SCALE))
        return out

    def minute_span(self) -> float:
        """The longest span history() reads from minute rollups: the minute retention (the
        daemon's, from meta, unless given)."""
        if self._minute_retention is not None:
            return self._minute_retention
        db = self._conn()
        value = None
        if db is not None:
            with contextlib.suppress(sqlite3.OperationalError):  # no schema yet
                value = meta(db, "minute_retention")
        return MINUTE_RETENTION if value is None else float(value)

    def _hourly_rows(
        self, rowid: int, columns: list[str], since_hour: int, services: bool
    ) -> list[tuple[Any, ...]]:
        """(time, svc, column values...) per hour from since_hour on, as history() reads."""
        cols = ", ".join(unscaled(f"{c}_avg", c) for c in columns) or "NULL"
        rows = self._query(
            f"SELECT hour * 3600, svc, {cols} FROM hourly "
            "WHERE node = ? AND hour >= ? ORDER BY hour",
            (rowid, since_hour),
        )
        # The hours the writer has not rolled up yet (the current one; a backlog after an
        # upgrade): the same averages from the minute rows, so a chart reaches the present.
        tail_from = (rows[-1][0] // 3600 + 1 if rows else since_hour) * 60
        cols = ", ".join(unscaled(hour_avg(c), c) for c in columns) or "NULL"
        tail = self._query(
            f"SELECT minute / 60 * 3600, NULL, {cols} FROM rollups "
            "WHERE node = ? AND minute >= ? GROUP BY minute / 60 ORDER BY 1",
            (rowid, tail_from),
        )
        if tail and services:
            blobs = {hour: mean_services(group) for hour, group in groupby(
                self._query(
                    "SELECT minute / 60, n, svc FROM rollups "
                    "WHERE node = ? AND minute >= ? AND svc IS NOT NULL ORDER BY minute",
                    (rowid, tail_from)),
                _FIRST)}
            tail = [(ts, blobs.get(ts // 3600), *values) for ts, _, *values in tail]
        return rows + tail

    def events(self, node: str | None = None, limit: int = 100) -> list[EventView]:
        if node is None:
            rows = self._query(
                "SELECT ts, kind, node, message FROM events ORDER BY ts DESC, id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._query(
                "SELECT ts, kind, node, message FROM events WHERE node = ? "
                "ORDER BY ts DESC, id DESC LIMIT ?",
                (node, limit),
            )
        return [EventView(*r) for r in reversed(rows)]

    def load_marks(self) -> list[tuple[str, int, float, int, float]]:
        """Replay high-water marks (node, boot, boot_ts, seq, at)."""
        return self._query("SELECT node, boot, boot_ts, seq, at FROM marks")

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
