"""Director ingest with receiver processes: reports/s fully applied with 1 and 2 workers.

Capacity of the whole director — every process it runs — for distinct nodes (each report
from another node, so every body is decoded and applied: the shape of 60,000 nodes reporting
once a second), in the same run, side by side:

- inproc: today's `[receive] workers = 1`: the engine's own `Receiver` (deferred bodies,
  folded as the engine folds them) into a `ClusterModel`;
- pool-1, pool-2: `WorkerPool` (ctop/ingest/workers.py) with 1 or 2 worker processes that
  verify and decode, and the engine process applying their batches to a `ClusterModel`
  after its own order check (`Verifier`), as `Engine` wires it.

The sender needs a core too, and this machine has two. So the sender never runs while the
director does: each step starts the director, SIGSTOPs all its processes, fills their
sockets' receive buffers (made large enough with SO_RCVBUFFORCE, as root) with `--nodes`
reports from 64 source ports (the kernel spreads those over the workers' sockets), checks
that the kernel dropped none, SIGCONTs them and times until the engine process has applied
the last report (for inproc: its deferred bodies folded too). The figure is
reports / that wall time: what the director drains per second with both cores to itself,
i.e. its capacity when the agents are other machines. The CPU seconds of every director
process over the drain (from /proc) are printed per report too.

Not counted: the engine's once-a-second tick and snapshot (bench/ingest.py counts them; the
tick lane's figure), the store, alerts, the UI.

    .venv/bin/python bench/ingest_workers.py [--nodes 40000] [--rounds 2]
    .venv/bin/python bench/ingest_workers.py --stages [--nodes 20000]

--stages measures instead, in this one process without sockets (best of 5 passes, CPU time),
each stage's µs per report: the worker's (verify, decode, pack, frame), the engine's (frame
load, order check + apply, fold) and the in-process path's (verify, apply, fold), and prints
what they predict for the ratios (W = worker µs, E = engine µs, I = in-process µs per report):
pool-1 = 1/max(W, E), pool-2 = 2/(W + E) on 2 cores while W > E, inproc = 1/I.

Target (issue 15): pool-2 / pool-1 >= 1.7 on 2 cores. Also printed: pool-2 / inproc, and
each mode against the HMAC + msgpack verify bound measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import HOST, KEY, Fleet, verify_bound  # bench/ingest.py

SOURCES = 64  # source ports the reports come from
BUFFER = 1 << 30  # bytes of receive buffer per socket: the whole burst must fit
CLK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))


def cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK


def rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


# ---------------------------------------------------------------------------------------------
# The director under test (a child process)


def director_main(conn: Connection, mode: str, workers: int, key: bytes) -> None:
    asyncio.run(_director(conn, mode, workers, key))


async def _director(conn: Connection, mode: str, workers: int, key: bytes) -> None:
    from ctop.cluster import ClusterModel
    from ctop.engine import FOLD_AGE, FOLD_BATCH
    from ctop.ingest.verifier import Verifier
    from ctop.ingest.workers import WorkerPool
    from ctop.receiver import BATCH, Receiver, grow_receive_buffer, tune_gc

    tune_gc()
    verifier = Verifier(key, max_age=3600, max_skew=3600)
    model = ClusterModel("bench")
    apply = model.apply

    def on_message(msg: Any, source: str, now: float) -> None:
        apply(msg, now, source)

    receiver = Receiver(verifier, on_message, HOST, 0, deferred=True, tune_gc=False)
    model.on_reject = lambda rejected, source: receiver.count_drop(rejected, source,
                                                                   accepted=True)
    pids = [os.getpid()]
    # as Engine wires them: deferred bodies folded while the socket (or the workers' frames)
    # leave time, and those queued FOLD_AGE ago while busy
    receiver.on_idle = lambda: model.fold_some(FOLD_BATCH)
    receiver.on_busy = lambda now: model.fold_some(BATCH, now - FOLD_AGE)
    if mode == "inproc":
        receiver.open()
        assert receiver.sock is not None
        grow_receive_buffer(receiver.sock, BUFFER)
    else:
        pool = WorkerPool(workers, receiver, check_order=verifier.check_order,
                          settings=lambda: {"key": key, "master": None, "max_age": 3600},
                          on_event=lambda events: None, buffer=BUFFER)
        pool.open()
        pids += [s.process.pid for s in pool.slots if s.process is not None]
        await asyncio.sleep(1.0)  # the workers import and wait on their sockets
    conn.send((receiver.port, pids))
    for _ in range(2):  # the warm-up round (every node registers), then the timed one
        expected = conn.recv()
        while model.received + sum(receiver.drops.values()) < expected:
            await asyncio.sleep(0.002)
        model.fold()  # the bodies still deferred
        conn.send(("done", model.received, dict(receiver.drops), len(model.nodes)))
    conn.recv()
    if mode != "inproc":
        pool.close()


# ---------------------------------------------------------------------------------------------


def step(mode: str, workers: int, warm: list[bytes], data: list[bytes]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=director_main, args=(theirs, mode, workers, KEY), daemon=True)
    proc.start()
    port, pids = ours.recv()
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOURCES)]
    for s in sockets:
        s.connect((HOST, port))
    # Warm-up, not timed: every node's first report registers it (the rare path).
    ours.send(len(warm))
    for i, d in enumerate(warm):
        sockets[i % SOURCES].send(d)
    ours.recv()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    ours.send(2 * len(data))
    errors = rcvbuf_errors()
    for i, d in enumerate(data):
        sockets[i % SOURCES].send(d)
    lost = rcvbuf_errors() - errors
    each0 = [cpu_of([pid]) for pid in pids]
    started = time.perf_counter()
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    _, applied, drops, nodes = ours.recv()
    applied -= len(warm)
    wall = time.perf_counter() - started
    each = [cpu_of([pid]) - c for pid, c in zip(pids, each0, strict=True)]
    cpu, engine_cpu = sum(each), each[0]
    # The drain cannot take less than any one process's CPU time, nor less than all of it
    # spread over every core: its length with the cores to itself.
    bound_s = max(*each, cpu / CORES)
    ours.send("stop")
    proc.join(10)
    for s in sockets:
        s.close()
    return {"mode": mode, "applied": applied, "drops": drops, "nodes": nodes, "lost": lost,
            "wall": wall, "cpu": cpu, "engine_cpu": engine_cpu, "rate": applied / wall,
            "cpu_rate": applied / bound_s if bound_s else 0.0}


def stages(nodes: int, reps: int = 5) -> None:
    """Each stage's CPU µs per report, in this process (see the module's text)."""
    import gc

    from ctop.cluster import ClusterModel
    from ctop.ingest import handoff
    from ctop.ingest.decode import decode_report
    from ctop.ingest.verifier import Verifier

    fleet = Fleet(nodes)
    warm, data = fleet.encode(nodes), fleet.encode(nodes)
    gc.disable()  # as the worker runs; the engine's young passes are rare (tune_gc)

    def best(run: Any, setup: Any = None) -> float:
        times = []
        for _ in range(reps):
            arg = setup() if setup is not None else None
            started = time.process_time()
            run(arg)
            times.append(time.process_time() - started)
        return min(times) / nodes * 1e6

    def verifier() -> Verifier:
        v = Verifier(KEY, max_age=3600, max_skew=3600)
        for d in warm:
            v.verify_deferred(d)
        return v

    v0 = verifier()
    raws = [v0.verify_deferred(d) for d in data]
    reports = [decode_report(r) for r in raws]
    now = time.time()
    entries: list[Any] = []

    def pack(_: Any) -> None:
        packer = handoff.Packer()
        entries[:] = [packer.report_entry(r, "10.0.0.1", now) for r in reports]
        entries_keys[:] = packer.taken()

    entries_keys: list[Any] = []
    pack(None)
    chunks = [entries[i:i + handoff.FLUSH_ENTRIES]
              for i in range(0, len(entries), handoff.FLUSH_ENTRIES)]
    frames = [handoff.frame(c, {}, (len(c), 0), entries_keys if i == 0 else [])
              for i, c in enumerate(chunks)]

    def model() -> ClusterModel:  # every node registered, as after the warm-up round
        m = ClusterModel("bench")
        v = Verifier(KEY, max_age=3600, max_skew=3600)
        for d in warm:
            m.apply(v.verify_deferred(d), now, "10.0.0.1")
        m.fold()
        return m

    loaded = [handoff.load(f[handoff.LENGTH.size:]) for f in frames]
    names = dict(entries_keys)

    def engine_apply(state: tuple[ClusterModel, Verifier]) -> None:
        m, v = state
        # check_order is public once the ingest lane's branch is merged
        apply, check = m.apply, getattr(v, "check_order", None) or v._check_order
        for e in entries:
            msg = check(handoff.raw_report(e, names))
            apply(msg, now, "10.0.0.1")

    def engine_state() -> tuple[ClusterModel, Verifier]:
        return model(), verifier()

    def applied_model() -> ClusterModel:
        m, v = engine_state()
        engine_apply((m, v))
        return m

    def inproc_apply(state: tuple[ClusterModel, Verifier]) -> None:
        m, v = state
        apply, verify = m.apply, v.verify_deferred
        for d in data:
            apply(verify(d), now, "10.0.0.1")

    def inproc_state() -> tuple[ClusterModel, Verifier]:
        m = model()
        v = Verifier(KEY, max_age=3600, max_skew=3600)
        for d in warm:
            v.verify_deferred(d)
        return m, v

    def inproc_folded() -> ClusterModel:
        m, v = inproc_state()
        inproc_apply((m, v))
        return m

    def verify_only(v: Verifier) -> None:
        for d in data:
            v.verify_deferred(d)

    def verify_state() -> Verifier:
        v = Verifier(KEY, max_age=3600, max_skew=3600)
        for d in warm:
            v.verify_deferred(d)
        return v

    w_verify = best(verify_only, verify_state)
    w_decode = best(lambda _: [decode_report(r) for r in raws])
    w_pack = best(pack)
    w_frame = best(lambda _: [handoff.frame(c, {}, (len(c), 0), []) for c in chunks])
    e_load = best(lambda _: [handoff.load(f[handoff.LENGTH.size:]) for f in frames])
    e_apply = best(engine_apply, engine_state)
    e_fold = best(lambda m: m.fold(), applied_model)
    i_apply = best(inproc_apply, inproc_state)
    i_fold = best(lambda m: m.fold(), inproc_folded)
    del loaded
    worker = w_verify + w_decode + w_pack + w_frame
    engine = e_load + e_apply + e_fold
    inproc = i_apply + i_fold
    print(f"{nodes:,} distinct nodes, {len(data[0])}-byte reports; CPU µs per report, best of "
          f"{reps}:")
    print(f"  worker  {worker:6.1f} = verify {w_verify:.1f} + decode {w_decode:.1f} + pack "
          f"{w_pack:.1f} + frame {w_frame:.1f}")
    print(f"  engine  {engine:6.1f} = frame load {e_load:.1f} + order check and apply "
          f"{e_apply:.1f} + fold {e_fold:.1f}")
    print(f"  inproc  {inproc:6.1f} = verify and apply {i_apply:.1f} + fold {i_fold:.1f}")
    one = 1e6 / max(worker, engine)
    two = 2e6 / (worker + engine) if worker > engine else 1e6 / engine
    print(f"  predicted on 2 cores: pool-1 {one:,.0f}/s, pool-2 {two:,.0f}/s, inproc "
          f"{1e6 / inproc:,.0f}/s: pool-2 / pool-1 = {two / one:.2f}, pool-2 / inproc = "
          f"{two * inproc / 1e6:.2f}; 1.7x needs engine <= {0.3 / 1.7:.3f} x worker "
          f"(here {engine / worker:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=40_000, help="distinct nodes, one report each")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each mode (best kept)")
    ap.add_argument("--stages", action="store_true",
                    help="each stage's CPU per report in one process, and what it predicts")
    args = ap.parse_args()
    if args.stages:
        stages(args.nodes)
        return
    if os.geteuid() != 0:
        print("note: not root: receive buffers are capped by net.core.rmem_max; reports "
              "may be lost while the director is stopped", file=sys.stderr)
    bound = 1e6 / verify_bound(min(args.nodes, 10_000))
    print(f"verify bound (HMAC + msgpack decode, one core, this run): {bound:,.0f} reports/s")
    fleet = Fleet(args.nodes)
    warm = fleet.encode(args.nodes)
    data = fleet.encode(args.nodes)
    print(f"{args.nodes:,} distinct nodes, one report each ({len(data[0])} bytes), "
          f"from {SOURCES} source ports; {os.cpu_count()} cores")
    modes = [("inproc", 1), ("pool-1", 1), ("pool-2", 2)]
    best: dict[str, dict[str, Any]] = {}
    for r in range(args.rounds):
        for mode, workers in modes:
            res = step("inproc" if mode == "inproc" else "pool", workers, warm, data)
            ok = res["applied"] == args.nodes and not res["lost"]
            res["applied"] = max(1, res["applied"])
            print(f"round {r + 1} {mode:<7} wall {res['rate']:>8,.0f}/s "
                  f"({res['wall']:.2f} s), CPU-bound {res['cpu_rate']:>8,.0f}/s; "
                  f"CPU/report {res['cpu'] / res['applied'] * 1e6:5.1f} µs all processes, "
                  f"{res['engine_cpu'] / res['applied'] * 1e6:5.1f} µs engine; "
                  f"kernel lost {res['lost']}, drops {res['drops'] or 0}"
                  + ("" if ok else "  INCOMPLETE"))
            if ok and res["cpu_rate"] > best.get(mode, {}).get("cpu_rate", 0):
                best[mode] = res
    if len(best) < 3:
        print("some mode never completed: no ratios")
        return
    print(f"\nbest of {args.rounds} (wall: measured drain; CPU-bound: reports / the longest of "
          f"any one process's CPU time and all of it over {CORES} cores):")
    for mode in ("inproc", "pool-1", "pool-2"):
        b = best[mode]
        print(f"  {mode:<7} wall {b['rate']:>8,.0f}/s = {b['rate'] / bound:.2f} of the bound; "
              f"CPU-bound {b['cpu_rate']:>8,.0f}/s = {b['cpu_rate'] / bound:.2f} of the bound")
    for key, what in (("rate", "wall"), ("cpu_rate", "CPU-bound")):
        one, two, inproc = (best[m][key] for m in ("pool-1", "pool-2", "inproc"))
        print(f"  {what:<9} pool-2 / pool-1 = {two / one:.2f} (target >= 1.7); "
              f"pool-2 / inproc = {two / inproc:.2f}")

if __name__ == "__main__":
    main()
