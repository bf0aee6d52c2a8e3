"""Liveness with real agents: time to dead after a stop, false deaths under loss.

A real `ctop serve` and real agentd processes, each agent in its own network namespace behind a
veth; loss and cuts are nft netdev ingress rules on the director's end of each link
(tests/netns_lab.py). Every setting is the default, except that `--old-nodes` agents run with
`--beacon-interval 0` (reports only: what an agent from before beacons sends) as the baseline.

1. Stops, each `--repeats` times on a new and on an old node, at a random phase: kill -9,
   SIGSTOP, link cut (100 % loss): seconds from the stop until the daemon's snapshot (the
   control socket `ctop status` reads) shows the node dead; SIGTERM: until it shows left.
2. Soak: `--loss` % random loss on every node's link for `--minutes`; the suspect and dead
   episodes per node, from the daemon's events.

    sudo .venv/bin/python bench/liveness.py [--nodes 6] [--old-nodes 2] [--minutes 10]
                                            [--loss 30] [--repeats 3]

Targets (issue 10): dead <= 3 s after kill -9, SIGSTOP or a cut link; no dead episode at 30 %
loss; suspect rare; left at once after SIGTERM.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.netns_lab import Lab, transitions, usable

DEAD_TARGET = 3.0
OLD = ("--beacon-interval", "0")


def stop_and_time(lab: Lab, i: int, how: str, old: bool) -> float:
    """Stop node i one way, return seconds until the daemon shows it dead (left for term),
    then bring it back and wait until it is alive."""
    node = f"node-{i}"
    time.sleep(random.uniform(0.0, 1.0))  # any phase against the beacons and reports
    if how == "kill -9":
        lab.signal(i, signal.SIGKILL)
    elif how == "SIGSTOP":
        lab.signal(i, signal.SIGSTOP)
    elif how == "link cut":
        lab.loss(i, 100)
    elif how == "SIGTERM":
        lab.agents[i].send_signal(signal.SIGTERM)  # timed from the signal, not the exit
    took = lab.wait_for(node, "left" if how == "SIGTERM" else "dead", 15.0)
    if how == "SIGTERM":
        lab.agents[i].wait(timeout=10)
    if how in ("kill -9", "SIGTERM"):
        lab.start_agent(i, *(OLD if old else ()))
    elif how == "SIGSTOP":
        lab.signal(i, signal.SIGCONT)
    else:
        lab.loss(i, 0)
    lab.wait_for(node, "alive", 15.0, poll=0.1)
    time.sleep(1.5)  # a few reports, so the next stop starts from the steady state
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=6, help="agents with the default settings")
    ap.add_argument("--old-nodes", type=int, default=2, help="agents without beacons")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the loss soak")
    ap.add_argument("--loss", type=float, default=30.0, help="percent lost on every link")
    ap.add_argument("--repeats", type=int, default=3, help="stops of each kind per node type")
    ap.add_argument("--no-stops", action="store_true", help="only the soak")
    args = ap.parse_args()
    why = usable()
    if why:
        print(f"bench/liveness.py: {why}", file=sys.stderr)
        return 2
    total = args.nodes + args.old_nodes
    old = set(range(args.nodes, total))
    with tempfile.TemporaryDirectory(prefix="liveness-") as tmp:
        lab = Lab(total, Path(tmp)).up()
        try:
            lab.start_director()
            for i in range(total):
                lab.start_agent(i, *(OLD if i in old else ()))
            for i in range(total):
                if lab.wait_for(f"node-{i}", "alive", 20.0, poll=0.1) == float("inf"):
                    print(f"node-{i} never came up", file=sys.stderr)
                    return 1
            print(f"{args.nodes} agents with default settings (beacons every 0.25 s), "
                  f"{args.old_nodes} without beacons (reports only), ctop serve defaults")
            worst = 0.0
            if not args.no_stops:
                worst = stops(lab, args.repeats, new=0, old_node=min(old, default=None))
            dead_new, _ = soak(lab, args.minutes, args.loss, old)
        finally:
            lab.down()
    ok = worst <= DEAD_TARGET and dead_new == 0
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


def stops(lab: Lab, repeats: int, new: int, old_node: int | None) -> float:
    print("\nseconds from the stop until the daemon's snapshot shows it "
          f"(median, min-max of {repeats})")
    print(f"{'stop':10} {'shows':6} | {'default agent':>22} | {'reports only':>22} | ratio")
    worst = 0.0
    for how in ("kill -9", "SIGSTOP", "link cut", "SIGTERM"):
        times = [stop_and_time(lab, new, how, old=False) for _ in range(repeats)]
        if how != "SIGTERM":
            worst = max(worst, *times)
        base = [stop_and_time(lab, old_node, how, old=True) for _ in range(repeats)] \
            if old_node is not None else []

        def cell(ts: list[float]) -> str:
            if not ts:
                return "-"
            return f"{statistics.median(ts):.2f} ({min(ts):.2f}-{max(ts):.2f})"

        ratio = f"{statistics.median(base) / statistics.median(times):.1f}" if base else "-"
        print(f"{how:10} {'left' if how == 'SIGTERM' else 'dead':6} | {cell(times):>22} | "
              f"{cell(base):>22} | {ratio}", flush=True)
    return worst


def soak(lab: Lab, minutes: float, loss: float, old: set[int]) -> tuple[int, int]:
    total = lab.count
    for i in range(total):
        lab.loss(i, loss)
    print(f"\nsoak: {loss:g} % random loss on every node's link for {minutes:g} minutes",
          flush=True)
    before = lab.status()
    earlier = set(transitions(before["events"])) if before else set()  # from the stops
    seen: set[tuple[float, str, str]] = set()
    losses: dict[str, list[float]] = {f"node-{i}": [] for i in range(total)}
    start, wall = time.monotonic(), time.time()
    next_note = start + 60
    while time.monotonic() - start < minutes * 60:
        time.sleep(1.0)
        s = lab.status()
        if s is None:
            continue
        for t in transitions(s["events"]):
            if t not in seen and t not in earlier:
                seen.add(t)
                print(f"  {time.monotonic() - start:6.1f} s  {t[1]} → {t[2]} "
                      f"(event at {t[0] - wall:+.1f} s)", flush=True)
        for n in s["nodes"]:
            losses[n["node_id"]].append(n["loss"])
        if time.monotonic() >= next_note:
            print(f"  {(time.monotonic() - start) / 60:.0f} min", flush=True)
            next_note += 60
    for i in range(total):
        lab.loss(i, 0)
    episodes = Counter((node, state) for _, node, state in seen)
    print(f"{'node':8} {'agent':14} {'measured loss':>13} {'suspect':>8} {'dead':>5}")
    dead_new = suspect_new = 0
    for i in range(total):
        node = f"node-{i}"
        kind = "reports only" if i in old else "default"
        measured = statistics.mean(losses[node]) * 100 if losses[node] else float("nan")
        sus, dead = episodes[(node, "suspect")], episodes[(node, "dead")]
        if i not in old:
            dead_new += dead
            suspect_new += sus
        print(f"{node:8} {kind:14} {measured:12.1f}% {sus:8} {dead:5}")
    new_minutes = minutes * (total - len(old))
    print(f"default agents: {dead_new} dead and {suspect_new} suspect episodes in "
          f"{new_minutes:g} node-minutes")
    return dead_new, suspect_new


if __name__ == "__main__":
    sys.exit(main())
