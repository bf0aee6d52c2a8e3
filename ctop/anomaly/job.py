"""The periodic anomaly job: every `every` seconds, off the engine's hot path.

The SQL and the arithmetic run in a worker thread (asyncio.to_thread) on a read-only
connection to the history database, so the event loop only hands over the latest snapshot
and takes back the breaches; alert state, events and hook notifications stay on the loop.
A failing evaluation (a locked or missing database, a bug) is logged and retried at the next
period: it never stops the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ctop.alerts import Notification
from ctop.anomaly.baseline import Baselines, current_values
from ctop.anomaly.config import AnomalyConfig
from ctop.anomaly.groups import cost_outliers
from ctop.anomaly.levels import AnomalyAlerts, Breach, escalate
from ctop.snapshot import AlertView, EventView, LBServiceView, NodeView, Snapshot
from ctop.store.schema import connect_readonly

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evaluation:
    breaches: dict[str, Breach]
    seconds: float  # what the evaluation cost (the worker thread's wall time)
    baseline_built: bool


class AnomalyDetector:
    """Node baselines from the store at `path` plus the group and service levels."""

    def __init__(self, cfg: AnomalyConfig, path: str) -> None:
        self.cfg = cfg
        self.path = path
        self.baselines = Baselines(cfg)
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            with contextlib.suppress(sqlite3.OperationalError):  # no database yet
                self._db = connect_readonly(self.path)
        return self._db

    def evaluate(self, now: float, nodes: Iterable[NodeView],
                 lb: Iterable[LBServiceView]) -> Evaluation:
        start = time.perf_counter()
        nodes, lb = tuple(nodes), tuple(lb)
        built = False
        anomalies = []
        db = self._conn()
        if db is not None:
            hour = int(now // 3600)
            if self.baselines.hour != hour:  # baselines change only with the hour
                self.baselines.build(db, hour)
                built = True
            anomalies = self.baselines.score(current_values(db, self.cfg, now))
        outliers = cost_outliers(nodes, lb, self.cfg)
        breaches = escalate(anomalies, outliers, nodes, lb, self.cfg)
        return Evaluation(breaches, time.perf_counter() - start, built)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class AnomalyJob:
    """Runs the detector every cfg.every seconds on the engine's latest snapshot."""

    def __init__(self, cfg: AnomalyConfig, path: str, cluster: str,
                 on_events: Callable[[list[EventView], list[Notification]], None]) -> None:
        self.cfg = cfg
        self.detector = AnomalyDetector(cfg, path)
        self.alerts = AnomalyAlerts(cluster)
        self.on_events = on_events
        self.last: Evaluation | None = None

    def firing(self) -> tuple[AlertView, ...]:
        return self.alerts.firing()

    async def run_once(self, snap: Snapshot, now: float | None = None) -> None:
        now = time.time() if now is None else now
        try:
            ev = await asyncio.to_thread(self.detector.evaluate, now, snap.nodes, snap.lb)
        except Exception:  # the next period tries again; the engine goes on
            log.exception("anomaly evaluation failed")
            return
        self.last = ev
        self.on_events(*self.alerts.update(ev.breaches, now))

    async def run(self, snapshot: Callable[[], Snapshot]) -> None:
        while True:
            await asyncio.sleep(self.cfg.every)
            await self.run_once(snapshot())

    def close(self) -> None:
        self.detector.close()
