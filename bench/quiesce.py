"""Time from a service failure to its auto-quiesce, on a real demo cluster: real agentd
processes probing real web servers behind a real HAProxy, the engine with its default cadence
(tick 1 s, lb_every 2 s). Each trial stops one web server at a random moment against the
probes' phase and times until HAProxy shows it drained; then starts it again and waits for the
restore. Prints each profile's times against its bound, quiesce_after × probe interval + the
agent's report interval (the ratio must stay ≤ 1).

    .venv/bin/python bench/quiesce.py [--trials 3] [--profiles default,fast,p2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.lb.config import parse_config


@dataclass(frozen=True)
class Profile:
    name: str
    probe_interval: float  # seconds between probe results
    report_interval: float  # agentd --interval
    quiesce_after: int
    restore_after: int

    @property
    def bound(self) -> float:
        return self.quiesce_after * self.probe_interval + self.report_interval


PROFILES = {
    "default": Profile("default", 10.0, 1.0, 3, 2),  # probes' default interval, [lb] defaults
    "p2": Profile("p2", 2.0, 1.0, 3, 2),  # the defaults with 2 s probes
    "fast": Profile("fast", 1.0, 0.5, 2, 2),  # docs/loadbalancer.md's faster profile
}


def state(engine: Engine, server: str) -> str:
    for svc in engine.snapshot().lb:
        for rs in svc.servers:
            if svc.key == "web" and rs.key == server:
                return rs.state
    return ""


def drained_on_haproxy(demo: DemoCluster, server: str) -> bool:
    """Straight from HAProxy's admin socket: the moment the change is real (the engine's
    snapshot shows it at its next tick)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(demo.admin_socket))
        s.sendall(b"show servers state web\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        f = line.split()
        if len(f) > 7 and f[3] == server:
            return bool(int(f[6]) & 0x08)  # srv_admin_state: drain
    return False


async def wait(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.01)


async def run(p: Profile, trials: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="ctop-bench-quiesce-"))
    demo = DemoCluster(nodes=3, workdir=work, interval=p.report_interval,
                       probe_interval=p.probe_interval, traffic_per_s=2)
    demo.start()
    cfg = demo.config()
    lb = replace(cfg.lb, automation=parse_config({"automation": {"web": {
        "quiesce_after": p.quiesce_after, "restore_after": p.restore_after}}}).automation)
    engine = Engine(replace(cfg, lb=lb))  # default tick and lb_every
    await engine.start()
    times = []
    try:
        await wait(lambda: all(state(engine, f"web-0{i}") == "serving" for i in (1, 2, 3)), 30)
        assert not drained_on_haproxy(demo, "web-02")
        await asyncio.sleep(p.probe_interval * (p.restore_after + 1))  # good streaks first
        for _ in range(trials):
            await asyncio.sleep(random.uniform(0, p.probe_interval))  # any phase vs. probes
            start = time.monotonic()
            demo.stop_web(1)
            await wait(lambda: drained_on_haproxy(demo, "web-02"), p.bound + 30)
            times.append(time.monotonic() - start)
            demo.start_web_again(1)
            # restored on HAProxy itself (the engine's snapshot lags by up to a tick), then
            # good streaks again before the next failure
            await wait(lambda: not drained_on_haproxy(demo, "web-02"),
                       p.probe_interval * (p.restore_after + 2) + 10)
            await asyncio.sleep(p.probe_interval * (p.restore_after + 1))
    finally:
        await engine.stop()
        await asyncio.to_thread(demo.stop)
        shutil.rmtree(work, ignore_errors=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--profiles", default="fast,p2,default")
    args = ap.parse_args()
    if not shutil.which("haproxy"):
        sys.exit("bench/quiesce.py needs haproxy")
    print(f"{'profile':<8} {'probe':>6} {'report':>6} {'after':>5} {'bound':>6}  "
          f"{'times (s)':<24} {'max/bound':>9}")
    for name in args.profiles.split(","):
        p = PROFILES[name]
        times = asyncio.run(run(p, args.trials))
        shown = " ".join(f"{t:.2f}" for t in times)
        print(f"{p.name:<8} {p.probe_interval:>5g}s {p.report_interval:>5g}s "
              f"{p.quiesce_after:>5} {p.bound:>5.1f}s  {shown:<24} "
              f"{max(times) / p.bound:>9.2f}   (median {statistics.median(times):.2f} s)",
              flush=True)


if __name__ == "__main__":
    main()
