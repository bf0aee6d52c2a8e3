"""History store: what 10,000 nodes reporting once a second cost the director.

Feeds `ctop.store.Store.record_tick(now, views, events)` with realistic `NodeView`s (changing
values, 7 services) for `--minutes` simulated minutes, `now` advancing one second per tick as
fast as the writer keeps up (synthetic time: a 3-minute run takes seconds, not minutes). CPU is
measured per thread, so the figures hold for real time: writer CPU seconds per simulated second
(`Store.write_seconds`) is the writer thread's share of one core, and the CPU spent inside
`record_tick` on the calling thread is the event loop's share.

Before the measured run, a few query nodes get 30 days of history (one sample every 5 minutes
up to the last day, one a minute in it, so 48 h of 1-minute rollups and 30 days of hourly ones)
and a full last hour at one sample a second; after it, the chart queries are timed for one of
them: `Store.history(node, 6 metrics, span)` over 1 h (raw samples), 24 h (1-minute rollups),
7 and 30 days (hourly rollups), median of several runs. Database growth per hour is
extrapolated from the bytes the measured run added, with the WAL checkpointed (TRUNCATE)
before each measurement.

Growth per day of each level at --nodes: bytes per row of each table (SQLite `dbstat`, pages
the rows added took, so B-tree slack is included) times the rows a day brings (raw: nodes x
86,400 / raw_every, minute: nodes x 1,440, hourly: nodes x 24). For the hourly level the
measured minutes are copied (in SQL) to fill their hour and the two after, and the writer's
hourly pass runs over each through `record_tick` as in production: its writer CPU time for a
full hour of every node's minute rows is printed too, and the wall time of that tick's batch
(which also holds a retention pass).

The same run measures a baseline: sample rows as the store writes them (scaled integers and
packed service latencies), built and inserted with a bare `executemany` into a plain rowid
table without any index, one transaction per tick, so the writer's figures are also ratios.
raw_every = 1 s and 5 s are compared.

    .venv/bin/python bench/store.py [--minutes 3] [--nodes 10000] [--raw-every 1,5]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from msgpack import packb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctop import store as store_mod
from ctop.snapshot import Liveness, NodeView, ServiceView
from ctop.store import HOURLY_RETENTION, MINUTE_RETENTION, RAW_RETENTION, Store

DAY = 86_400

SERVICES = ("http", "https", "smtp", "dns", "ftp", "ssh", "pop3")
CHART = ["cpu_percent", "mem_percent", "net_rx_bps", "net_tx_bps", "tcp_established", "svc:http"]
T0 = 1_800_000_000.0  # a minute boundary; synthetic time starts here
QUERY_NODES = 3


class Fleet:
    """NodeViews for N nodes whose values drift from tick to tick."""

    def __init__(self, nodes: int, seed: int = 4) -> None:
        self.rng = random.Random(seed)
        self.ids = [f"node-{i:05d}.dc1.example.com" for i in range(nodes)]
        self.cpu = [self.rng.uniform(5, 80) for _ in range(nodes)]
        self.conns = [self.rng.randint(100, 50_000) for _ in range(nodes)]
        # Service results: latencies in 0.1 ms steps as the wire carries them; a pool of
        # combinations is as good as fresh ones for the store and keeps the feed cheap.
        self.services = [
            tuple(ServiceView(name, "ok" if self.rng.random() > 0.01 else "fail",
                              round(self.rng.uniform(0.2, 40), 1)) for name in SERVICES)
            for _ in range(509)
        ]
        self.metrics = [{"procs": 300 + i % 500, "threads": 2000 + i % 7000, "users": i % 4}
                        for i in range(97)]

    def views(self, now: float, which: range | None = None) -> list[NodeView]:
        r = self.rng.random
        out = []
        for i in which if which is not None else range(len(self.ids)):
            cpu = self.cpu[i] = min(100.0, max(0.0, self.cpu[i] + (r() - 0.5) * 4))
            conns = self.conns[i] = max(0, self.conns[i] + int((r() - 0.5) * 200))
            rx = int(conns * 9_000 * (0.5 + r()))
            out.append(NodeView(
                self.ids[i], self.ids[i], f"rack-{i // 250:02d}", Liveness.ALIVE, now,
                7, 1.0, (), 16, 64 << 30, "1.0",
                round(cpu, 1), round(40 + cpu / 2, 1), 0.5, round(cpu / 6.25, 2),
                rx, rx // 3, conns, 0, 0, 0, 63.5,
                (), self.services[(i * 7 + int(now)) % len(self.services)], 0.0, 0,
                self.metrics[i % len(self.metrics)],
            ))
        return out


def checkpointed_size(store: Store) -> int:
    store.flush(timeout=600)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store.size_bytes()


def table_bytes(store: Store) -> dict[str, tuple[int, int]]:
    """(rows, bytes of pages) per history table."""
    db = store_mod.connect(store.path)
    try:
        out = {}
        for table in ("samples", "rollups", "hourly"):
            rows = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            size = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?",
                              (table,)).fetchone()[0] or 0
            out[table] = (rows, size)
        return out
    finally:
        db.close()


def per_row(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
            table: str) -> float:
    rows = after[table][0] - before[table][0]
    return (after[table][1] - before[table][1]) / rows if rows else float("nan")


def fill_hours(store: Store, first_minute: int, minutes: int, hours: int) -> None:
    """Copy the measured minute rows (first_minute, +minutes) over the rest of their hour and
    the `hours` - 1 hours after, as if every node had reported all that time."""
    db = store_mod.connect(store.path)
    end = first_minute // 60 * 60 + 60 * hours
    columns = ", ".join(f"r.{c}_avg, r.{c}_max" for c in store_mod.METRIC_COLUMNS.values())
    with db:
        for shift in range(minutes, end - first_minute, minutes):
            db.execute(
                f"INSERT OR IGNORE INTO rollups SELECT r.node, r.minute + ?, r.n, {columns}, "
                "r.svc FROM nodes CROSS JOIN rollups AS r WHERE r.node = nodes.id "
                "AND r.minute >= ? AND r.minute < ?",
                (shift, first_minute, min(first_minute + minutes, end - shift)),
            )
    db.close()


def ticks(start: float, stop: float, step: float) -> Iterator[float]:
    t = start
    while t < stop:
        yield t
        t += step


def run_store(path: str, nodes: int, minutes: float, raw_every: float) -> dict[str, float]:
    fleet = Fleet(nodes)
    store = Store(path, raw_every=raw_every)
    queried = range(QUERY_NODES)
    # History of the query nodes: 29 days at one sample every 5 minutes, 23 h at one a minute,
    # then the last hour at 1 Hz.
    for i, now in enumerate([*ticks(T0 - 30 * DAY, T0 - DAY, 300), *ticks(T0 - DAY, T0 - 3600,
                                                                              60)]):
        store.record_tick(now, fleet.views(now, queried), ())
        if i % 20 == 0:  # a rollup per node and minute: keep the writer's queue short
            store.flush(timeout=600)
    for i, now in enumerate(ticks(T0 - 3600, T0, 1)):
        store.record_tick(now, fleet.views(now, queried), ())
        if i % 20 == 0:  # a rollup per node and minute: keep the writer's queue short
            store.flush(timeout=600)
    store.record_nodes(fleet.views(T0))
    size0 = checkpointed_size(store)
    tables0 = table_bytes(store)
    write0 = store.write_seconds

    loop_cpu = 0.0
    simulated = int(minutes * 60)
    wall = time.perf_counter()
    for i, now in enumerate(ticks(T0, T0 + simulated, 1)):
        views = fleet.views(now)
        started = time.thread_time()
        store.record_tick(now, views, ())
        loop_cpu += time.thread_time() - started
        if i % 4 == 3:  # synthetic time outruns any writer: never let its queue overflow
            store.flush(timeout=600)
    store.flush(timeout=600)
    wall = time.perf_counter() - wall
    writer_cpu = store.write_seconds - write0
    size1 = checkpointed_size(store)
    # The minute in progress when the run stopped: its rows are written by the next tick.
    store.record_tick(T0 + simulated, [], ())
    store.flush(timeout=600)
    tables1 = table_bytes(store)

    now = T0 + simulated
    node = fleet.ids[0]
    charts = {}
    for span in (3600, DAY, 7 * DAY, 30 * DAY):
        points = len(store.history(node, CHART, span, now=now)["cpu_percent"])
        charts[span] = (median_ms(lambda s=span: store.history(node, CHART, s, now=now)), points)
    rows = store.db.execute("SELECT count(*) FROM samples").fetchone()[0]

    # Hourly level: three hours of every node's minutes (the measured ones, copied), rolled up
    # by the writer as each hour ends, one pass per hour.
    minutes = max(1, simulated // 60)
    fill_hours(store, int(T0 // 60), minutes, 3)
    checkpointed_size(store)
    passes = []
    for hour in (1, 2, 3):
        cpu0, wall0 = store.hourly_seconds, time.perf_counter()
        store.record_tick(T0 + hour * 3600, [], ())
        store.flush(timeout=600)
        passes.append((store.hourly_seconds - cpu0, time.perf_counter() - wall0))
    tables2 = table_bytes(store)
    dropped = store.dropped_batches
    store.close()
    raw_row = per_row(tables0, tables1, "samples")
    minute_row = per_row(tables0, tables1, "rollups")
    hourly_row = per_row(tables1, tables2, "hourly")
    return {
        "writer_share": writer_cpu / simulated,
        "loop_share": loop_cpu / simulated,
        "growth_h": (size1 - size0) / simulated * 3600,
        "bytes_per_sample": (size1 - size0) / (nodes * simulated / raw_every),
        "charts": charts,
        "raw_row": raw_row,
        "minute_row": minute_row,
        "hourly_row": hourly_row,
        "raw_day": raw_row * nodes * DAY / raw_every,
        "minute_day": minute_row * nodes * 1440,
        "hourly_day": hourly_row * nodes * 24,
        "hourly_pass_cpu": passes[0][0],  # the first: a full hour of minute rows
        "hourly_pass_wall": passes[0][1],
        "rows": rows,
        "dropped": dropped,
        "wall": wall,
        "simulated": simulated,
    }


def run_baseline(path: str, nodes: int, minutes: float) -> dict[str, float]:
    """The same sample rows with a bare executemany into a plain table, one commit a tick."""
    fleet = Fleet(nodes)
    db = store_mod.connect(path)
    cols = ", ".join(f"c{i} INTEGER" for i in range(len(store_mod.METRIC_COLUMNS)))
    db.execute(f"CREATE TABLE plain (node INTEGER, ts INTEGER, {cols}, svc BLOB)")
    marks = ", ".join("?" * (len(store_mod.METRIC_COLUMNS) + 3))
    sql = f"INSERT INTO plain VALUES ({marks})"
    size0 = os.path.getsize(path)
    simulated = int(minutes * 60)
    cpu = 0.0
    for now in ticks(T0, T0 + simulated, 1):
        views = fleet.views(now)
        started = time.thread_time()
        rows = [(i, round(now * 1000), *store_mod.scaled_values(v), packb(
            [x for j, s in enumerate(v.services) for x in (j, round(s.latency_ms * 10))]))
            for i, v in enumerate(views)]
        with db:
            db.executemany(sql, rows)
        cpu += time.thread_time() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size1 = os.path.getsize(path)
    db.close()
    return {"share": cpu / simulated, "growth_h": (size1 - size0) / simulated * 3600,
            "bytes_per_sample": (size1 - size0) / (nodes * simulated)}


def median_ms(fn, runs: int = 15) -> float:
    fn()  # warm the page cache, as a chart that refreshes would
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="simulated minutes per run")
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--raw-every", default="1,5", help="raw sample spacing(s) to compare, s")
    ap.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ctop-bench-store-") as tmp:
        base = run_baseline(os.path.join(tmp, "plain.db"), args.nodes, args.minutes)
        print(f"{args.nodes} nodes x 1 Hz, {args.minutes:g} simulated minutes per run, "
              f"7 services per node; SQLite {sqlite3.sqlite_version}")
        print(f"baseline (bare executemany, plain table): {100 * base['share']:.1f} % of a core, "
              f"{base['growth_h'] / 1e9:.2f} GB/h, {base['bytes_per_sample']:.0f} B/sample")
        for every in (float(x) for x in args.raw_every.split(",")):
            r = run_store(os.path.join(tmp, f"store-{every:g}.db"), args.nodes, args.minutes,
                          every)
            charts = ", ".join(f"{label} {ms:.1f} ms ({n} points)" for label, (ms, n) in zip(
                ("1 h", "24 h", "7 d", "30 d"), r["charts"].values(), strict=True))
            print(f"raw_every={every:g} s: writer {100 * r['writer_share']:.1f} % of a core "
                  f"({r['writer_share'] / base['share']:.2f}x baseline), "
                  f"record_tick {100 * r['loop_share']:.1f} %; "
                  f"growth {r['growth_h'] / 1e9:.2f} GB/h "
                  f"({r['growth_h'] / base['growth_h']:.2f}x baseline, "
                  f"{r['bytes_per_sample']:.0f} B/sample incl. rollups); "
                  f"charts: {charts}; "
                  f"{r['simulated']} s simulated in {r['wall']:.0f} s"
                  + (f"; {r['dropped']} batches DROPPED" if r["dropped"] else ""), flush=True)
            print(f"    growth per day at {args.nodes} nodes: raw {r['raw_day'] / 1e9:.2f} GB "
                  f"({r['raw_row']:.0f} B/row), 1-minute rollups "
                  f"{r['minute_day'] / 1e9:.2f} GB ({r['minute_row']:.0f} B/row), hourly "
                  f"rollups {r['hourly_day'] / 1e6:.1f} MB ({r['hourly_row']:.0f} B/row); "
                  f"kept at the defaults (raw {RAW_RETENTION / 3600:g} h, minutes "
                  f"{MINUTE_RETENTION / 3600:g} h, hourly {HOURLY_RETENTION / DAY:g} d): "
                  f"{r['raw_day'] * RAW_RETENTION / DAY / 1e9:.1f} + "
                  f"{r['minute_day'] * MINUTE_RETENTION / DAY / 1e9:.1f} + "
                  f"{r['hourly_day'] * HOURLY_RETENTION / DAY / 1e9:.1f} GB; "
                  f"hourly pass over one hour of minute rows: {r['hourly_pass_cpu']:.2f} s "
                  f"writer CPU, {r['hourly_pass_wall']:.2f} s wall", flush=True)


if __name__ == "__main__":
    main()
