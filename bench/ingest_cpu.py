"""Director ingest CPU at many distinct nodes, this tree against a baseline checkout.

bench/ingest.py measures throughput against a paced sender; on a shared, loaded machine its
receiver falls behind at 60,000 distinct nodes and the figures drown in backlog (stale
rejects). This bench measures CPU time instead, which load disturbs far less: one process per
tree runs the real `Receiver` (real UDP socket on 127.0.0.1, `_drain` called the way the event
loop calls it, hooks wired as `ctop.engine` wires them) and the real `ClusterModel`. Each round
every node sends its next report once (a second of the cluster at one report per node per
second) in chunks the socket buffer holds, then the engine's `tick()` + `snapshot()` runs once.
Only the receiver's `_drain` calls and the tick are timed (`time.process_time`), not sending.

It prints per tree: CPU µs per report on receive (verify + apply + folding between batches),
the tick + snapshot ms per round, all of it as reports/s of one core, and the verify bound
(HMAC + one msgpack decode of the body) measured by the same process, with the ratio to it.

    .venv/bin/python bench/ingest_cpu.py [--nodes 60000] [--rounds 3] [--baseline DIR]
                                         [--repeat N] [--per-node K]

--baseline: a checkout of another tree (e.g. `git worktree add /tmp/base main`), run the same
way in its own process, alternating with this tree's, so both see the same machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import sidebyside  # bench/, this script's directory: before child() puts a tree's first

CHUNK = 4_000  # datagrams sent before draining: well inside the receive buffer


def verify_bound(shared: Any, nodes: int, reps: int = 3) -> float:
    """bench/ingest.py's verify bound (a baseline checkout may predate it): µs per report for
    the HMAC check and one msgpack decode of the body, best of `reps`."""
    import hmac

    from msgpack import unpackb

    reports = shared.Fleet(nodes).encode(nodes)
    times = []
    for _ in range(reps):
        started = time.process_time()
        for d in reports:
            payload = d[:-16]  # TAG_BYTES
            hmac.compare_digest(hmac.digest(shared.KEY, payload, "sha256")[:16], d[-16:])
            unpackb(payload[3:], raw=False, strict_map_key=False)  # after HEADER_BYTES
        times.append(time.process_time() - started)
    return min(times) / nodes * 1e6


def child(tree: str, nodes: int, rounds: int, per_node: int = 1) -> None:
    """Runs in its own process with `tree` first on sys.path: prints one JSON line."""
    # The tree's own bench/ingest.py (its Fleet: the same reports in every tree), which puts
    # its tree first on sys.path before anything imports ctop.
    sys.path.insert(0, str(Path(tree) / "bench"))
    import asyncio
    import gc
    import socket

    import ingest as shared

    from ctop.cluster import ClusterModel
    from ctop.gcpolicy import HeapFreezer
    from ctop.ingest.verifier import Verifier
    from ctop.receiver import Receiver

    shared.pin(0)
    fleet = shared.Fleet(nodes)
    model = ClusterModel("bench")
    heap = HeapFreezer()
    out = {"recv_cpu": 0.0, "tick_cpu": [], "reports": 0}

    async def run() -> None:
        rx = Receiver(Verifier(shared.KEY, max_age=3600, max_skew=3600),
                      lambda m, s, now: model.apply(m, now, s), "127.0.0.1", 0, deferred=True)
        model.on_reject = lambda r, s: rx.count_drop(r, s, accepted=True)
        import ctop.engine as engine  # the engine's wiring, whatever this tree has

        rx.on_idle = lambda: model.fold_some(engine.FOLD_BATCH)
        if hasattr(rx, "on_busy"):
            rx.on_busy = lambda now: model.fold_some(engine.BATCH, now - engine.FOLD_AGE)
        rx.open()
        assert rx.sock is not None
        asyncio.get_running_loop().remove_reader(rx.sock.fileno())
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(("127.0.0.1", rx.port))
        for r in range(rounds + 1):  # round 0 registers every node: not counted
            data = fleet.encode(nodes * (per_node if r else 1))  # round robin over the nodes
            recv_cpu = 0.0
            for start in range(0, len(data), CHUNK):
                for d in data[start:start + CHUNK]:
                    tx.send(d)
                began = time.process_time()
                before = -1
                while rx.accepted + sum(rx.drops.values()) != before:
                    before = rx.accepted + sum(rx.drops.values())
                    rx._drain()
                recv_cpu += time.process_time() - began
            began = time.process_time()
            now = time.time()
            model.tick(now)
            snap = model.snapshot(now, r + 1)
            heap.after_tick(len(snap.nodes))
            if r:
                out["recv_cpu"] += recv_cpu
                out["tick_cpu"].append(time.process_time() - began)
                out["reports"] += len(data)
        out["drops"] = dict(rx.drops)
        tx.close()
        rx.close()

    gc.collect()
    asyncio.run(run())
    out["bound_us"] = verify_bound(shared, min(nodes, 20_000))
    sidebyside.emit(out)


def main() -> None:
    ap = sidebyside.parser(__doc__)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the trees in turn this many times; then each tree's best "
                         "(least CPU: the run least disturbed by other load) and the ratio")
    ap.add_argument("--per-node", type=int, default=1,
                    help="reports per node per round (more than 1: the shape of a few nodes "
                         "reporting several times a second, where only the newest is folded)")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.nodes, args.rounds, args.per_node)
        return
    print(f"{args.nodes} distinct nodes, {args.per_node} report(s) each per round, "
          f"{args.rounds} rounds; load {os.getloadavg()[0]:.1f}")
    print(f"{'tree':>10} | {'µs/rep recv':>11} {'tick ms':>8} {'µs/rep all':>10} "
          f"{'reports/s':>10} | {'bound µs':>8} {'of bound':>8}")
    best: dict[str, tuple[float, float, float, float]] = {}
    for name, tree in [t for _ in range(args.repeat) for t in sidebyside.trees(args.baseline)]:
        r = sidebyside.run_child(__file__, name, tree,
                                 ["--nodes", str(args.nodes), "--rounds", str(args.rounds),
                                  "--per-node", str(args.per_node)])
        recv_us = 1e6 * r["recv_cpu"] / r["reports"]
        tick_ms = 1e3 * sum(r["tick_cpu"]) / len(r["tick_cpu"])
        all_us = recv_us + 1e3 * tick_ms / (args.nodes * args.per_node)
        rate = 1e6 / all_us
        bound = 1e6 / r["bound_us"]
        note = f"  drops {r['drops']}" if r["drops"] else ""
        print(f"{name:>10} | {recv_us:>11.2f} {tick_ms:>8.0f} {all_us:>10.2f} {rate:>10,.0f} | "
              f"{r['bound_us']:>8.2f} {rate / bound:>8.2f}{note}", flush=True)
        if name not in best or all_us < best[name][2]:
            best[name] = (recv_us, tick_ms, all_us, r["bound_us"])
    if args.repeat > 1:
        print("best of each tree (least CPU all in):")
        for name, (recv_us, tick_ms, all_us, bound_us) in best.items():
            print(f"{name:>10} | {recv_us:>11.2f} {tick_ms:>8.0f} {all_us:>10.2f} "
                  f"{1e6 / all_us:>10,.0f} | {bound_us:>8.2f} {bound_us / all_us:>8.2f}")
        if len(best) == 2:
            (_, a), (_, b) = best.items()
            print(f"this tree / baseline: receive {b[0] / a[0]:.2f}, tick {b[1] / a[1]:.2f}, "
                  f"all {b[2] / a[2]:.2f}")


if __name__ == "__main__":
    main()
