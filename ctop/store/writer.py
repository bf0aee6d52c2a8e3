"""The writer thread: commits each queued batch in one transaction, so ingest never waits on
the disk, and never dies of a bad batch (row-by-row retry, "history failing since")."""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ctop import alert_history, lb_history
from ctop.store import watched
from ctop.store.rollups import CATCHUP_EVERY, hourly_next, roll_hours, write_minutes
from ctop.store.schema import COLS, SCALE, TS_SCALE

if TYPE_CHECKING:
    from ctop.store.tickrows import TickRows

log = logging.getLogger(__name__)

FAILURE_LOG_EVERY = 60.0  # seconds between log lines while history writes keep failing
QUEUE_BATCHES = 120  # ticks the disk may fall behind before history is dropped

# Errors that refuse one row, not the database: salvaged row by row (see _salvage).
_ROW_ERRORS = (OverflowError, ValueError, TypeError, sqlite3.IntegrityError,
               sqlite3.InterfaceError, sqlite3.DataError)

Batch = list[tuple[str, Any]]  # (what, rows) in the order they are written


class WriteHealth:
    """Whether history is being written, for `ctop status`, the UI header and Prometheus.

    The writer thread never dies of a bad batch: it counts it, remembers since when and why
    writes fail, and logs at most once a minute (a full disk would otherwise log every tick).
    """

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.reason = ""
        self.failed = 0  # batches (or rows) lost since the failures began
        self._logged_at = 0.0
        self._unlogged = 0

    def failure(self, reason: str, node: str = "") -> None:
        now = time.time()
        if self.failing_since is None:
            self.failing_since = now
        self.reason = f"{reason} (node {node})" if node else reason
        self.failed += 1
        self._unlogged += 1
        if now - self._logged_at >= FAILURE_LOG_EVERY:
            log.error("history write failing: %d batch(es) lost since the last message; %s",
                      self._unlogged, self.reason)
            self._logged_at, self._unlogged = now, 0

    def success(self) -> None:
        if self.failing_since is not None:
            log.warning("history writes work again after %d lost batch(es)", self.failed)
            self.failing_since, self.reason, self.failed, self._unlogged = None, "", 0, 0
            self._logged_at = 0.0

    def text(self) -> str:
        """"" while writes work, else "history failing since … (reason)"."""
        if self.failing_since is None:
            return ""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.failing_since))
        return f"history failing since {since} ({self.reason})"  # the count: in the log


def reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


