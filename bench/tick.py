"""The director's whole per-second cost at many distinct nodes, this tree against a baseline.

bench/ingest_cpu.py times ClusterModel's tick + snapshot; the issue's figure (issue 15: "the
tick and snapshot at 60,000 nodes <= 200 ms CPU per second") is the director's, so this bench
times what the real `ctop.engine.Engine` does in one second of a cluster: its liveness check
every `liveness.check_every` (0.1 s: ten a second, the last of them inside the tick), then
`Engine.tick` with the default alert rules, the SQLite history (queueing on the engine's
thread; the writer thread's CPU is printed apart, "writer") and one attached UI's delta poll
(`DeltaPacker.pack`, what the control socket encodes per poll).

Two shapes, --changing F: the share of the nodes that send a report with new values in a
second. F = 1 (the default): every node reports once a second, every node changed. F < 1: a
rotating F of the nodes report (each node every 1/F s, announcing that interval) and the others
keep themselves alive with a liveness beacon (agentd/beacon.py), as an agent does between its
reports: the node is heard from, nothing it shows changes.

Reports are made and verified before each round (bench/ingest.py's Fleet: 16-core nodes with 7
services) and folded into the model untimed, as the receiver would have done during the second.
Timed with `time.thread_time` of the engine's thread, the mean of --rounds (from the second on,
nodes registered in round 0 come due and are looked at again), and split into
parts by timing wrappers around the model's snapshot, the alert evaluation and the store's
record_tick. Each tree runs in its own process, alternating, so both see the same machine.

    .venv/bin/python bench/tick.py [--nodes 60000] [--rounds 3] [--changing 1.0] [--baseline DIR]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sidebyside  # bench/, this script's directory: before child() puts a tree's first

PARTS = ("liveness", "snapshot", "alerts", "store", "rest of tick", "ui poll")


def child(tree: str, nodes: int, rounds: int, changing: float) -> None:
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
    timed = sidebyside.timer(spent)

    engine.model.snapshot = timed("snapshot", engine.model.snapshot)  # type: ignore[method-assign]
    engine.alerts.evaluate = timed("alerts", engine.alerts.evaluate)  # type: ignore[method-assign]
    engine.store.record_tick = timed("store", engine.store.record_tick)  # type: ignore
    verifier = Verifier(shared.KEY, max_age=3600, max_skew=3600)
    fleet = shared.Fleet(nodes)
    interval = 1.0 / changing
    count = nodes if changing >= 1.0 else max(1, round(changing * nodes))
    ui = DeltaPacker()
    check_every = engine.config.liveness.check_every
    per_second = max(1, round(engine.config.tick / check_every))
    out: dict[str, Any] = {"rounds": []}
    gc.collect()
    start = time.time()
    for r in range(rounds + 1):  # round 0 registers every node: not counted
        second = start + r
        if r == 0 or count == nodes:
            msgs = [verifier.verify(d) for d in reports(shared, fleet, range(nodes), interval)]
            for i, m in enumerate(msgs):  # spread over the second, as they arrive
                engine._on_message(m, "127.0.0.1", second + i / nodes)
        else:  # a rotating `count` of the nodes report, the others beacon
            first = (r - 1) * count
            talk = {(first + k) % nodes for k in range(count)}
            msgs = [verifier.verify(d) for d in reports(shared, fleet, sorted(talk), interval)]
            beacons = beacons_of(fleet, (i for i in range(nodes) if i not in talk))
            for i, m in enumerate(msgs):
                engine._on_message(m, "127.0.0.1", second + i / len(msgs))
            for i, b in enumerate(beacons):
                engine._on_beacon(b, "127.0.0.1", second + i / len(beacons))
        engine.model.fold()
        written = engine.store.write_seconds
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
        engine.store.flush()  # the writer keeps up between rounds (its CPU: "writer")
        if r:
            out["rounds"].append({**spent, "writer": engine.store.write_seconds - written})
    engine.store.close()
    sidebyside.emit(out)


def reports(shared: Any, fleet: Any, which: Any, interval: float) -> list[bytes]:
    """Signed reports of the nodes `which` (bench/ingest.py's Fleet, as its encode makes them
    but for chosen nodes and announcing `interval`)."""
    pool = [(fleet.metrics(i % len(fleet.ids)), fleet.services()) for i in range(256)]
    out = []
    now = time.time()
    for j, i in enumerate(which):
        fleet.seqs[i] += 1
        metrics, services = pool[j % len(pool)]
        header = shared.Header(fleet.ids[i], fleet.boots[i], fleet.seqs[i], now)
        out.append(shared.encode(shared.KEY, shared.Report(
            header, interval, f"rack-{i // 250:02d}", metrics, services)))
    return out


def beacons_of(fleet: Any, which: Any) -> list[Any]:
    """A verified beacon from each of the nodes `which` (what BeaconVerifier hands the engine),
    announcing a gap of 1 s: the node is heard from, nothing it shows changes."""
    from agentd.beacon import Beacon

    out = []
    for i in which:
        fleet.seqs[i] += 1
        out.append(Beacon(fleet.ids[i], fleet.boots[i], fleet.seqs[i], 1.0))
    return out


def main() -> None:
    ap = sidebyside.parser(__doc__)
    ap.add_argument("--changing", type=float, default=1.0,
                    help="share of the nodes reporting new values each second (0 < F <= 1)")
    args = ap.parse_args()
    if not 0 < args.changing <= 1:
        raise SystemExit("--changing: expected a share in (0, 1]")
    if args.child:
        child(args.child, args.nodes, args.rounds, args.changing)
        return
    shape = ("each reporting once per second" if args.changing >= 1 else
             f"{args.changing:.0%} reporting new values each second, the others beaconing")
    print(f"{args.nodes} distinct nodes, {shape}, {args.rounds} rounds (mean); ms of CPU per "
          f"second: the engine thread's parts and total, the store's writer thread apart; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'tree':>10} | " + " ".join(f"{p:>12}" for p in PARTS) + f" | {'total':>7} | writer")
    for name, tree in sidebyside.trees(args.baseline):
        r = sidebyside.run_child(__file__, name, tree, [
            "--nodes", str(args.nodes), "--rounds", str(args.rounds),
            "--changing", str(args.changing)])
        mean = {p: sum(x[p] for x in r["rounds"]) / len(r["rounds"])
                for p in (*PARTS, "writer")}
        print(f"{name:>10} | " + " ".join(f"{1e3 * mean[p]:>12.0f}" for p in PARTS)
              + f" | {1e3 * sum(mean[p] for p in PARTS):>7.0f} | {1e3 * mean['writer']:>6.0f}",
              flush=True)


if __name__ == "__main__":
    main()
