"""The cluster model's own per-second cost at many nodes, by part, this tree against a baseline.

bench/tick.py times the whole engine thread (alerts, history, the UI poll beside the model);
bench/ingest_cpu.py times the model's tick + snapshot after the real receiver, with the report
bodies left for the tick to check (the ingest lane's fold) inside its figure. This bench times
the model alone, split into what the issue's "tick and snapshot" figure is made of (issue 15:
<= 200 ms of CPU per second at 60,000 nodes):

- liveness: `ClusterModel.tick` every `check_every` (0.1 s: ten a second);
- fold: `ClusterModel.fold`, the report bodies no idle moment of the socket checked (here all
  of them: an upper bound; the engine folds most of them while receiving, bench/ingest_cpu.py);
- views: the rest of `snapshot()`: a NodeView per changed node and the snapshot's tuple;
- sums: the group sums and totals (`_sums`, over every node).

Each second every node sends one datagram: a `--changing` fraction a report (new values), the
others a beacon (alive, nothing new: what an agent sends between reports, agentd/beacon.py).
Reports are made and verified before the round (bench/ingest.py's Fleet: 16-core nodes with 7
services) and applied untimed. CPU time of the thread (`time.thread_time`), the mean of
--rounds after round 0 (registration), each tree in its own process, alternating --repeat
times, so both see the same machine.

    .venv/bin/python bench/snapshot.py [--nodes 60000] [--changing 1.0] [--rounds 3]
        [--repeat 1] [--baseline DIR] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sidebyside  # bench/, this script's directory: before child() puts a tree's first

HERE = Path(__file__).resolve().parent.parent
PARTS = ("liveness", "fold", "views", "sums")


def child(tree: str, nodes: int, rounds: int, changing: float, profile: str) -> None:
    """Runs in its own process with `tree` first on sys.path: prints one JSON line."""
    sys.path.insert(0, str(Path(tree) / "bench"))
    import gc

    import ingest as shared  # puts its tree first on sys.path

    import ctop.cluster as cluster
    from agentd.beacon import Beacon
    from ctop.gcpolicy import HeapFreezer
    from ctop.ingest.verifier import Verifier

    model = cluster.ClusterModel("bench")
    spent: dict[str, float] = dict.fromkeys(PARTS, 0.0)
    timed = sidebyside.timer(spent)

    model.fold = timed("fold", model.fold)  # type: ignore[method-assign]
    cluster._sums = timed("sums", cluster._sums)  # type: ignore[assignment]
    verifier = Verifier(shared.KEY, max_age=3600, max_skew=3600)
    fleet = shared.Fleet(nodes)
    heap = HeapFreezer()
    check_every = model.liveness.check_every
    per_second = max(1, round(1.0 / check_every))
    reporting = max(1, round(nodes * changing))
    out: dict[str, Any] = {"rounds": []}
    profiler = None
    gc.collect()
    start = time.time()
    for r in range(rounds + 1):  # round 0 registers every node: not counted
        second = start + r
        count = nodes if r == 0 else reporting
        msgs = [verifier.verify_deferred(d) for d in fleet.encode(count)]
        step = 1.0 / nodes
        for i, m in enumerate(msgs):  # spread over the second, as they arrive
            model.apply(m, second + i * step, "127.0.0.1")
        if r:  # the others: a beacon each (its sequence the fleet's next)
            for i in range(count, nodes):
                fleet.seqs[i] += 1
                model.beacon(Beacon(fleet.ids[i], fleet.boots[i], fleet.seqs[i], 0.25),
                             second + i * step)
        for k in spent:
            spent[k] = 0.0
        if profile and r == rounds:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        began = time.thread_time()
        for k in range(1, per_second + 1):  # the last one: the tick's own
            model.tick(second + k * check_every)
        spent["liveness"] = time.thread_time() - began
        began = time.thread_time()
        snap = model.snapshot(second + 1.0, r + 1)
        spent["views"] = time.thread_time() - began - spent["fold"] - spent["sums"]
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        heap.after_tick(len(snap.nodes))
        if r:
            out["rounds"].append(dict(spent))
    out["ctop"] = str(Path(sys.modules["ctop"].__file__ or "").parent.parent)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=60_000)
    ap.add_argument("--changing", type=float, default=1.0,
                    help="fraction of the nodes that report new values each second")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tree, alternating")
    ap.add_argument("--baseline", help="another checkout to measure side by side")
    ap.add_argument("--profile", default="", help="cProfile the last round into FILE "
                                                   "(this tree only)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.nodes, args.rounds, args.changing, args.profile)
        return
    trees = [("this tree", str(HERE))]
    if args.baseline:
        trees.insert(0, ("baseline", str(Path(args.baseline).resolve())))
    print(f"{args.nodes} nodes, {args.changing:.0%} of them reporting new values each second "
          f"(the others a beacon), {args.rounds} rounds (mean); ms of CPU per second; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'tree':>10} | " + " ".join(f"{p:>9}" for p in PARTS)
          + f" | {'total':>6} {'w/o fold':>8}")
    for _ in range(args.repeat):
        for name, tree in trees:
            profile = args.profile if name == "this tree" else ""
            got = subprocess.run(
                [sys.executable, __file__, "--child", tree, "--nodes", str(args.nodes),
                 "--rounds", str(args.rounds), "--changing", str(args.changing),
                 "--profile", profile], capture_output=True, text=True)
            if got.returncode:
                raise SystemExit(f"{name}: {got.stderr[-2000:]}")
            r = json.loads(got.stdout.strip().splitlines()[-1])
            if Path(r["ctop"]).resolve() != Path(tree).resolve():
                raise SystemExit(f"{name}: ran the ctop of {r['ctop']}, not of {tree}")
            mean = {p: sum(x[p] for x in r["rounds"]) / len(r["rounds"]) for p in PARTS}
            total = sum(mean.values())
            print(f"{name:>10} | " + " ".join(f"{1e3 * mean[p]:>9.1f}" for p in PARTS)
                  + f" | {1e3 * total:>6.0f} {1e3 * (total - mean['fold']):>8.0f}", flush=True)


if __name__ == "__main__":
    main()
