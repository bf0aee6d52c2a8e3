"""History at scale: an optional VictoriaMetrics sink and reader (`[history] victoria_url`).

SQLite stays the history of record; with `victoria_url` set, the engine also sends every
sample it stores to VictoriaMetrics' import API and the node detail's charts read from there.
Names are Prometheus-style, from the metric registry (agentd/metrics.py): a metric's
`prometheus` name, else `ctop_node_<column>`; labels `cluster` and `node`. Values are rounded to
the registry's scale exactly as SQLite stores them, so a chart is the same from either.

The sink never holds the engine's tick up: `offer()` queues the tick's samples (a bounded
queue: when VictoriaMetrics is slow or down, the oldest batches are dropped and counted, SQLite
keeps them), and the thread "ctop-victoria" posts them as JSON lines.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import httpx

from ctop.snapshot import NodeView
from ctop.store.history import auto_raw_every
from ctop.store.schema import _STORED, METRIC_COLUMNS, MINUTE_RETENTION, SCALES, sample_values

log = logging.getLogger(__name__)

RAW_SPAN = 6 * 3600.0  # charts up to this span read raw samples (as the SQLite reader does)
QUEUE = 120  # ticks of samples kept while VictoriaMetrics does not answer


def series_name(metric: str) -> str:
    """The VictoriaMetrics name of a readable metric name (METRIC_COLUMNS)."""
    m = next(m for m in _STORED if m.name == metric)
    return m.prometheus or f"ctop_node_{m.column}"


_NAMES = tuple(series_name(m.name) for m in _STORED)
_SCALES = tuple(SCALES[m.column] for m in _STORED)


def _stored(value: float, scale: int) -> float:
    """A value as SQLite keeps it: round(value * scale), read back / scale."""
    return round(value * scale) / scale if scale != 1 else float(round(value))


class VictoriaSink:
    """Posts the engine's samples to `<url>/api/v1/import` (see the module doc)."""

    def __init__(self, url: str, cluster: str, *, raw_every: float = 0.0,
                 timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.cluster = cluster
        self.raw_every = raw_every  # [store] raw_every: the same samples as SQLite keeps
        self._client = httpx.Client(timeout=timeout)
        self._queue: deque[bytes] = deque(maxlen=QUEUE)
        self._seen: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0  # batches lost to a full queue
        self.error = ""  # the last failure, "" after a success
        self._thread = threading.Thread(target=self._run, name="ctop-victoria", daemon=True)
        self._thread.start()

    def offer(self, views: Sequence[NodeView]) -> None:
        """The tick's nodes: the raw samples SQLite keeps (at most one per node every
        raw_every, the store's rule), queued."""
        lines = []
        seen = self._seen
        gap = (self.raw_every or auto_raw_every(len(views))) * 0.9
        for v in views:
            if not v.metrics or v.last_seen - seen.get(v.node_id, 0.0) < gap:
                continue
            seen[v.node_id] = v.last_seen
            ts = round(v.last_seen * 1000)
            for name, scale, value in zip(_NAMES, _SCALES, sample_values(v), strict=True):
                if value is None:
                    continue
                lines.append(json.dumps({
                    "metric": {"__name__": name, "cluster": self.cluster, "node": v.node_id},
                    "values": [_stored(value, scale)], "timestamps": [ts]}))
        if lines:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(("\n".join(lines) + "\n").encode())
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued batch is posted (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        return not self._queue

    def close(self) -> None:
        self.flush(timeout=2.0)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            while self._queue and not self._stop.is_set():
                body = self._queue[0]
                try:
                    r = self._client.post(f"{self.url}/api/v1/import", content=body)
                    r.raise_for_status()
                except httpx.HTTPError as e:
                    self.error = f"VictoriaMetrics {self.url}: {e}"
                    log.warning("history: %s", self.error)
                    self._stop.wait(1.0)  # retried with the next wake; SQLite has it meanwhile
                    break
                self.error = ""
                if self._queue and self._queue[0] is body:
                    self._queue.popleft()


class VictoriaReader:
    """The node detail's charts from VictoriaMetrics: raw samples through `/api/v1/export` up
    to RAW_SPAN (the points SQLite would give), 1-minute averages through `/api/v1/query_range`
    beyond."""

    def __init__(self, url: str, cluster: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.cluster = cluster
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def history(self, node: str, metrics: Sequence[str], seconds: float,
                now: float | None = None, *, cluster: str | None = None
                ) -> dict[str, list[tuple[float, float]]]:
        """`cluster`: the node's, when the reader serves many (a NATS view)."""
        now = time.time() if now is None else now
        cluster = self.cluster if cluster is None else cluster
        out: dict[str, list[tuple[float, float]]] = {m: [] for m in metrics}
        for m in metrics:
            if m not in METRIC_COLUMNS:
                continue  # service latencies and LB shares: SQLite only (docs/scaling.md)
            selector = (f'{series_name(m)}{{cluster="{_quote(cluster)}",'
                        f'node="{_quote(node)}"}}')
            try:
                out[m] = (self._raw(selector, now - seconds, now) if seconds <= RAW_SPAN
                          else self._averaged(selector, now - seconds, now, _scale(m),
                                              60 if seconds <= MINUTE_RETENTION else 3600))
            except (httpx.HTTPError, ValueError, KeyError) as e:
                log.warning("history from VictoriaMetrics %s: %s", self.url, e)
        return out

    def _raw(self, selector: str, start: float, end: float) -> list[tuple[float, float]]:
        r = self._client.get(f"{self.url}/api/v1/export",
                             params={"match[]": selector, "start": f"{start:.3f}",
                                     "end": f"{end:.3f}"})
        r.raise_for_status()
        points: list[tuple[float, float]] = []
        for line in r.text.splitlines():
            if line.strip():
                row: dict[str, Any] = json.loads(line)
                points += [(t / 1000, float(v))
                           for t, v in zip(row["timestamps"], row["values"], strict=True)]
        return sorted(points)

    def _averaged(self, selector: str, start: float, end: float, scale: int, step: int
                  ) -> list[tuple[float, float]]:
        """SQLite's minute rollups (step 60; hourly past their retention, step 3600): a point
        per minute with samples, at the minute's start, the average of [start, start + 60 s)
        rounded to the metric's scale. query_range's window at t is (t - step, t]: shifted
        step - 1 ms later it is that minute (hour), to the millisecond."""
        first = start // step * step
        r = self._client.get(f"{self.url}/api/v1/query_range",
                             params={"query": f"avg_over_time({selector}[{step}s] "
                                              f"offset -{step * 1000 - 1}ms)",
                                     "start": f"{first:.0f}", "end": f"{end:.3f}",
                                     "step": f"{step}s", "nocache": "1"})
        r.raise_for_status()
        result = r.json()["data"]["result"]
        return ([(float(t), _stored(float(v), scale)) for t, v in result[0]["values"]]
                if result else [])


def _scale(metric: str) -> int:
    return SCALES[METRIC_COLUMNS[metric]]


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
