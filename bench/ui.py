"""UI cost per tick at 100, 1,000 and 10,000 nodes, every node changing every tick, and the
latency of key presses at 10,000 nodes. Target: <= 50 ms per tick at 10,000 nodes, <= 100 ms
per key.

    .venv/bin/python bench/ui.py [--ticks 20] [--sizes 100,1000,10000] [--view table|grid]
                                 [--rounds 3]

Key latency is Textual's pilot: press, wait until the app is idle and repainted. That wait has
a floor of about 55 ms of idle time on its own (see `key down`, which does almost nothing).

The app runs headless (Textual's test driver, 160x50) on a source whose snapshot is replaced
every tick by a fresh one (new NodeView objects for every node: nothing can be cached across
ticks). "tick" is the CPU time of the app taking the new snapshot (filter, sort, group, header,
LB and alerts panes) plus the screen update that follows; the baseline is the CPU time to build
one such snapshot, which the engine pays, not the UI.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctop.snapshot import Snapshot
from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_snapshot

SIZE = (160, 50)


class Rotating(StaticSource):
    """Serves prebuilt snapshots in turn, renumbering ticks so every call is a new tick."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        super().__init__(snaps[0])
        self.snaps, self.n = snaps, 0

    def next(self) -> None:
        self.n += 1
        s = self.snaps[self.n % len(self.snaps)]
        object.__setattr__(s, "tick", self.n)  # frozen dataclass; the bench owns these objects
        self._snaps[0] = s


def build(nodes: int, count: int) -> tuple[list[Snapshot], float]:
    """`count` snapshots whose every node differs; returns them and the CPU ms per build."""
    t = time.process_time()
    snaps = [sample_snapshot(nodes, tick=k + 1, per_service=min(nodes, 500)) for k in range(count)]
    return snaps, (time.process_time() - t) * 1000 / count


async def measure(
    nodes: int, ticks: int, view: str, keys: bool, rounds: int = 3
) -> dict[str, float]:
    snaps, base_ms = build(nodes, 4)
    source = Rotating(snaps)
    app = CtopApp(source, view=view, poll=3600)
    out = {"nodes": nodes, "build_ms": base_ms}
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for _ in range(3):  # warm up caches, CSS, fonts of the compositor
            source.next()
            app.refresh_snapshot()
            await pilot.pause()
        cpu, wall = [], []
        for _ in range(ticks):
            source.next()
            c, w = time.process_time(), time.perf_counter()
            app.refresh_snapshot()
            await pilot.pause()  # let the screen repaint
            cpu.append((time.process_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
        out |= {
            "tick_cpu_ms": statistics.median(cpu),
            "tick_cpu_p95_ms": _p95(cpu),
            "tick_wall_ms": statistics.median(wall),
        }
        if keys:
            out |= await key_latency(app, pilot, rounds)
    return out


KEYS = ("down", "pagedown", "s", "t", "t", "g")


async def key_latency(app: CtopApp, pilot, rounds: int) -> dict[str, float]:
    """Median wall ms per key over `rounds`, from the press until processed and repainted.

    The filter is typed three keys at a time: "typing" is until the keys are taken (a
    debounced filter must not make them wait), "applied" until the narrowed list is shown.
    """
    got: dict[str, list[float]] = {}
    for _ in range(rounds):
        for key in KEYS:
            w = time.perf_counter()
            await pilot.press(key)
            got.setdefault(f"key {key}", []).append((time.perf_counter() - w) * 1000)
        await pilot.press("slash")
        w = time.perf_counter()
        await pilot.press("w", "e", "b")
        got.setdefault("filter 'web' typing", []).append((time.perf_counter() - w) * 1000)
        screen = app.screen
        while getattr(screen, "_filter_timer", None) is not None:
            await asyncio.sleep(0.005)
        await pilot.pause()
        got.setdefault("filter 'web' applied", []).append((time.perf_counter() - w) * 1000)
        assert all("web" in n.node_id for n in screen.arr.nodes)
        await pilot.press("escape")
        await pilot.pause()
    return {k: statistics.median(v) for k, v in got.items()}


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description="ctop UI benchmark")
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--view", default="table", choices=("table", "grid"))
    ap.add_argument("--rounds", type=int, default=3, help="key presses per key (median)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"ctop UI benchmark: {args.view} view, {SIZE[0]}x{SIZE[1]}, {args.ticks} ticks, "
        "every node new each tick (median CPU ms)"
    )
    print(f"{'nodes':>7} {'build snapshot':>15} {'UI tick':>9} {'p95':>7} {'wall':>7}")
    for n in sizes:
        r = asyncio.run(measure(n, args.ticks, args.view, n == max(sizes), args.rounds))
        print(
            f"{n:>7} {r['build_ms']:>13.1f}ms {r['tick_cpu_ms']:>7.1f}ms "
            f"{r['tick_cpu_p95_ms']:>5.1f}ms {r['tick_wall_ms']:>5.1f}ms"
        )
        keys = {k: v for k, v in r.items() if k.startswith(("key", "filter"))}
        if keys:
            print(
                f"key press latency at {n} nodes, median of {args.rounds} "
                "(press until processed and repainted):"
            )
            for k, v in keys.items():
                print(f"  {k:<24} {v:7.1f} ms")


if __name__ == "__main__":
    main()
