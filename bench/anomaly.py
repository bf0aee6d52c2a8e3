"""Anomaly detection: what an evaluation costs at 1,000 and 10,000 nodes, and how often it
raises a false alarm on a clean synthetic cluster.

Cost. A real history database (the daemon's schema, scaled integers) gets, per node, 8 weeks
of hourly rows around the current hour of the week (that hour and the 2 on each side: 40 rows,
so the table is not just the rows read) and 15 minute rows; nodes are in groups of 50, each
group one virtual service. Timed, median of --repeat runs, in the same run:
  build  the hourly baseline pass (once an hour: the baselines change only with the hour);
  eval   an evaluation between two builds (every `[anomaly] every`, 60 s): the current
         values from the minute rows, the scores, cost per connection, escalation;
  base   the baseline for both: one bare `SELECT` of the same columns of the same minute
         rows, no arithmetic (what any reader of the current values pays), so build/base
         and eval/base are ratios;
and the share of one core at one evaluation a minute plus one build an hour.

False alarms. --fa-nodes nodes (default 100), each with 13 weeks of hourly history of every
default metric from a model with daily and weekly seasonality (a weekday day curve, quieter
weekends), a per-node level, and noise: the hourly means +-5 %, a 15-minute mean +-7 % (less
averaged), clamped to the metric's range, users whole. Then --fa-days days (default 10) of
clean evaluations, four a hour (independent 15-minute windows), through the real Baselines
(built from the database each hour) and their scores. A false alarm is a (node, metric) that
fires in a window after not firing in the previous one; printed per 1,000 node-days for
several thresholds from the same scores. Beside it, the detection rate of known anomalies in
the same run: in each window one random node's random metric at 1.5x its value (clamped
at 100 %), scored against the same baselines.

    .venv/bin/python bench/anomaly.py [--nodes 1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ctop.anomaly.baseline import Baselines
from ctop.anomaly.config import BASELINE_METRICS, AnomalyConfig
from ctop.anomaly.job import AnomalyDetector
from ctop.snapshot import LBServiceView, Liveness, NodeView, RealServerView
from ctop.store.schema import connect_readonly
from tests.helpers.anomaly_history import (
    HOUR,
    MONDAY,
    WEEK,
    history_hours,
    open_store,
    scaled_row,
    write_hours,
)

NOW = MONDAY + 20 * WEEK + 14.5 * HOUR  # a Monday 14:30 UTC
GROUP = 50
INJECT = 1.5  # the known anomaly of the detection figure: a metric at 1.5x its value

# metric -> (typical level, daily swing, bounded at 100)
MODEL = {
    "cpu_percent": (30.0, 0.5, True), "mem_percent": (50.0, 0.1, True),
    "swap_percent": (5.0, 0.05, True), "net_rx_bps": (5e6, 0.6, False),
    "net_tx_bps": (5e6, 0.6, False), "disk_root_percent": (40.0, 0.0, True),
    "users": (2.0, 0.5, False), "tcp_established": (200.0, 0.6, False),
    "procs": (150.0, 0.05, False), "procs_rss": (2e9, 0.1, False),
    "threads": (600.0, 0.1, False), "load": (1.5, 0.5, False),
}


def seasonal(t: float) -> float:
    """1 +- the day's curve (peak mid-afternoon), weekends at 70 %."""
    dow = int((t - MONDAY) // 86400) % 7
    hod = (t % 86400) / 3600
    day = math.sin(math.pi * max(0.0, min(1.0, (hod - 7) / 14)))  # 07:00-21:00
    return (0.7 if dow >= 5 else 1.0) * (0.75 + 0.5 * day)


def value(level: float, swing: float, bounded: bool, t: float, noise: float,
          whole: bool) -> float:
    v = level * (1 + swing * (seasonal(t) - 1)) * (1 + noise)
    v = max(0.0, min(100.0, v) if bounded else v)
    return float(round(v)) if whole else v


def levels(nodes: list[str], rng: random.Random) -> dict[str, dict[str, float]]:
    return {n: {m: base * rng.uniform(0.6, 1.4) for m, (base, _, _) in MODEL.items()}
            for n in nodes}


# -- cost ------------------------------------------------------------------------------------


def cost_db(path: str, n: int) -> tuple[list[NodeView], list[LBServiceView]]:
    nodes = {f"n{i:05d}": f"g{i // GROUP}" for i in range(n)}
    db = open_store(path, nodes)
    rng = random.Random(1)
    lv = levels(list(nodes), rng)
    now_h = int(NOW // HOUR)
    hours = [now_h - WEEK // HOUR * k + d for k in range(1, 9) for d in range(-2, 3)]

    def row(node: str, hour: int) -> dict[str, float]:
        return {m: value(lv[node][m], sw, b, hour * HOUR, rng.gauss(0, 0.05), m == "users")
                for m, (_, sw, b) in MODEL.items()}

    write_hours(db, hours, row)
    ids = dict(db.execute("SELECT node_id, id FROM nodes"))
    first = int(NOW // 60) - 15
    with db:
        for node, rowid in ids.items():
            cols, vals = scaled_row(row(node, now_h))
            db.executemany(
                f"INSERT INTO rollups (node, minute, n, {', '.join(cols)}) "
                f"VALUES (?, ?, 6, {', '.join('?' * len(vals))})",
                [(rowid, m, *vals) for m in range(first, first + 15)])
    db.close()
    views = [NodeView(nid, nid, g, Liveness.ALIVE, NOW, 1, 1.0, cores=8,
                      cpu=rng.uniform(30, 50)) for nid, g in nodes.items()]
    services = []
    for g in range(0, n, GROUP):
        members = views[g:g + GROUP]
        services.append(LBServiceView(
            f"TCP 10.0.{g // 250}.{g % 250}:80", "ipvs", "TCP", "wlc",
            tuple(RealServerView(f"{v.node_id}:80", v.node_id, 80, 10, "serving",
                                 rng.randint(80, 120), 0, 0.0, node_id=v.node_id)
                  for v in members)))
    return views, services


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def bench_cost(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ctop.db")
        t = time.perf_counter()
        views, lb = cost_db(path, n)
        made = time.perf_counter() - t
        det = AnomalyDetector(AnomalyConfig(), path)

        def build() -> None:
            det.baselines.hour = None
            det.evaluate(NOW, views, lb)

        build_s = timed(build, repeat)  # a build and the evaluation it comes with
        eval_s = timed(lambda: det.evaluate(NOW, views, lb), repeat)
        db = connect_readonly(path)
        cols = ", ".join(f"r.{BASELINE_METRICS[m]}_avg" for m in det.cfg.metrics)
        base_s = timed(lambda: db.execute(
            f"SELECT nodes.node_id, r.n, {cols} FROM nodes CROSS JOIN rollups AS r "
            "WHERE r.node = nodes.id AND r.minute >= ?", (int(NOW // 60) - 15,)).fetchall(),
            repeat)
        db.close()
        det.close()
        share = (eval_s * 60 + build_s) / 3600
        print(f"{n:>6} nodes  build {build_s * 1e3:7.1f} ms ({build_s / base_s:5.1f}x base)  "
              f"eval {eval_s * 1e3:7.1f} ms ({eval_s / base_s:5.1f}x base, "
              f"{eval_s / n * 1e6:5.1f} us/node)  base {base_s * 1e3:6.1f} ms  "
              f"core share {share:.2%}  (db made in {made:.0f} s)")


# -- false alarms ----------------------------------------------------------------------------


def bench_false_alarms(n: int, days: int, thresholds: list[float]) -> None:
    rng = random.Random(7)
    nodes = {f"n{i:04d}": "web" for i in range(n)}
    lv = levels(list(nodes), rng)
    start = NOW + 0.5 * HOUR  # Monday 15:00: the test days start on an hour boundary
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ctop.db")
        db = open_store(path, nodes)
        write_hours(db, history_hours(start, 13 * 7), lambda node, h: {
            m: value(lv[node][m], sw, b, h * HOUR + 1800, rng.gauss(0, 0.05), m == "users")
            for m, (_, sw, b) in MODEL.items()})
        db.close()
        cfg = replace(AnomalyConfig(), threshold=min(thresholds))
        base = Baselines(cfg)
        ro = connect_readonly(path)
        firing_before: dict[float, set[tuple[str, str]]] = {t: set() for t in thresholds}
        alarms = dict.fromkeys(thresholds, 0)
        detected = dict.fromkeys(thresholds, 0)
        injected = 0
        for hour in range(days * 24):
            t0 = start + hour * HOUR
            # the history moves on with the days: hours of the test days count as history
            base.build(ro, int(t0 // HOUR))
            for q in range(4):
                t = t0 + q * 900 + 450
                current = {node: [value(lv[node][m], MODEL[m][1], MODEL[m][2], t,
                                        rng.gauss(0, 0.07), m == "users")
                                  for m in cfg.metrics] for node in nodes}
                found = base.score(current)
                for th in thresholds:
                    now_firing = {(a.node_id, a.metric) for a in found if a.score >= th}
                    alarms[th] += len(now_firing - firing_before[th])
                    firing_before[th] = now_firing
                # detection: one node's metric at INJECT times its value in this window
                victim = rng.choice(list(nodes))
                i = rng.randrange(len(cfg.metrics))
                vals = list(current[victim])
                vals[i] = vals[i] * INJECT
                if MODEL[cfg.metrics[i]][2]:
                    vals[i] = min(vals[i], 100.0)
                hit = [a.score for a in base.score({victim: vals})
                       if a.metric == cfg.metrics[i]]
                for th in thresholds:
                    detected[th] += bool(hit and hit[0] >= th)
                injected += 1
        ro.close()
    node_days = n * days
    print(f"false alarms on a clean cluster ({n} nodes x {days} days = {node_days} node-days, "
          f"{len(cfg.metrics)} metrics, {days * 24 * 4} evaluations):")
    for th in thresholds:
        print(f"  threshold {th:>4g}: {alarms[th]:6d} alarms = "
              f"{alarms[th] * 1000 / node_days:8.2f} per 1,000 node-days;  a metric at "
              f"{INJECT:g}x its value detected {detected[th] / injected:6.1%} "
              f"of {injected}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fa-nodes", type=int, default=100)
    ap.add_argument("--fa-days", type=int, default=10)
    ap.add_argument("--thresholds", default="3.5,4,5,6")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    if not args.skip_cost:
        for n in map(int, args.nodes.split(",")):
            bench_cost(n, args.repeat)
    bench_false_alarms(args.fa_nodes, args.fa_days,
                       [float(x) for x in args.thresholds.split(",")])


if __name__ == "__main__":
    main()
