"""A tick's fresh node views -> the history's rows: raw samples, the minute rollups, watched
processes and new service names. Runs on the writer thread (ctop.store.writer): the engine's
thread only picks the views that are new since the last stored row of their node
(Store.record_tick) and hands them over as they are, immutable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

from ctop.snapshot import NodeView
from ctop.store import watched
from ctop.store.rollups import MinuteRollups
from ctop.store.schema import sample_values
from ctop.store.services import ServiceIds

_NAME = attrgetter("name")
_LATENCY = attrgetter("latency_ms")


class TickRows:
    """What the history keeps between ticks to make rows: each node's minute in progress,
    when its last raw sample was kept, its last watched value, the services' ids."""

    def __init__(self, services: ServiceIds, ids: Mapping[str, int]) -> None:
        self.services = services
        self.rollups = MinuteRollups(services)
        self._ids = ids  # the Store's node id -> row id (new nodes are added before a tick)
        self._watched = watched.WatchedChanges()
        self._last_raw: dict[str, float] = {}

    def rows(
        self, minute: int, raw_gap: float, views: Sequence[NodeView]
    ) -> list[tuple[str, Any]]:
        """The batch entries of one tick's fresh views, in the order they are written."""
        samples = []
        ids = self._ids
        last_raw = self._last_raw
        pack = self.services.pack
        # Minutes that ended go out first, in this tick's batch: at a minute boundary that is
        # one row per node, which must not become one queue entry per node.
        rollups = self.rollups.finished(minute)
        add_rollup = self.rollups.add
        watched_rows = []
        watched_of = self._watched.rows
        for v in views:
            node = v.node_id
            rowid = ids[node]
            values = sample_values(v)
            names = list(map(_NAME, v.services))
            latencies = list(map(_LATENCY, v.services))
            add_rollup(rowid, minute, values, names, latencies, rollups)
            w = v.metrics.get("watched")
            if w:
                watched_rows += watched_of(node, v.last_seen, w)
            if v.last_seen - last_raw.get(node, 0.0) >= raw_gap:
                last_raw[node] = v.last_seen
                # scaled to integers by SQLite in the writer thread (see HistoryWriter._write)
                samples.append((rowid, v.last_seen, *values, pack(names, latencies)))
        batch: list[tuple[str, Any]] = []
        new_services = self.services.new_rows()
        if new_services:  # names first: the samples refer to them
            batch.append(("services", new_services))
        if samples:
            batch.append(("samples", samples))
        if rollups:
            batch.append(("rollups", rollups))
        if watched_rows:
            batch.append(("watched", watched_rows))
        return batch
