"""Service latencies in the history: the services table's ids and the svc blob of a row,
msgpack [[service id, ...], [latency in 0.1 ms, ...]], so a row does not repeat the names."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from itertools import repeat
from operator import add, itemgetter, mul
from typing import Any

import msgpack

from ctop.store.schema import LATENCY_SCALE

_N = itemgetter(1)  # of (key, n, svc blob) rollup rows
_BLOB = itemgetter(2)
_LATENCIES = itemgetter(1)  # of an unpacked svc blob
_TENTHS = repeat(LATENCY_SCALE)
_HALVES = repeat(0.5)


class ServiceIds:
    """Service name <-> id, as in the services table; new names get ids here and are written
    by whoever calls new_rows() (names first: the rows that refer to them come after)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self._of: dict[tuple[str, ...], list[int]] = {}  # service names -> their ids
        self._written = 0

    def load(self, db: sqlite3.Connection) -> None:
        for sid, name in db.execute("SELECT id, name FROM services"):
            self.ids[name] = sid
            self.names[sid] = name
        self._written = len(self.ids)

    def of(self, names: list[str]) -> list[int]:
        key = tuple(names)
        ids = self._of.get(key)
        if ids is None:
            for name in names:
                if name not in self.ids:
                    sid = self.ids[name] = max(self.names, default=0) + 1
                    self.names[sid] = name
            ids = self._of[key] = [self.ids[n] for n in names]
        return ids

    def new_rows(self) -> list[tuple[str, int]]:
        """(name, id) of the names added since the last call."""
        if len(self.ids) == self._written:
            return []
        rows = list(self.ids.items())[self._written:]
        self._written = len(self.ids)
        return rows

    def pack(self, names: list[str], latencies: list[float | None]) -> bytes | None:
        """The svc blob of the services that measured a latency (None: none did)."""
        if None in latencies:
            pairs = [(n, x) for n, x in zip(names, latencies, strict=True) if x is not None]
            names, latencies = [n for n, _ in pairs], [x for _, x in pairs]
        if not names:
            return None
        ids = self.of(names)
        # int(x + 0.5) for these non-negative values: int() is cheaper than round()
        return msgpack.packb((ids, list(map(int, map(add, map(mul, latencies, _TENTHS),
                                                     _HALVES)))))


def mean_services(rows: Iterable[tuple[Any, int, bytes]]) -> bytes | None:
    """(key, n, svc blob) rows of rollups -> one svc blob: each service's latency averaged
    over the rows, weighted by their sample count n."""
    rows = list(rows)
    unpacked = list(map(msgpack.unpackb, map(_BLOB, rows)))
    if not unpacked:
        return None
    counts = list(map(_N, rows))
    ids = unpacked[0][0]
    if all(u[0] == ids for u in unpacked):
        # the usual case, the same services all along: a C-level sum per service
        total = sum(counts)
        means = [sum(map(mul, column, counts)) / total
                 for column in zip(*map(_LATENCIES, unpacked), strict=True)]
    else:
        per_id: dict[int, list[float]] = {}
        for (sids, latencies), n in zip(unpacked, counts, strict=True):
            for sid, x in zip(sids, latencies, strict=True):
                acc = per_id.setdefault(sid, [0.0, 0])
                acc[0] += x * n
                acc[1] += n
        ids = list(per_id)
        means = [total / count for total, count in per_id.values()]
    return msgpack.packb((ids, [int(x + 0.5) for x in means]))  # 0.1 ms, as in the minutes
