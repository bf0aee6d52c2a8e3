"""Director ingest: how many signed reports per second one core verifies and folds in.

A sender process replays reports from N distinct node identities (16-core nodes with 7
services, built with `agentd.encoder.encode`, encoded before each step so that encoding is never
timed) at rising rates, paced in bursts of about a millisecond, to two receiver processes on
127.0.0.1, one step after the other:

- ctop: the real `ctop.receiver.Receiver` with the real `Verifier`, folding every accepted
  message into a real `ClusterModel` (`apply`); by default it also runs the engine's
  once-a-second `tick()` + `snapshot()`, so work deferred from `apply` to the tick is counted;
- bare: the same event loop and socket setup, `add_reader` + non-blocking `recvfrom` until
  EAGAIN, only counting: what receiving alone costs on this machine.

Both receivers run pinned to one core, the sender (and this process) to the other. For each
rate it prints the offered and received rates, loss, and the receiver's CPU time per report
(getrusage of the receiver process over the step, divided by reports received), then the
highest rate kept up with for both (< 0.1 % loss, and received at >= 99 % of the offered rate
counting the time the receiver still drains its buffer after the step: a 2 s step can hide in
a 32 MiB socket buffer) and the CPU ratio ctop / bare, which is the figure that survives a noisy
machine.

    .venv/bin/python bench/ingest.py [--nodes 10000] [--rates 10000,20000,...] [--seconds 2]
                                     [--beacons [--beacon-rates 30000,60000,120000]]

With --beacons it then offers liveness beacons (agentd/beacon.py, 33 bytes, from the same
registered nodes: 10,000 nodes at the default 3 beacons a second are 30,000/s) at
--beacon-rates, and prints the CPU per beacon next to the CPU per report measured above in
the same run, and their ratio.

Targets (issue 4): >= 60,000 verified reports/s on one core; >= 20,000/s without loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import resource
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agentd.beacon import encode_beacon
from agentd.encoder import encode, new_boot_id
from agentd.protocol import SEQ_MOD, Header, Message, RawReport, Report, ServiceStatus
from ctop.ingest.verifier import Verifier

HOST = "127.0.0.1"
KEY = os.urandom(32).hex().encode()
SERVICES = ("http", "https", "smtp", "dns", "ftp", "ssh", "pop3")
LOSS_OK = 0.1  # percent: "lossless" below this...
KEPT_UP = 0.99  # ...and received at >= 99 % of the offered rate: not just absorbed by the buffer


def pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------------------------
# Sender: builds realistic reports, signs them, replays them paced.


class Fleet:
    """N node identities with their boot ids and sequence counters."""

    def __init__(self, nodes: int, seed: int = 4) -> None:
        self.rng = random.Random(seed)
        self.ids = [f"node-{i:05d}.dc1.example.com" for i in range(nodes)]
        self.boots = [new_boot_id() for _ in range(nodes)]
        self.seqs = [0] * nodes
        self.base = [self.rng.uniform(5, 80) for _ in range(nodes)]  # each node's usual CPU

    def metrics(self, i: int) -> dict[str, Any]:
        r = self.rng
        cpu = min(100.0, max(0.0, self.base[i] + r.gauss(0, 5)))
        rx = r.randint(1_000_000, 900_000_000)
        tx = r.randint(1_000_000, 900_000_000)
        conns = r.randint(100, 60_000)
        return {
            "cpu_percent": round(cpu, 1),
            "cpu_cores": [min(100, max(0, round(cpu + r.gauss(0, 8)))) for _ in range(16)],
            "load": [round(cpu / 6.25, 2), round(cpu / 7, 2), round(cpu / 8, 2)],
            "mem_percent": round(r.uniform(30, 95), 1),
            "mem_used": r.randint(20, 60) << 30,
            "mem_total": 64 << 30,
            "swap_percent": round(r.uniform(0, 10), 1),
            "swap_used": r.randint(0, 2 << 30),
            "net_rx_bps": rx,
            "net_tx_bps": tx,
            "net_rx_pps": rx // 900,
            "net_tx_pps": tx // 900,
            "net_rx_bytes": r.randint(1 << 40, 1 << 50),
            "net_tx_bytes": r.randint(1 << 40, 1 << 50),
            "net_ifaces": {
                "bond0": [rx, tx, rx // 900, tx // 900],
                "eth0": [rx // 2, tx // 2, rx // 1800, tx // 1800],
                "eth1": [rx // 2, tx // 2, rx // 1800, tx // 1800],
            },
            "disk_read_bps": r.randint(0, 200_000_000),
            "disk_write_bps": r.randint(0, 200_000_000),
            "disk_root_percent": round(r.uniform(20, 90), 1),
            "users": r.randint(0, 5),
            "tcp_established": conns,
            "tcp_states": {
                "ESTABLISHED": [conns],
                "TIME_WAIT": [conns // 3],
                "SYN_RECV": [r.randint(0, 50)],
                "LISTEN": [12],
            },
            "procs": r.randint(200, 900),
            "procs_rss": r.randint(1 << 30, 40 << 30),
            "threads": r.randint(1_000, 9_000),
            "uptime": r.randint(3_600, 30_000_000),
        }

    def services(self) -> tuple[ServiceStatus, ...]:
        r = self.rng
        out = []
        for name in SERVICES:
            status = "ok" if r.random() > 0.01 else "fail"
            detail = "" if status == "ok" else "connection refused"
            # agents number each probe's results (mod 128), as agentd does
            out.append(ServiceStatus(name, status, round(r.uniform(0.2, 40), 1), detail,
                                          r.randrange(SEQ_MOD)))
        return tuple(out)

    def encode(self, count: int) -> list[bytes]:
        """`count` signed reports, round-robin over the nodes, each with its next sequence."""
        n = len(self.ids)
        # A handful of metric sets per step is realistic enough for the receiver (values
        # differ per node) and keeps pre-encoding, which is not timed, to a few seconds.
        pool = [(self.metrics(i % n), self.services()) for i in range(min(n, 256))]
        out = []
        now = time.time()
        for j in range(count):
            i = j % n
            self.seqs[i] += 1
            metrics, services = pool[j % len(pool)]
            header = Header(self.ids[i], self.boots[i], self.seqs[i], now)
            group = f"rack-{i // 250:02d}"
            out.append(encode(KEY, Report(header, 1.0, group, metrics, services)))
        return out


    def encode_beacons(self, count: int) -> list[bytes]:
        """`count` signed beacons, round-robin over the nodes, each with its next sequence."""
        n = len(self.ids)
        out = []
        for j in range(count):
            i = j % n
            self.seqs[i] += 1
            out.append(encode_beacon(KEY, self.boots[i], self.seqs[i], 0.25))
        return out


def best_us(run: Callable[[], object], reps: int, per: int) -> float:
    """µs of process CPU per item: the least of `reps` runs of `run`, over `per` items."""
    times = []
    for _ in range(reps):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times) / per * 1e6


def verify_costs(nodes: int, reps: int = 5) -> tuple[float, float]:
    """In this process, best of `reps`: µs per report through `Verifier.verify_deferred` (the
    receiver's report path, ordering included) and per beacon through `BeaconVerifier.verify`,
    over the same `nodes` nodes. No sockets: the verify bound of each kind alone."""
    from ctop.ingest.beacons import BeaconVerifier

    fleet = Fleet(nodes)
    reports = fleet.encode(nodes)
    beacons = fleet.encode_beacons(nodes)
    now = time.time()

    def best(run: Callable[[], None]) -> float:
        return best_us(run, reps, nodes)

    def report_pass() -> None:
        verify = Verifier(KEY).verify_deferred
        for d in reports:
            verify(d)

    def known() -> BeaconVerifier:
        bv = BeaconVerifier(KEY)
        for i, boot in enumerate(fleet.boots):
            bv.note(Header(fleet.ids[i], boot, 0, now), now)
        return bv

    def beacon_pass() -> None:
        verify = known().verify
        for d in beacons:
            verify(d, now)

    setup = best(lambda: known())
    return best(report_pass), best(beacon_pass) - setup


def verify_bound(nodes: int, reps: int = 3) -> float:
    """In this process, best of `reps`: µs per report for the HMAC check and one msgpack
    decode of the body, over `nodes` distinct nodes' reports: the floor any Python receiver
    of this wire format pays per report, measured on this machine in this run."""
    import hmac

    from msgpack import unpackb

    from agentd.protocol import HEADER_BYTES, TAG_BYTES

    reports = Fleet(nodes).encode(nodes)
    times = []
    for _ in range(reps):
        started = time.process_time()
        for d in reports:
            payload = d[:-TAG_BYTES]
            hmac.compare_digest(hmac.digest(KEY, payload, "sha256")[:TAG_BYTES],
                                d[-TAG_BYTES:])
            unpackb(payload[HEADER_BYTES:], raw=False, strict_map_key=False)
        times.append(time.process_time() - started)
    return min(times) / nodes * 1e6


def pace(sock: socket.socket, data: list[bytes], rate: float) -> tuple[int, float]:
    """Send `data` at `rate` per second in small bursts; return (sent, seconds)."""
    send = sock.send
    burst = max(4, int(rate / 1000))  # about one millisecond of traffic per burst
    total = len(data)
    sent = errors = 0
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1, sent + 2 * burst)
        if due <= sent:
            time.sleep(0.0002)
            continue
        try:
            for d in data[sent:due]:
                send(d)
        except OSError:  # e.g. ECONNREFUSED from an ICMP: skip the rest of this burst
            errors += 1
        sent = due
    return sent, time.perf_counter() - start


def sender_main(conn: Connection, nodes: int, cpu: int | None) -> None:
    pin(cpu)
    fleet = Fleet(nodes)
    data: list[bytes] = []
    while True:
        cmd = conn.recv()
        if cmd[0] == "encode":
            data = []  # free the previous step first
            data = fleet.encode(cmd[1])
            conn.send(("ready", len(data[0]) if data else 0))
        elif cmd[0] == "encode_beacons":
            data = []
            data = fleet.encode_beacons(cmd[1])
            conn.send(("ready", len(data[0]) if data else 0))
        elif cmd[0] == "send":
            _, port, rate = cmd
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                sock.connect((HOST, port))
                conn.send(pace(sock, data, rate))
        else:
            return


# ---------------------------------------------------------------------------------------------
# Receivers


class Bare:
    """The baseline: non-blocking recvfrom until EAGAIN from add_reader, counting only."""

    def __init__(self) -> None:
        self.count = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def open(self) -> int:
        from ctop.receiver import grow_receive_buffer

        grow_receive_buffer(self.sock)  # the same buffer as the real receiver
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._drain)
        return self.sock.getsockname()[1]

    def _drain(self) -> None:
        recv = self.sock.recvfrom
        n = 0
        for _ in range(512):  # same batch bound as the real receiver
            try:
                recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            n += 1
        self.count += n

    def stats(self) -> dict[str, Any]:
        return {"count": self.count, "drops": {}, "nodes": 0}


class Ctop:
    """The real thing: Receiver + Verifier + ClusterModel.apply (+ the engine's tick)."""

    def __init__(self, tick: bool, deferred: bool = True, gc_freeze: bool = True) -> None:
        from ctop.cluster import ClusterModel
        from ctop.gcpolicy import HeapFreezer
        from ctop.receiver import Receiver

        self.model = ClusterModel("bench")
        apply = self.model.apply

        def on_message(msg: Message | RawReport, source: str, now: float) -> None:
            apply(msg, now, source)

        beacon = self.model.beacon

        def on_beacon(b: Any, source: str, now: float) -> None:
            beacon(b, now)

        self.receiver = Receiver(Verifier(KEY), on_message, HOST, 0, deferred=deferred,
                                 on_beacon=on_beacon)
        self.model.on_reject = lambda rejected, source: self.receiver.count_drop(
            rejected, source, accepted=True)
        # as the engine does
        from ctop.engine import FOLD_AGE, FOLD_BATCH
        from ctop.receiver import BATCH

        self.receiver.on_idle = lambda: self.model.fold_some(FOLD_BATCH)
        self.receiver.on_busy = lambda now: self.model.fold_some(BATCH, now - FOLD_AGE)
        self.tick = tick
        # As the engine does (ctop.gcpolicy); --gc-default leaves the collector alone.
        self.heap = HeapFreezer() if gc_freeze else HeapFreezer(freeze_above=1 << 62)
        self.ticks = 0
        self.tick_cpu = 0.0

    def open(self) -> int:
        self.receiver.open()
        if self.tick:
            asyncio.get_running_loop().create_task(self._tick_loop())
        return self.receiver.port

    async def _tick_loop(self) -> None:
        # What Engine.tick does with the model each second (alerts and store aside).
        while True:
            await asyncio.sleep(1.0)
            started = time.process_time()
            now = time.time()
            self.ticks += 1
            self.model.tick(now)
            snap = self.model.snapshot(now, self.ticks)
            self.heap.after_tick(len(snap.nodes))
            self.tick_cpu += time.process_time() - started

    def stats(self) -> dict[str, Any]:
        return {
            "count": self.receiver.accepted,
            "drops": dict(self.receiver.drops),
            "nodes": len(self.model.nodes),
            "tick_cpu": self.tick_cpu,
            "ticks": self.ticks,
        }


def receiver_main(conn: Connection, kind: str, cpu: int | None, tick: bool) -> None:
    pin(cpu)

    async def serve() -> None:
        impl: Bare | Ctop = Bare() if kind == "bare" else Ctop(
            tick, deferred="eager" not in kind, gc_freeze="gc-default" not in kind)
        port = impl.open()
        done = asyncio.get_running_loop().create_future()

        def on_command() -> None:
            cmd = conn.recv()
            if cmd == "stats":
                conn.send({**impl.stats(), "cpu": cpu_seconds()})
            elif not done.done():
                done.set_result(None)

        asyncio.get_running_loop().add_reader(conn.fileno(), on_command)
        conn.send(port)
        await done

    asyncio.run(serve())


# ---------------------------------------------------------------------------------------------
# Orchestration


class Proc:
    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()

    def ask(self, cmd: Any, timeout: float = 120.0) -> Any:
        self.conn.send(cmd)
        return self.recv(timeout)

    def recv(self, timeout: float = 120.0) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no answer from {self.proc.name}")
        return self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(("quit",))
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def settle(rx: Proc) -> tuple[dict[str, Any], float]:
    """Stats once the receiver has drained its socket (the count stops moving), and how long
    after the call the last report was still being taken in."""
    started = time.perf_counter()
    last = rx.ask("stats")
    moved = 0.0
    for _ in range(200):
        time.sleep(0.05)
        now = rx.ask("stats")
        if now["count"] == last["count"]:
            return now, moved
        moved = time.perf_counter() - started
        last = now
    return last, moved


def step(sender: Proc, rx: Proc, port: int, rate: float) -> dict[str, float]:
    before = rx.ask("stats")
    sent, seconds = sender.ask(("send", port, rate))
    after, draining = settle(rx)
    got = after["count"] - before["count"]
    cpu = after["cpu"] - before["cpu"]
    drops = sum(after["drops"].values()) - sum(before["drops"].values())
    reasons = {k: n - before["drops"].get(k, 0) for k, n in after["drops"].items()
               if n != before["drops"].get(k, 0)}
    return {
        "offered": sent / seconds,
        # over the sending time plus the time the receiver still drained its buffer after
        "received": got / (seconds + draining),
        "loss": 100.0 * (sent - got) / sent if sent else 0.0,
        "us": 1e6 * cpu / got if got else float("inf"),
        # the same without the model's 1 s tick + snapshot (its CPU is counted apart)
        "us_ingest": 1e6 * (cpu - after.get("tick_cpu", 0) + before.get("tick_cpu", 0)) / got
        if got else float("inf"),
        "rejected": drops,
        "reasons": reasons,  # type: ignore[dict-item]
        "tick_ms": 1e3 * (after.get("tick_cpu", 0) - before.get("tick_cpu", 0))
        / max(1, after.get("ticks", 0) - before.get("ticks", 0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rates", default="10000,20000,30000,40000,60000,80000,100000")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each rate step")
    ap.add_argument("--no-tick", action="store_true", help="leave out the model's 1 s tick")
    ap.add_argument("--eager", action="store_true",
                    help="check every report's body on arrival (Receiver(deferred=False))")
    ap.add_argument("--gc-default", action="store_true",
                    help="leave Python's cyclic GC as it is (no ctop.gcpolicy heap freezing)")
    ap.add_argument("--beacons", action="store_true",
                    help="then offer liveness beacons at --beacon-rates")
    ap.add_argument("--beacon-rates", default="30000,60000,120000")
    ap.add_argument("--rx-cpu", type=int, default=0, help="core for the receivers")
    ap.add_argument("--tx-cpu", type=int, default=1, help="core for the sender and this process")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    ncpu = os.cpu_count() or 1
    rx_cpu = args.rx_cpu if ncpu > 1 else None
    tx_cpu = args.tx_cpu if ncpu > 1 else None
    pin(tx_cpu)

    mp.set_start_method("fork")
    sender = Proc(sender_main, args.nodes, tx_cpu)
    receivers = {
        "bare": Proc(receiver_main, "bare", rx_cpu, False),
        "ctop": Proc(receiver_main, "ctop" + "-eager" * args.eager
                     + "-gc-default" * args.gc_default, rx_cpu,
                     not args.no_tick),
    }
    ports = {name: p.recv() for name, p in receivers.items()}
    rows: list[tuple[float, dict[str, float], dict[str, float]]] = []
    try:
        # Warm-up: every node reports once, so registration (a join event per node) and the
        # first allocations are not part of the steady state measured below.
        size = sender.ask(("encode", args.nodes))[1]
        for name, p in receivers.items():
            sender.ask(("send", ports[name], 20_000.0))
            settle(p)
        print(f"{args.nodes} nodes, {size}-byte reports (16 cores, 7 services), "
              f"{args.seconds:g} s per step, receivers on cpu {rx_cpu}, sender on cpu {tx_cpu}, "
              f"tick {'off' if args.no_tick else 'on'}")
        print(f"{'offered/s':>10} | {'bare recv/s':>11} {'loss %':>7} {'µs/rep':>7} | "
              f"{'ctop recv/s':>11} {'loss %':>7} {'µs/rep':>7} | {'ratio':>5}")
        for rate in rates:
            sender.ask(("encode", int(rate * args.seconds)))
            b = step(sender, receivers["bare"], ports["bare"], rate)
            c = step(sender, receivers["ctop"], ports["ctop"], rate)
            rows.append((rate, b, c))
            note = f"  (rejected: {c['reasons']})" if c["rejected"] else ""
            print(f"{c['offered']:>10,.0f} | {b['received']:>11,.0f} {b['loss']:>7.2f} "
                  f"{b['us']:>7.2f} | {c['received']:>11,.0f} {c['loss']:>7.2f} "
                  f"{c['us']:>7.2f} | {c['us'] / b['us']:>5.1f}{note}", flush=True)
        beacon_rows: list[tuple[float, dict[str, float], dict[str, float]]] = []
        if args.beacons:
            print(f"\nbeacons ({len(encode_beacon(KEY, 1, 1, 0.25))} bytes) from the same "
                  f"{args.nodes} registered nodes")
            print(f"{'offered/s':>10} | {'bare recv/s':>11} {'loss %':>7} {'µs/bcn':>7} | "
                  f"{'ctop recv/s':>11} {'loss %':>7} {'µs/bcn':>7} | {'ratio':>5}")
            for rate in (float(r) for r in args.beacon_rates.split(",")):
                # One report per node first: a beacon counts only for a boot with a message
                # in the last 30 s (agentd/beacon.py), and the report steps took a while.
                sender.ask(("encode", args.nodes))
                for name, p in receivers.items():
                    sender.ask(("send", ports[name], 20_000.0))
                    settle(p)
                sender.ask(("encode_beacons", int(rate * args.seconds)))
                b = step(sender, receivers["bare"], ports["bare"], rate)
                c = step(sender, receivers["ctop"], ports["ctop"], rate)
                beacon_rows.append((rate, b, c))
                note = f"  (rejected: {c['reasons']})" if c["rejected"] else ""
                print(f"{c['offered']:>10,.0f} | {b['received']:>11,.0f} {b['loss']:>7.2f} "
                      f"{b['us']:>7.2f} | {c['received']:>11,.0f} {c['loss']:>7.2f} "
                      f"{c['us']:>7.2f} | {c['us'] / b['us']:>5.1f}{note}", flush=True)
    finally:
        for p in (sender, *receivers.values()):
            p.stop()

    def best(i: int) -> tuple[float, float]:
        ok = [r for r in rows
              if r[i]["loss"] < LOSS_OK and r[i]["received"] >= KEPT_UP * r[i]["offered"]]
        return (max(r[i]["offered"] for r in ok), max(r[i]["received"] for r in rows)) if ok \
            else (0.0, max(r[i]["received"] for r in rows))

    (bare_ok, bare_peak), (ctop_ok, ctop_peak) = best(1), best(2)
    # CPU per report where the receiver is saturated (the highest offered rate): wake-ups
    # and the 1 s tick are spread over the most reports there, so it is the capacity figure.
    top = max(rows, key=lambda r: r[0])
    bare_us, ctop_us = top[1]["us"], top[2]["us"]
    tick_ms = max(r[2]["tick_ms"] for r in rows)
    print()
    print(f"highest rate kept up with (< {LOSS_OK} % loss, >= {100 * KEPT_UP:.0f} % received "
          f"in step time + drain): bare {bare_ok:,.0f}/s, ctop {ctop_ok:,.0f}/s "
          f"(ratio {ctop_ok / bare_ok if bare_ok else 0:.2f}); peak received: "
          f"bare {bare_peak:,.0f}/s, ctop {ctop_peak:,.0f}/s")
    print(f"CPU per report at {top[0]:,.0f}/s offered: bare {bare_us:.2f} µs, "
          f"ctop {ctop_us:.2f} µs "
          f"(ratio {ctop_us / bare_us:.1f}); one core at that cost: "
          f"{1e6 / ctop_us:,.0f} verified reports/s")
    bound_us = verify_bound(min(args.nodes, 20_000))
    bound = 1e6 / bound_us
    print(f"verify bound (HMAC + msgpack decode of the body, in this process, this run): "
          f"{bound_us:.2f} µs = {bound:,.0f} reports/s on one core; ctop applied "
          f"{1e6 / ctop_us:,.0f}/s = {1e6 / ctop_us / bound:.2f} of it (target 0.4), "
          f"lossless {ctop_ok:,.0f}/s = {ctop_ok / bound:.2f}")
    if beacon_rows:
        report_verify, beacon_verify = verify_costs(args.nodes)
        print(f"verify bound in one process (best of 5 x {args.nodes}): report "
              f"{report_verify:.2f} µs (Verifier.verify_deferred), beacon {beacon_verify:.2f} µs "
              f"(BeaconVerifier.verify): beacon / report = {beacon_verify / report_verify:.2f}")
        btop = max(beacon_rows, key=lambda r: r[0])
        beacon_us = btop[2]["us"]
        nominal = args.nodes * 3  # default agents: 3 beacons a second between reports
        beacon_ingest, report_ingest = btop[2]["us_ingest"], top[2]["us_ingest"]
        print(f"CPU per beacon at {btop[0]:,.0f}/s offered: bare {btop[1]['us']:.2f} µs, "
              f"ctop {beacon_us:.2f} µs; per report (above, same run) {ctop_us:.2f} µs: "
              f"beacon / report = {beacon_us / ctop_us:.2f}")
        print(f"the same without the 1 s tick + snapshot (counted apart): beacon "
              f"{beacon_ingest:.2f} µs, report {report_ingest:.2f} µs: beacon / report = "
              f"{beacon_ingest / report_ingest:.2f}")
        print(f"{args.nodes} nodes' beacons ({nominal:,}/s): "
              f"{nominal * beacon_ingest / 1e4:.1f} % of one core (receive, verify, apply)")
    if not args.no_tick:
        print(f"model tick + snapshot of {args.nodes} nodes: {tick_ms:.0f} ms CPU per second "
              "(included in ctop's µs/report; target <= 200 at 60,000 nodes)")


if __name__ == "__main__":
    main()