class HistoryWriter(threading.Thread):
    """Owns the read-write connection once started; the event loop only calls put()."""

    def __init__(
        self, db: sqlite3.Connection, node_rowids: Mapping[str, int], *,
        raw_retention: float, minute_retention: float, hourly_retention: float,
        rows: TickRows,
    ) -> None:
        super().__init__(name="ctop-store", daemon=True)
        self.db = db
        self.rows = rows  # a tick's views -> rows, here: this thread's work, not the loop's
        self._node_rowids = node_rowids  # the Store's node id -> row id, to name a bad row
        self.raw_retention = raw_retention
        self.minute_retention = minute_retention
        self.hourly_retention = hourly_retention
        self.health = WriteHealth()
        self.write_seconds = 0.0  # time this thread spent committing, for the benchmark
        self.hourly_seconds = 0.0  # of which in hourly passes
        # Hourly passes: the event loop asks for one ("hourly" in a batch) while hourly_next
        # is behind, one at a time (hourly_pending), and not before hourly_not_before while
        # a backlog is caught up.
        self.hourly_next: int | None = hourly_next(db)
        self.hourly_pending = False
        self.hourly_not_before = 0.0
        self._hour_cut = -1  # hourly rows before this hour were pruned
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=QUEUE_BATCHES)

    def put(self, batch: Batch) -> bool:
        """Queue a batch; False if the queue is full (the disk cannot keep up)."""
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            return False
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self.flush()
        self._queue.put(None)
        self.join(timeout=10)

    def run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            started = time.thread_time()  # this thread only: the event loop runs meanwhile
            try:
                batch = self._rows_of(batch)
            except Exception as e:  # a view that makes no row: this tick's history is lost
                log.exception("history rows of a tick failed")
                self.health.failure(reason(e))
                batch = [(what, rows) for what, rows in batch
                         if what not in ("tick", "partial")]
            try:
                with self.db:
                    for what, rows in batch:
                        self._write(what, rows)
                # Only a batch that wrote something says writes work: a tick of unchanged
                # nodes has no rows, and its empty commit passes on a full disk too.
                if any(rows or type(rows) is not list for _, rows in batch):
                    self.health.success()
            except Exception as e:  # never let one batch end history for every node
                self._batch_failed(batch, e)
            if any(what == "hourly" for what, _ in batch):
                self.hourly_pending = False
            self.write_seconds += time.thread_time() - started
            self._queue.task_done()

    def _rows_of(self, batch: Batch) -> Batch:
        """The batch with each tick's views made into rows (TickRows), and a clean stop's
        minute in progress taken."""
        if not any(what in ("tick", "partial") for what, _ in batch):
            return batch
        out: Batch = []
        for what, rows in batch:
            if what == "tick":
                out += self.rows.rows(*rows)
            elif what == "partial":
                partial = self.rows.rollups.take_all()
                if partial:
                    out.append(("partial", partial))
            else:
                out.append((what, rows))
        return out

    def _batch_failed(self, batch: Batch, error: Exception) -> None:
        """A batch was rolled back: write what can be written, row by row, and say who failed.

        A row SQLite or the driver refuses (a value out of range) loses only that node's row;
        a database that cannot write at all (a full disk, a read-only file) loses the batch."""
        with contextlib.suppress(Exception):  # rolled back: the hourly marker too
            self.hourly_next = hourly_next(self.db)
        if not isinstance(error, _ROW_ERRORS):
            self.health.failure(reason(error))
            return
        try:
            bad = self._salvage(batch)
        except Exception as e:
            self.health.failure(reason(e))
            return
        if bad:
            what, row, e = bad[0]
            self.health.failure(f"{len(bad)} {what} row(s) refused: {reason(e)}",
                                self._node_of(what, row))
        else:
            self.health.success()

    def _salvage(self, batch: Batch) -> list[tuple[str, Any, Exception]]:
        bad: list[tuple[str, Any, Exception]] = []
        with self.db:
            for what, rows in batch:
                if what in ("hourly", "prune", "lb", "alerts"):  # not lists of rows
                    self._write(what, rows)
                    continue
                for row in rows:
                    try:
                        self._write(what, [row])
                    except _ROW_ERRORS as e:
                        bad.append((what, row, e))
        return bad

    def _node_of(self, what: str, row: Any) -> str:
        if what == "events":
            return str(row[2])
        rowid = row[-1] if what == "nodes" else row[0] if what in ("samples", "rollups") else None
        return next((n for n, i in self._node_rowids.items() if i == rowid), "?")

    def _write(self, what: str, rows: Any) -> None:
        db = self.db
        if what == "services":
            db.executemany("INSERT OR IGNORE INTO services (name, id) VALUES (?, ?)", rows)
        elif what == "samples":
            # round() in SQL: a whole REAL stored in an INTEGER column becomes an integer, and
            # SQLite does it in C without the GIL, where Python's round() costs ~0.1 µs a value.
            scaled = ", ".join(f"round(? * {s})" if s != 1 else "round(?)" for s in SCALE)
            db.executemany(
                f"INSERT OR REPLACE INTO samples (node, ts, {', '.join(COLS)}, svc) "
                f"VALUES (?, round(? * {TS_SCALE}), {scaled}, ?)",
                rows,
            )
        elif what == "rollups":
            write_minutes(db, rows, finished=True)
        elif what == "partial":  # a clean stop: the minute in progress, merged on restart
            write_minutes(db, rows, finished=False)
        elif what == "watched":
            watched.write(db, rows)
        elif what == "marks":
            db.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?)", rows)
        elif what == "events":
            db.executemany("INSERT INTO events (ts, kind, node, message) VALUES (?,?,?,?)", rows)
        elif what == "nodes":
            db.executemany(
                "UPDATE nodes SET hostname=?, grp=?, addresses=?, cores=?, mem_total=?, "
                "version=?, interval=?, last_seen=? WHERE id=?",
                rows,
            )
        elif what == "lb":
            lb_history.write_round(db, rows)
        elif what == "alerts":
            db.execute("INSERT OR REPLACE INTO alert_states VALUES (?, ?)", rows)
        elif what == "hourly":
            started = time.thread_time()
            now, nodes = rows
            self.hourly_next = roll_hours(db, now, nodes, self.hourly_next,
                                                  self.hourly_retention)
            if self.hourly_next < int(now // 3600):
                self.hourly_not_before = now + CATCHUP_EVERY
            self.hourly_seconds += time.thread_time() - started
        elif what == "prune":
            self._prune(*rows)

    def _prune(self, now: float, nodes: list[int]) -> None:
        # Per node: rows are clustered by (node, time), so each DELETE is one short range
        # at the start of a node's rows, where "ts < ?" alone would scan the whole table.
        db = self.db
        raw_cut = round((now - self.raw_retention) * TS_SCALE)
        db.executemany("DELETE FROM samples WHERE node = ? AND ts < ?",
                       [(n, raw_cut) for n in nodes])
        if self.hourly_next is not None:  # never a minute whose hour is not rolled up
            minute_cut = min(int((now - self.minute_retention) // 60), self.hourly_next * 60)
            db.executemany("DELETE FROM rollups WHERE node = ? AND minute < ?",
                           [(n, minute_cut) for n in nodes])
        hour_cut = int((now - self.hourly_retention) // 3600)
        if hour_cut != self._hour_cut:  # hourly rows expire once an hour
            self._hour_cut = hour_cut
            db.executemany("DELETE FROM hourly WHERE node = ? AND hour < ?",
                           [(n, hour_cut) for n in nodes])
        # events go with the longest history, and so do replay marks of nodes long gone
        db.execute("DELETE FROM events WHERE ts < ?", (now - self.hourly_retention,))
        db.execute("DELETE FROM marks WHERE at < ?", (now - self.hourly_retention,))
        lb_history.prune(db, now, self.raw_retention, self.minute_retention,
                         self.hourly_retention)
        alert_history.prune(db, now - self.hourly_retention)
        watched.prune(db, now - self.hourly_retention)
