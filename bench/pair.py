"""What a pair-consistent action costs over NATS: the time from the acting director's
PairSync.act to the peer's confirmation, against the bare NATS round trip measured side by side
in the same run (a KV put answered by the other connection's watch writing a key back).

Starts a real nats-server (Debian's, JetStream, loopback, a temporary store) and two PairSync
sides in this process, each on its own connection, whose balancers are callbacks that answer at
once: what is measured is ctop's path (intent, watch, applier thread, confirmation, polling),
not a balancer. Prints p50 / p99 of each and the ratio pair / baseline.

    .venv/bin/python bench/pair.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctop.lb.actions import ActionResult
from ctop.lb.base import ServerState
from ctop.lb.journal import Actor
from ctop.lb.request import ActionRequest
from ctop.nats.config import NatsConfig
from ctop.nats.link import KVEntry, NatsLink
from ctop.nats.pair import PairSync
from tests.helpers.nats_servers import NatsServer


def ok(req: ActionRequest) -> ActionResult:
    return ActionResult(True, "done", req.action, req.balancer, req.service, req.server, 1, 0,
                        ServerState.SERVING, ServerState.DRAINED, applied=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def baseline(url: str, rounds: int) -> list[float]:
    """A put on one connection, seen by the other's watch, answered by a put it watches."""
    a = NatsLink(NatsConfig(servers=(url,))).start()
    b = NatsLink(NatsConfig(servers=(url,))).start()
    a.wait_connected(10), b.wait_connected(10)
    got = threading.Event()

    def echo(e: KVEntry) -> None:  # b: answer each ping (off the NATS thread, as PairSync)
        threading.Thread(target=b.kv_put, args=("bench_rtt", "pong", e.value)).start()

    b.watch("bench_rtt", "ping", echo)
    a.watch("bench_rtt", "pong", lambda e: got.set())
    time.sleep(0.5)
    out = []
    for i in range(rounds):
        got.clear()
        t = time.perf_counter()
        a.kv_put("bench_rtt", "ping", str(i).encode())
        got.wait(5)
        out.append(time.perf_counter() - t)
    a.close(), b.close()
    return out


def pair(url: str, rounds: int) -> list[float]:
    sides = []
    for me, peer in (("dir-a", "dir-b"), ("dir-b", "dir-a")):
        cfg = NatsConfig(servers=(url,), name=me, peers=(peer,))
        link = NatsLink(cfg).start()
        link.wait_connected(10)
        sides.append((link, PairSync(link, cfg, "bench", apply=lambda r, a: ok(r),
                                     on_events=lambda evs: None)))
    for _, sync in sides:
        sync.round(())
    time.sleep(0.5)
    a = sides[0][1]
    out = []
    for i in range(rounds):
        req = ActionRequest("weight", "haproxy", "web", f"s{i % 50}", value=i % 7 + 1)
        t = time.perf_counter()
        res = a.act(req, Actor("bench"), ok)
        out.append(time.perf_counter() - t)
        assert res.ok, res.message
    for link, sync in sides:
        sync.close()
        link.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer("bench", Path(tmp)).start().wait_ready()
        try:
            base = baseline(server.url, args.rounds)
            mine = pair(server.url, args.rounds)
        finally:
            server.stop()
    for name, xs in (("NATS round trip (baseline)", base), ("pair action confirmed", mine)):
        print(f"{name:28} p50 {pct(xs, .5) * 1e3:6.2f} ms  p99 {pct(xs, .99) * 1e3:6.2f} ms  "
              f"mean {statistics.fmean(xs) * 1e3:6.2f} ms")
    print(f"ratio pair / baseline: p50 {pct(mine, .5) / pct(base, .5):.2f}x, "
          f"p99 {pct(mine, .99) / pct(base, .99):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
