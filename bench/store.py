"""History store: what 10,000 nodes reporting once a second cost the director.

Feeds `ctop.store.Store.record_tick(now, views, events)` with realistic `NodeView`s (changing
values, 7 services) for `--minutes` simulated minutes, `now` advancing one second per tick as
fast as the writer keeps up (synthetic time: a 3-minute run takes seconds, not minutes). CPU is
measured per thread, so the figures hold for real time: writer CPU seconds per simulated second
(`Store.write_seconds`) is the writer thread's share of one core, and the CPU spent inside
`record_tick` on the calling thread is the event loop's share.

Before the measured run, a few query nodes get 24 h of history (one sample a minute, so 24 h of
1-minute rollups) and a full last hour at one sample a second; after it, the chart queries of
the UI are timed for one of them: `Store.history(node, 6 metrics, 3600)` (raw samples) and the
same over 24 h (rollups), median of several runs. Database growth per hour is extrapolated from
the bytes the measured run added, with the WAL checkpointed (TRUNCATE) before each measurement.

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
from ctop.model import Liveness, NodeView, ServiceView
from ctop.store import Store

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


def ticks(start: float, stop: float, step: float) -> Iterator[float]:
    t = start
    while t < stop:
        yield t
        t += step


def run_store(path: str, nodes: int, minutes: float, raw_every: float) -> dict[str, float]:
    fleet = Fleet(nodes)
    store = Store(path, raw_every=raw_every)
    queried = range(QUERY_NODES)
    # History of the query nodes: 23 h at one sample a minute, then the last hour at 1 Hz.
    for i, now in enumerate(ticks(T0 - 86_400, T0 - 3600, 60)):
        store.record_tick(now, fleet.views(now, queried), ())
        if i % 20 == 0:  # a rollup per node and minute: keep the writer's queue short
            store.flush(timeout=600)
    for i, now in enumerate(ticks(T0 - 3600, T0, 1)):
        store.record_tick(now, fleet.views(now, queried), ())
        if i % 20 == 0:  # a rollup per node and minute: keep the writer's queue short
            store.flush(timeout=600)
    store.record_nodes(fleet.views(T0))
    size0 = checkpointed_size(store)
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

    now = T0 + simulated
    node = fleet.ids[0]
    points = len(store.history(node, CHART, 3600, now=now)["cpu_percent"])
    q1h = median_ms(lambda: store.history(node, CHART, 3600, now=now))
    points24 = len(store.history(node, CHART, 86_400, now=now)["cpu_percent"])
    q24h = median_ms(lambda: store.history(node, CHART, 86_400, now=now))
    rows = store.db.execute("SELECT count(*) FROM samples").fetchone()[0]
    dropped = store.dropped_batches
    store.close()
    return {
        "writer_share": writer_cpu / simulated,
        "loop_share": loop_cpu / simulated,
        "growth_h": (size1 - size0) / simulated * 3600,
        "bytes_per_sample": (size1 - size0) / (nodes * simulated / raw_every),
        "q1h_ms": q1h,
        "q1h_points": points,
        "q24h_ms": q24h,
        "q24h_points": points24,
        "rows": rows,
        "dropped": dropped,
        "wall": wall,
        "simulated": simulated,
    }


def run_baseline(path: str, nodes: int, minutes: float) -> dict[str, float]:
    """The same sample rows with a bare executemany into a plain table, one commit a tick."""
    fleet = Fleet(nodes)
    db = store_mod.connect(path)
    cols = ", ".join(f"c{i} INTEGER" for i in range(len(store_mod.COLUMNS)))
    db.execute(f"CREATE TABLE plain (node INTEGER, ts INTEGER, {cols}, svc BLOB)")
    marks = ", ".join("?" * (len(store_mod.COLUMNS) + 3))
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
            print(f"raw_every={every:g} s: writer {100 * r['writer_share']:.1f} % of a core "
                  f"({r['writer_share'] / base['share']:.2f}x baseline), "
                  f"record_tick {100 * r['loop_share']:.1f} %; "
                  f"growth {r['growth_h'] / 1e9:.2f} GB/h "
                  f"({r['growth_h'] / base['growth_h']:.2f}x baseline, "
                  f"{r['bytes_per_sample']:.0f} B/sample incl. rollups); "
                  f"1 h chart {r['q1h_ms']:.1f} ms ({r['q1h_points']} points), "
                  f"24 h chart {r['q24h_ms']:.1f} ms ({r['q24h_points']} points); "
                  f"{r['simulated']} s simulated in {r['wall']:.0f} s"
                  + (f"; {r['dropped']} batches DROPPED" if r["dropped"] else ""), flush=True)


if __name__ == "__main__":
    main()
