"""The daemon's history: what one tick adds, queued on the event loop and written by the
writer thread; reads go through a StoreReader.

Writes are batched: the engine hands one batch per tick to the writer thread, which commits it
in one transaction, so ingest never waits on the disk. Reads use their own read-only
connection; WAL mode lets them run while the writer commits.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import is_not

from ctop import alert_history, lb_history
from ctop.filemodes import private_database
from ctop.snapshot import AlertView, EventView, NodeView
from ctop.store.reader import StoreReader
from ctop.store.rollups import rebuild_minutes
from ctop.store.schema import (
    HOURLY_RETENTION,
    MINUTE_RETENTION,
    RAW_RETENTION,
    connect,
    migrate,
)
from ctop.store.services import ServiceIds
from ctop.store.tickrows import TickRows
from ctop.store.writer import Batch, HistoryWriter, WriteHealth, reason

PRUNE_EVERY = 600.0  # seconds between retention passes


def auto_raw_every(nodes: int) -> float:
    """Raw sample spacing by cluster size: at 10,000 nodes 1 s samples cost ~78 GB a day
    (docs/performance.md); charts beyond 6 h read the rollups anyway."""
    return 1.0 if nodes <= 1000 else 5.0 if nodes <= 5000 else 10.0


class Store:
    """The history database of `ctop serve`: opens (and migrates) it, and writes. Only the
    daemon makes one; callers that only read use a StoreReader.

    `record_tick()` is called on the event loop and only queues."""

    def __init__(
        self,
        path: str,
        *,
        raw_retention: float = RAW_RETENTION,
        minute_retention: float = MINUTE_RETENTION,
        hourly_retention: float = HOURLY_RETENTION,
        raw_every: float = 0.0,
        group: int | None = None,
    ) -> None:
        self.path = path
        private_database(path, group)  # 0640 before SQLite creates it (ctop.filemodes)
        self.raw_retention = raw_retention
        self.hourly_retention = hourly_retention
        # keep nothing longer than asked for: minutes never outlive their hours
        self.minute_retention = min(minute_retention, hourly_retention)
        self.raw_every = raw_every  # seconds between stored raw samples of one node (0: auto)
        db = connect(path)
        migrate(db)
        with db:  # readers in other processes pick the chart level by it
            db.execute("INSERT OR REPLACE INTO meta VALUES ('minute_retention', ?)",
                       (repr(self.minute_retention),))
        rebuild_minutes(db)
        self._ids: dict[str, int] = dict(db.execute("SELECT node_id, id FROM nodes"))
        services = ServiceIds()
        services.load(db)
        self._seen: dict[str, float] = {}  # last_seen already recorded, per node
        self._views: Sequence[NodeView] = ()  # the views of the last tick, in their order
        self._tick_minute = -1  # the minute of the last tick handed to the writer
        self._last_prune = 0.0
        self.dropped_batches = 0
        self._writer = HistoryWriter(
            db, self._ids, raw_retention=raw_retention,
            minute_retention=self.minute_retention, hourly_retention=hourly_retention,
            rows=TickRows(services, self._ids))
        self._writer.start()
        self.reader = StoreReader(path, minute_retention=self.minute_retention)

    @property
    def db(self) -> sqlite3.Connection:
        """The writer's connection (benchmarks: checkpoints, counts)."""
        return self._writer.db

    @property
    def health(self) -> WriteHealth:
        return self._writer.health

    @property
    def write_seconds(self) -> float:
        """CPU time the writer thread spent committing (benchmarks)."""
        return self._writer.write_seconds

    @property
    def hourly_seconds(self) -> float:
        """Of which in hourly passes."""
        return self._writer.hourly_seconds

    # -- writing (event loop side) ---------------------------------------------------------

    def node_ids(self, nodes: Iterable[str]) -> bool:
        """Create rows for nodes not seen before, in one transaction (10,000 at start-up).
        False if the database refused (e.g. a full disk): those nodes wait for a later tick."""
        new = [n for n in nodes if n not in self._ids]
        if not new:
            return True
        try:
            self._insert_nodes(new)
        except sqlite3.Error as e:
            self.health.failure(reason(e))
            return False
        return True

    def _insert_nodes(self, new: list[str]) -> None:
        db = self.db
        with db:
            db.executemany(
                "INSERT OR IGNORE INTO nodes (node_id, first_seen) VALUES (?, ?)",
                [(n, time.time()) for n in new],
            )
            marks = ",".join("?" * len(new))
            made = dict(db.execute(
                f"SELECT node_id, id FROM nodes WHERE node_id IN ({marks})", new
            ).fetchall())
        # Only once committed: a commit refused (a full disk) rolls the rows back, and ids
        # kept from before it would file samples under rows that do not exist, whose rowid
        # a later node may be given.
        self._ids.update(made)

    def record_tick(
        self, now: float, views: Sequence[NodeView], events: Iterable[EventView]
    ) -> None:
        """Queue this tick's samples, rollups and events for one transaction.

        Only the views that are new since the last row stored for their node are looked at,
        and handed to the writer thread as they are (immutable), which makes the rows
        (ctop.store.tickrows): an unchanged node keeps its very view object from tick to tick,
        so it costs one identity comparison here, in C."""
        batch: Batch = []
        minute = int(now // 60)
        seen = self._seen
        last = self._views
        if len(last) == len(views):
            changed: Iterable[NodeView] = compress(views, map(is_not, views, last))
        else:
            changed = views
        self._views = views if isinstance(views, tuple) else tuple(views)  # a list may change
        fresh = [v for v in changed if v.metrics and seen.get(v.node_id) != v.last_seen]
        ids = self._ids
        if fresh and not self.node_ids(v.node_id for v in fresh):
            fresh = [v for v in fresh if v.node_id in ids]
            # The refused nodes' views may never change again (a node that only beacons, or
            # died): the next tick looks at every view, and `seen` skips those stored.
            self._views = ()
        for v in fresh:
            seen[v.node_id] = v.last_seen
        if fresh or minute != self._tick_minute:  # (a new minute: the ended one is written)
            self._tick_minute = minute
            raw_gap = (self.raw_every or auto_raw_every(len(views))) * 0.9
            batch.append(("tick", (minute, raw_gap, fresh)))
        evs = [(e.ts, e.kind, e.node_id, e.message) for e in events]
        if evs:
            batch.append(("events", evs))
        # After the tick's rollups: the first tick of an hour carries the last minute of the
        # previous one, which the writer then rolls up. Asked for again while it is behind.
        writer = self._writer
        hourly = (not writer.hourly_pending and now >= writer.hourly_not_before
                  and (writer.hourly_next is None or writer.hourly_next < minute // 60))
        if hourly:
            writer.hourly_pending = True
            batch.append(("hourly", (now, len(ids))))
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            batch.append(("prune", (now, list(ids.values()))))
        if batch and not self._put(batch) and hourly:
            writer.hourly_pending = False  # dropped: ask again next tick

    def record_nodes(self, views: Iterable[NodeView]) -> None:
        """Update the static facts of nodes (joins, groups); cheap, call on change only."""
        views = list(views)
        self.node_ids(v.node_id for v in views)
        rows = [
            (v.hostname, v.group, json.dumps(v.addresses), v.cores, v.mem_total, v.version,
             v.interval, v.last_seen, self._ids[v.node_id])
            for v in views if v.node_id in self._ids
        ]
        if rows:
            self._put([("nodes", rows)])

    def record_marks(self, marks: Sequence[tuple[str, int, float, int, float]]) -> None:
        """Queue replay high-water marks (node, boot, boot_ts, seq, at) for the writer."""
        if marks:
            self._put([("marks", list(marks))])

    def record_lb(self, lb_round: lb_history.LBRound) -> None:
        """Queue one load-balancer round (any thread: the engine's LB worker)."""
        self._put([("lb", lb_round)])

    def record_alerts(self, ts: float, firing: Sequence[AlertView]) -> None:
        """Queue the alerts firing from `ts` on (after a change)."""
        self._put([("alerts", (ts, alert_history.pack(firing)))])

    def record_events(self, events: Iterable[EventView]) -> None:
        evs = [(e.ts, e.kind, e.node_id, e.message) for e in events]
        if evs:
            self._put([("events", evs)])

    def _put(self, batch: Batch) -> bool:
        if self._writer.put(batch):
            return True
        self.dropped_batches += 1  # the disk cannot keep up: lose history, never stall ingest
        return False

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        self._writer.flush(timeout)

    def close(self) -> None:
        if self._writer.is_alive():
            # the minute in progress: written now, completed by the next start's rollup
            self._put([("partial", None)])  # (the writer thread holds it)
            self._writer.stop()
        self.reader.close()
        self.db.close()  # the last connection: checkpoints and removes the WAL

    # -- reading ---------------------------------------------------------------------------

    def history(
        self, node: str, metrics: Sequence[str], seconds: float, now: float | None = None
    ) -> dict[str, list[tuple[float, float]]]:
        """StoreReader.history()."""
        return self.reader.history(node, metrics, seconds, now)

    def events(self, node: str | None = None, limit: int = 100) -> list[EventView]:
        return self.reader.events(node, limit)

    def load_marks(self) -> list[tuple[str, int, float, int, float]]:
        return self.reader.load_marks()

    def size_bytes(self) -> int:
        return self.reader.size_bytes()
