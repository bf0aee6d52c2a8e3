"""What an attached `ctop` costs per poll: encoding a 10,000-node snapshot in the daemon and
decoding it in the UI, plain form (`ctop status --json`'s) against the compact one the UI
polls (`ctop.codec.pack_compact`), with a real ClusterModel fed real signed reports.

    .venv/bin/python bench/attach.py [--nodes 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
from ingest import KEY, Fleet

from ctop.cluster import ClusterModel
from ctop.codec import from_plain, pack_compact, to_plain, unpack_compact
from ctop.ingest.verifier import Verifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fleet, verifier, model = Fleet(args.nodes), Verifier(KEY), ClusterModel("bench")
    now = time.time()
    for data in fleet.encode(args.nodes):
        model.apply(verifier.verify_deferred(data), now, "10.0.0.1")
    snap = model.snapshot(now, 1)
    watched = [snap.nodes[0].node_id]

    def plain_pack() -> bytes:
        return msgpack.packb(to_plain(snap))

    def plain_unpack(b: bytes) -> object:
        return from_plain(msgpack.unpackb(b, strict_map_key=False))

    rows = []
    for name, pack, unpack in (
        ("plain (status --json)", plain_pack, plain_unpack),
        ("compact (attached UI)", lambda: pack_compact(snap, watched), unpack_compact),
    ):
        enc, dec = [], []
        for _ in range(args.rounds):
            t = time.process_time()
            body = pack()
            enc.append(time.process_time() - t)
            t = time.process_time()
            unpack(body)
            dec.append(time.process_time() - t)
        rows.append((name, len(body), statistics.median(enc), statistics.median(dec)))
    print(f"{args.nodes} nodes, 16-core reports with 7 services; median CPU of {args.rounds}")
    print(f"{'form':<24} {'size':>9} {'daemon encode':>14} {'UI decode':>10}")
    for name, size, e, d in rows:
        print(f"{name:<24} {size / 1e6:>7.1f}MB {e * 1e3:>12.0f}ms {d * 1e3:>8.0f}ms")
    base, new = rows[0], rows[1]
    print(f"compact / plain: size {new[1] / base[1]:.2f}, encode {new[2] / base[2]:.2f}, "
          f"decode {new[3] / base[3]:.2f}")


if __name__ == "__main__":
    main()
