"""What looking back costs: the LB history per round, and building a past snapshot.

1. Per LB round at N real servers: the engine's side (LBRecorder.observe: the sparkline window
   and the rows to store) against building the round's views themselves (the RealServerViews
   the monitor makes every round), side by side in the same run; and the writer thread's CPU
   per round (rows, plus the minute/hour rollups as they finish).
2. A past snapshot (ctop --at, T and each ←/→) at N nodes with a real history database written
   through the Store: the time to build it, against the engine's own live snapshot of the same
   nodes (ClusterModel.snapshot), in the same run.

    .venv/bin/python bench/lb_history.py [--servers 100,1000,10000] [--nodes 1000,10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentd.protocol import Header, Report
from ctop.lb_history import LBRecorder
from ctop.past import snapshot_at
from ctop.snapshot import EventView, LBServiceView, Liveness, NodeView, RealServerView
from ctop.store import Store, connect

T0 = 1_800_000_000.0


def views(servers: int, k: int) -> tuple[LBServiceView, ...]:
    """`servers` real servers in services of 50, as the monitor builds them each round."""
    out = []
    for s in range(0, servers, 50):
        n = min(50, servers - s)
        rs = tuple(RealServerView(f"rs{s + i}", f"10.{s // 250}.{s % 250}.{i}", 80, 1 + i % 3,
                                  "serving", 10 + (i + k) % 7, 3, 2.5, f"node{s + i}",
                                  1 / n, 1 / n, 1.0) for i in range(n))
        out.append(LBServiceView(f"svc{s // 50}", "ipvs", "TCP", "wlc", rs, 0.1, "conns"))
    return tuple(out)


def bench_rounds(servers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "b.db"))
        rec = LBRecorder()
        build, record = [], []
        for k in range(rounds):
            t = time.perf_counter()
            v = views(servers, k)
            t1 = time.perf_counter()
            _, lb_round = rec.observe(T0 + 2 * k, v)
            t2 = time.perf_counter()
            assert lb_round is not None
            store.record_lb(lb_round)
            store.flush()
            build.append(t1 - t)
            record.append(t2 - t1)
        written = store.write_seconds / rounds
        store.close()
    b, r = statistics.median(build), statistics.median(record)
    print(f"{servers:>6} servers  views built {b * 1e3:7.2f} ms  recorded {r * 1e3:7.2f} ms "
          f"(ratio {r / b:4.2f})  writer thread {written * 1e3:7.2f} ms per round")


def node(i: int, t: float) -> NodeView:
    cpu = float(i % 97)
    return NodeView(f"n{i:05d}", f"n{i:05d}", f"g{i % 20}", Liveness.ALIVE, t, 1, 1.0,
                    (f"10.1.{i // 250}.{i % 250}",), 8, 1 << 34, "1", cpu=cpu, mem=40.0,
                    conns=i % 50, metrics={"cpu_percent": cpu, "procs": 100})


def bench_past(nodes: int, repeat: int) -> None:
    from ctop.cluster import ClusterModel

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "b.db")
        store = Store(path, raw_every=0.0)
        store.record_events([EventView(T0 - 1, "join", f"n{i:05d}", "joined")
                             for i in range(nodes)])
        for k in range(20):  # 20 s of ticks, and LB rounds for a tenth of the nodes
            t = T0 + k
            store.record_tick(t, [node(i, t) for i in range(nodes)], ())
            store.flush()
        store.close()
        db = connect(path)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            snap = snapshot_at(db, T0 + 19.5, "bench")
            times.append(time.perf_counter() - started)
        assert len(snap.nodes) == nodes
        db.close()
    # the live side: the engine's model making its snapshot of as many nodes
    model = ClusterModel("bench")
    for i in range(nodes):  # one report per node, as the receiver hands them over
        header = Header(f"n{i:05d}", 1, 1, T0)
        model.apply(Report(header, 1.0, f"g{i % 20}", {"cpu_percent": float(i % 97),
                                                            "procs": 100}), T0, "10.0.0.1")
    live = []
    for k in range(repeat):
        started = time.perf_counter()
        model.snapshot(T0 + k, k)
        live.append(time.perf_counter() - started)
    p, lv = statistics.median(times), statistics.median(live)
    print(f"{nodes:>6} nodes  past snapshot {p * 1e3:8.1f} ms  live snapshot {lv * 1e3:7.1f} ms "
          f"(ratio {p / lv:5.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="100,1000,10000")
    ap.add_argument("--nodes", default="1000,10000")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for n in map(int, args.servers.split(",")):
        bench_rounds(n, args.rounds)
    for n in map(int, args.nodes.split(",")):
        bench_past(n, args.repeat)


if __name__ == "__main__":
    main()
