"""Director ingest per part, in one process: where a distinct-node report's CPU goes.

For N distinct nodes (bench/ingest.py's Fleet: 442-byte reports, 16 cores, 7 services), each
part alone, best of 6 passes over N reports, cyclic GC off, µs per report: `recvfrom` on a
real UDP socket, the HMAC (`Tagger`), `msgpack.unpackb` of the body, `Verifier.verify_deferred`
(steady state: every node known), `BeaconVerifier.note`, `ClusterModel.apply` and
`fold_some` (the queue of bodies folded after all arrived: cold, as the tick's fold finds
them), whole arrivals with the bodies folded from the queue or each right after it arrived,
`decode_report` alone over bodies decoded earlier, and the tick + snapshot per node.

    .venv/bin/python bench/ingest_parts.py TREE [N]

TREE: a checkout whose ctop is measured (this tree: `.`); compare two trees by running the
script once per tree, in turn. At N = 60,000 the bodies no longer fit the CPU's caches: the
difference to N = 5,000 is what the cluster's size costs (docs/performance.md).
"""

from __future__ import annotations

import gc
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TREE = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
sys.path.insert(0, str(TREE / "bench"))
import ingest as shared  # noqa: E402  (its tree first on sys.path, before ctop is imported)
from msgpack import unpackb  # noqa: E402

from ctop.cluster import ClusterModel  # noqa: E402
from ctop.ingest.beacons import BeaconVerifier  # noqa: E402
from ctop.ingest.decode import decode_report  # noqa: E402
from ctop.ingest.tags import Tagger  # noqa: E402
from ctop.ingest.verifier import Verifier  # noqa: E402


def best(run: Callable[[], Any], reps: int = 6) -> float:
    return shared.best_us(run, reps, N)


def main() -> None:
    fleet = shared.Fleet(N)
    gc.disable()
    rows: dict[str, float] = {}
    data = fleet.encode(N)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    chunk, times = min(N, 2000), []
    for _ in range(4):
        for d in data[:chunk]:
            tx.send(d)
        started = time.process_time()
        recv = rx.recvfrom
        for _ in range(chunk):
            recv(1201)
        times.append(time.process_time() - started)
    rows["recvfrom"] = min(times) / chunk * 1e6
    tagger = Tagger(shared.KEY)
    rows["HMAC (Tagger)"] = best(lambda: [tagger.digest(d[:-16]) for d in data])
    rows["unpackb"] = best(lambda: [unpackb(d[3:-16], strict_map_key=False) for d in data])

    verifier = Verifier(shared.KEY, max_age=3600, max_skew=3600)
    for d in data:
        verifier.verify_deferred(d)
    rounds = iter([fleet.encode(N) for _ in range(6)])
    raws: list[Any] = []

    def verify() -> None:
        raws[:] = [verifier.verify_deferred(d) for d in next(rounds)]

    rows["verify_deferred"] = best(verify)
    beacons, now = BeaconVerifier(shared.KEY, 3600), time.time()
    for r in raws:
        beacons.note(r.header, now)
    rows["note"] = best(lambda: [beacons.note(r.header, now) for r in raws])

    model = ClusterModel("parts")
    for r in raws:
        model.apply(r, now, "10.0.0.1")
    model.fold()
    applied, folded = [], []
    for _ in range(6):
        batch = [verifier.verify_deferred(d) for d in fleet.encode(N)]
        started = time.process_time()
        for r in batch:
            model.apply(r, now, "10.0.0.1")
        applied.append(time.process_time() - started)
        started = time.process_time()
        model.fold_some(1 << 30)
        folded.append(time.process_time() - started)
    rows["apply"] = min(applied) / N * 1e6
    rows["fold_some (cold)"] = min(folded) / N * 1e6
    # Whole arrivals (verify_deferred + apply) over fresh datagrams, the bodies folded from
    # the queue after all N arrived, against each body folded right after its arrival (its
    # decoded map still in the CPU's caches): is deferring the checks costly by itself?
    verify_deferred, apply, fold_some = verifier.verify_deferred, model.apply, model.fold_some
    queued, hot = [], []
    for _ in range(4):
        data = fleet.encode(N)
        started = time.process_time()
        for d in data:
            apply(verify_deferred(d), now, "10.0.0.1")
        fold_some(1 << 30)
        queued.append(time.process_time() - started)
        data = fleet.encode(N)
        started = time.process_time()
        for d in data:
            apply(verify_deferred(d), now, "10.0.0.1")
            fold_some(1)
        hot.append(time.process_time() - started)
    rows["arrive, fold queued"] = min(queued) / N * 1e6
    rows["arrive, fold at once"] = min(hot) / N * 1e6
    batch = [verifier.verify_deferred(d) for d in fleet.encode(N)]
    rows["decode_report (cold)"] = best(lambda: [decode_report(r) for r in batch])
    ticks = []
    for i in range(3):
        for r in [verifier.verify_deferred(d) for d in fleet.encode(N)]:
            model.apply(r, now, "10.0.0.1")
        model.fold()
        started = time.process_time()
        model.tick(now)
        model.snapshot(now, i)
        ticks.append(time.process_time() - started)
    rows["tick + snapshot"] = min(ticks) / N * 1e6
    import ctop

    print(f"{Path(ctop.__file__).parent.parent}: {N} distinct nodes, µs per report (node)")
    for name, us in rows.items():
        print(f"{name:>22} {us:8.2f}")


if __name__ == "__main__":
    main()
