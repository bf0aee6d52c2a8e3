"""Group collectors at scale: N `ctop serve --collector` processes, each fed by simulated agents
(signed reports over UDP from a process of their own), publishing into a real 3-node
nats-server cluster on loopback, and one UI subscriber (ctop.nats.view.ClusterView) here.

Prints, over a measured window after every node is seen:
  - end-to-end latency agent datagram -> UI snapshot decoded (p50 / p99), and as a ratio to the
    collectors' tick (a report waits for the next tick: ~tick/2 is the floor);
  - CPU per 1,000 nodes at each tier (agents, collectors, NATS servers, UI), as a share of a core;
  - bytes per node per second through NATS to one subscriber.

The agent's send time travels in the report's `procs` field (milliseconds since the bench
started), so the latency is measured on one clock, from datagram to decoded snapshot.

    .venv/bin/python bench/scale.py --collectors 4 --nodes 500 --seconds 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentd.encoder import encode
from agentd.protocol import Join
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.view import ClusterView, subjects
from tests.helpers.nats_servers import start_cluster
from tests.helpers.serve_helpers import Daemon, Sender

TICK = 1.0


def agents(port: int, key: bytes, names: list[str], group: str, t0: float, until: float,
           interval: float, busy: float) -> None:
    """One process playing `names`: a join each, then a report each `interval`, spread. The
    first `busy` share of them report new values each time (their send time, their cpu); the
    rest the same values every time (an idle node: only its last-seen time moves)."""
    import socket

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    senders = [Sender(n, key=key) for n in names]
    for s in senders:
        udp.sendto(encode(key, Join(s.header(), s.node_id, ("127.0.0.9",), 2, 1 << 30, "bench",
                                    interval, group)), ("127.0.0.1", port))
    gap = interval / max(1, len(senders))
    changing = round(len(senders) * busy)
    while time.time() < until:
        start = time.time()
        for i, s in enumerate(senders):
            due = start + i * gap
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            if i < changing:
                stamp = int((time.time() - t0) * 1000)
                report = s.report(interval=interval, procs=stamp, cpu_percent=stamp % 997 / 10)
            else:
                report = s.report(interval=interval)
            udp.sendto(report, ("127.0.0.1", port))
        rest = start + interval - time.time()
        if rest > 0:
            time.sleep(rest)


class Probe:
    """The UI subscriber: ClusterView fed as usual, plus latency and bytes counted."""

    def __init__(self, t0: float) -> None:
        self.view = ClusterView()
        self.t0 = t0
        self.latencies: list[float] = []
        self.bytes = 0
        self.measuring = False
        self._last: dict[str, int] = {}
        self.seen: set[str] = set()

    def receive(self, data: bytes, subject: str) -> None:
        self.view.receive(data, subject)
        if self.measuring:
            self.bytes += len(data)
        if not subject.endswith(".snap"):
            return
        env = msgpack.unpackb(data)  # the envelope only: the view has applied the delta
        snap = self.view.group_snapshot(env["cluster"], env["group"])
        if snap is None:
            return
        now = time.time()
        for n in snap.nodes:
            self.seen.add(n.node_id)
            if n.procs and self._last.get(n.node_id) != n.procs:
                self._last[n.node_id] = n.procs
                if self.measuring:
                    self.latencies.append(now - (self.t0 + n.procs / 1000))


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--collectors", type=int, default=4)
    p.add_argument("--nodes", type=int, default=500, help="nodes per collector")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window")
    p.add_argument("--interval", type=float, default=1.0, help="agents' report interval")
    p.add_argument("--warm", type=float, default=15.0,
                   help="s before measuring (70: every node's 60-report cpu history is full, "
                        "so an idle node's row no longer changes)")
    p.add_argument("--busy", type=float, default=1.0,
                   help="share of nodes whose values change every report (the rest idle)")
    args = p.parse_args()
    total = args.collectors * args.nodes
    root = Path(tempfile.mkdtemp(prefix="ctop-scale-"))
    cluster = start_cluster(root / "nats")
    servers = ", ".join(f'"{u}"' for u in cluster.urls)
    daemons: list[Daemon] = []
    procs: list[multiprocessing.Process] = []
    link = None
    try:
        t0 = time.time()
        for i in range(args.collectors):
            d_root = root / f"col{i}"
            d_root.mkdir()
            daemons.append(Daemon(d_root, f'tick = {TICK}\n[nats]\nservers = [{servers}]\n'
                                          f'name = "col{i}"\nrole = "collector"\n').start())
        probe = Probe(t0)
        link = NatsLink(NatsConfig(servers=tuple(cluster.urls)), name="bench view").start()
        for subject in subjects("ctop"):
            link.subscribe(subject, probe.receive)
        link.wait_connected(10)
        warm = args.warm
        until = time.time() + warm + args.seconds + 2
        for i, d in enumerate(daemons):
            names = [f"g{i}-n{j:05d}" for j in range(args.nodes)]
            pr = multiprocessing.Process(target=agents, args=(d.port, d.key, names, f"g{i}", t0,
                                                               until, args.interval, args.busy))
            pr.start()
            procs.append(pr)
        deadline = time.time() + warm
        while len(probe.seen) < total and time.time() < deadline:
            time.sleep(0.1)
        if len(probe.seen) < total:
            print(f"only {len(probe.seen)} of {total} nodes reached the view in {warm:g} s",
                  file=sys.stderr)
            return 1
        time.sleep(max(0.0, deadline - time.time()))  # the rest of the warm-up
        tiers = {
            "agents (simulated)": [pr.pid for pr in procs if pr.pid],
            "collectors": [d.proc.pid for d in daemons if d.proc],
            "nats-server x3": [n.proc.pid for n in cluster.nodes if n.proc],
            "UI subscriber": [psutil.Process().pid],
        }
        before = {k: cpu(v) for k, v in tiers.items()}
        start = time.monotonic()
        probe.measuring = True
        time.sleep(args.seconds)
        probe.measuring = False
        span = time.monotonic() - start
        after = {k: cpu(v) for k, v in tiers.items()}
        lat = sorted(probe.latencies)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"{args.collectors} collectors x {args.nodes} nodes = {total} nodes "
              f"({args.busy:.0%} changing), reports every {args.interval:g} s, "
              f"tick {TICK:g} s, {span:.0f} s measured, "
              f"{len(lat)} reports seen by the UI; load average {psutil.getloadavg()[0]:.1f} "
              f"on {psutil.cpu_count()} cores (other work on the machine delays every tier)")
        print(f"latency datagram -> UI snapshot: p50 {p50 * 1000:.0f} ms "
              f"({p50 / TICK:.2f}x tick), p99 {p99 * 1000:.0f} ms ({p99 / TICK:.2f}x tick)")
        print("CPU per 1,000 nodes (share of one core):")
        for k in tiers:
            share = (after[k] - before[k]) / span
            print(f"  {k:20s} {share / total * 1000:6.3f}   (all: {share:.3f})")
        print(f"through NATS to one subscriber: {probe.bytes / span / total:.0f} bytes per node "
              f"per second ({probe.bytes / span / 1e6:.2f} MB/s); "
              f"{probe.view.gaps} deltas that did not fit (a full snapshot asked for)")
        return 0
    finally:
        for pr in procs:
            pr.terminate()
            pr.join(5)
        if link is not None:
            link.close()
        for d in daemons:
            d.stop()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
