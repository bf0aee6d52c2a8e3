"""The director's whole per-second cost at many distinct nodes, this tree against a baseline.

bench/ingest_cpu.py times ClusterModel's tick + snapshot; the issue's figure (issue 15: "the
tick and snapshot at 60,000 nodes <= 200 ms CPU per second") is the director's, so this bench
times what the real `ctop.engine.Engine` does in one second of a cluster where every node
reported once: its liveness check every `liveness.check_every` (0.1 s: ten a second, the last
of them inside the tick), then `Engine.tick` with the default alert rules, the SQLite history
(queueing only: the writer thread's SQLite work is timed apart) and one attached UI's delta
poll (`DeltaPacker.pack`, what the control socket encodes per poll).

Reports are made and verified before each round (bench/ingest.py's Fleet: 16-core nodes with 7
services) and folded into the model untimed, as the receiver would have done during the second.
Timed with `time.thread_time` of the engine's thread, the mean of --rounds (from the second on,
nodes registered in round 0 come due and are looked at again), and split into
parts by timing wrappers around the model's snapshot, the alert evaluation and the store's
record_tick. Each tree runs in its own process, alternating, so both see the same machine.

    .venv/bin/python bench/tick.py [--nodes 60000] [--rounds 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
PARTS = ("liveness", "snapshot", "alerts", "store", "rest of tick", "ui poll")


def child(tree: str, nodes: int, rounds: int) -> None:
    """Runs in its own process with `tree` first on sys.path: prints one JSON line."""
    sys.path.insert(0, str(Path(tree) / "bench"))
    import gc

    import ingest as shared  # puts its tree first on sys.path

    from ctop.config import DirectorConfig, StoreConfig
    from ctop.control.delta import DeltaPacker
    from ctop.engine import Engine
    from ctop.ingest.verifier import Verifier
    from ctop.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="ctop-bench-tick-"))
    (tmp / "key").write_bytes(shared.KEY)
    os.chmod(tmp / "key", 0o600)
    engine = Engine(DirectorConfig(cluster="bench", listen=("127.0.0.1", 0),
                                   key_file=str(tmp / "key"),
                                   store=StoreConfig(path=str(tmp / "ctop.db"))))
    engine.store = Store(str(tmp / "ctop.db"))  # as Engine.start opens it
    spent: dict[str, float] = dict.fromkeys(PARTS, 0.0)

    def timed(part: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def run(*a: Any, **k: Any) -> Any:
            began = time.thread_time()
            try:
                return f(*a, **k)
            finally:
                spent[part] += time.thread_time() - began
        return run

    engine.model.snapshot = timed("snapshot", engine.model.snapshot)  # type: ignore[method-assign]
    engine.alerts.evaluate = timed("alerts", engine.alerts.evaluate)  # type: ignore[method-assign]
    engine.store.record_tick = timed("store", engine.store.record_tick)  # type: ignore
    verifier = Verifier(shared.KEY, max_age=3600, max_skew=3600)
    fleet = shared.Fleet(nodes)
    ui = DeltaPacker()
    check_every = engine.config.liveness.check_every
    per_second = max(1, round(engine.config.tick / check_every))
    out: dict[str, Any] = {"rounds": []}
    gc.collect()
    start = time.time()
    for r in range(rounds + 1):  # round 0 registers every node: not counted
        second = start + r
        msgs = [verifier.verify(d) for d in fleet.encode(nodes)]
        for i, m in enumerate(msgs):  # spread over the second, as they arrive
            engine._on_message(m, "127.0.0.1", second + i / nodes)
        engine.model.fold()
        for k in spent:
            spent[k] = 0.0
        began = time.thread_time()
        for k in range(1, per_second):
            engine.check_liveness(second + k * check_every)
        spent["liveness"] = time.thread_time() - began
        began = time.thread_time()
        snap = engine.tick(second + 1.0)
        tick = time.thread_time() - began
        spent["rest of tick"] = tick - spent["snapshot"] - spent["alerts"] - spent["store"]
        began = time.thread_time()
        ui.pack(snap, ui.version, None)
        spent["ui poll"] = time.thread_time() - began
        if r:
            out["rounds"].append(dict(spent))
        engine.store.flush()  # the writer keeps up between rounds, untimed
    engine.store.close()
    out["ctop"] = str(Path(sys.modules["ctop"].__file__ or "").parent.parent)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="another checkout to measure side by side")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.nodes, args.rounds)
        return
    trees = [("this tree", str(HERE))]
    if args.baseline:
        trees.insert(0, ("baseline", str(Path(args.baseline).resolve())))
    print(f"{args.nodes} distinct nodes, each reporting once per second, {args.rounds} rounds "
          f"(mean); ms of the engine thread's CPU per second; load {os.getloadavg()[0]:.1f}")
    print(f"{'tree':>10} | " + " ".join(f"{p:>12}" for p in PARTS) + f" | {'total':>7}")
    for name, tree in trees:
        got = subprocess.run(
            [sys.executable, __file__, "--child", tree, "--nodes", str(args.nodes),
             "--rounds", str(args.rounds)], capture_output=True, text=True)
        if got.returncode:
            raise SystemExit(f"{name}: {got.stderr[-2000:]}")
        r = json.loads(got.stdout.strip().splitlines()[-1])
        if Path(r["ctop"]).resolve() != Path(tree).resolve():
            raise SystemExit(f"{name}: ran the ctop of {r['ctop']}, not of {tree}")
        mean = {p: sum(x[p] for x in r["rounds"]) / len(r["rounds"]) for p in PARTS}
        print(f"{name:>10} | " + " ".join(f"{1e3 * mean[p]:>12.0f}" for p in PARTS)
              + f" | {1e3 * sum(mean.values()):>7.0f}", flush=True)


if __name__ == "__main__":
    main()
