"""The UI's cost and stalls, each printed next to a baseline tree measured in the same run.

    .venv/bin/python bench/ui.py ticks [--sizes 100,1000,10000] [--ticks 20] [--view table|grid]
    .venv/bin/python bench/ui.py keys [--nodes 10000] [--rounds 3] [--view table|grid]
    .venv/bin/python bench/ui.py keys --tmux [--nodes 10000] [--rounds 3] [--interval 10]
    .venv/bin/python bench/ui.py idle [--nodes 2000] [--seconds 30] [--warmup 20]
    .venv/bin/python bench/ui.py soak [--nodes N] [--minutes 30] [--every 60]   (1,000 and 10,000)
    .venv/bin/python bench/ui.py garbage [--nodes 1000] [--ticks 20] [--view table|grid]
    .venv/bin/python bench/ui.py decode [--nodes 2000] [--ticks 20]
    .venv/bin/python bench/ui.py past [--nodes 10000] [--steps 5] [--history 12] [--db PATH]
    every mode: [--baseline REV]  (default a11a86b, main before issue 12; past: d869bc4, the
    past view before its steps were made cheap; "none": skip it)

The baseline is `git archive REV` unpacked in a temporary directory and run with the same
venv and this same bench code (only the `ctop` package differs), one process per tree:

- ticks: CPU of the app taking a new snapshot (every node new) and repainting, per size.
- keys: every main-screen key at 10,000 nodes, wall and CPU from the press until the app is
  idle and repainted (Textual's pilot; its wait has a floor of a few tens of ms on its own:
  see `down`). The filter is typed one key at a time, each until its result is shown.
- keys --tmux: the same keys in a real terminal: a real `ctop serve` fed by real signed UDP
  (`--nodes` distinct nodes, each reporting every `--interval` s), each tree's real `ctop`
  attached in tmux at 200x50, the trees taking turns key by key; wall time from `send-keys`
  until `capture-pane` shows the key's result (bench/ui_tmux.py), and the floor: a key
  echoed by `cat` in another pane, through the same tmux and polling.
- idle: a real `ctop serve` fed by real signed UDP reports (constant metrics: nothing on
  screen changes but ages), and the real `ctop` attached to it in tmux at 200x50, one per
  tree side by side, both at once on the same daemon; the CPU of each UI process over
  `--seconds` after `--warmup` (/proc/PID/stat).
- soak: the app headless at 200x50 for `--minutes`, fed like an attached UI (a thread
  decodes a new snapshot every second, every node changed: fresh objects every tick; a tree
  with ui wire 2 applies the daemon's delta answers in frames), both trees at once.
  Every `--every` seconds: RSS and the longest event-loop stall (a 10 ms sleeper's lateness),
  the app's own part of it (the lateness capped by the CPU the app's threads used meanwhile:
  on a shared machine, lateness while other processes held the cores is not the app's), the
  load average and the longest garbage-collector pass; at the end the longest stall after the
  first minute (intervals that began at 60 s or later) and RSS growth after warm-up.
  `--explain MS`:
  every stall over MS with what ran meanwhile (the app's tick, the screen's repaint, the
  decode thread, GC passes by generation).
- decode: the attached UI's polling thread alone (no daemon, no screen): CPU to take a new
  tick of an idle cluster (every node reported, nothing else moved), and how late the main
  thread's 1 ms sleeper gets while another thread decodes a full snapshot (the GIL held;
  the collector off meanwhile, as the app's frozen heap has it).
- past: a real history database of `--history` minutes at `--nodes` written through the
  Store (ticks every 10 s, state events, LB rounds), then in each tree: `PastSource.move(-60)`
  alone (wall, CPU), and the app in the past pressing ← `--steps` times: the key's wall time
  until the header says "loading" (a tree that does), how late a 10 ms sleeper on the event
  loop gets while the moment is read and shown, and the time until the new moment is shown.
- garbage: objects only the cyclic collector could free (gc.DEBUG_SAVEALL) per tick, by type.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "a11a86b"  # main before issue 12
PAST_BASELINE = "d869bc4"  # the past view (T, ←/→) before lane ui's steps
SIZE = (160, 50)
SOAK_SIZE = (200, 50)


def _tree_from_argv() -> Path:
    """`--tree DIR`: run the `ctop` package of DIR instead of this checkout's."""
    if "--tree" not in sys.argv:
        return ROOT
    i = sys.argv.index("--tree")
    tree = Path(sys.argv[i + 1])
    del sys.argv[i : i + 2]
    # the venv's editable install maps `ctop` (agentd, probes) to this checkout: drop it
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    return tree


TREE = _tree_from_argv()
sys.path.insert(0, str(TREE))
sys.path.insert(1, str(ROOT / "bench"))


# -- the app on a source of new snapshots ---------------------------------------------------------


def _sample(nodes: int, count: int) -> list[Any]:
    from tests.helpers.sample import sample_snapshot

    return [sample_snapshot(nodes, tick=k + 1, per_service=min(nodes, 500)) for k in range(count)]


def _rotating(snaps: list[Any]) -> Any:
    from ctop.tui.source import StaticSource

    class Rotating(StaticSource):
        """Prebuilt snapshots in turn, renumbered so that every call is a new tick."""

        def __init__(self) -> None:
            super().__init__(snaps[0])
            self.n = 0

        def next(self) -> None:
            self.n += 1
            s = snaps[self.n % len(snaps)]
            object.__setattr__(s, "tick", self.n)  # frozen dataclass; the bench owns these
            self._snaps[0] = s

    return Rotating()


def _decoding(snaps: list[Any], spans: list[tuple[str, float, float]] | None = None) -> Any:
    """Like an attached UI's source: a thread decodes a new snapshot every second. A tree with
    ui wire 2 (ctop.control.delta) applies the daemon's answers as its RemoteSource does (every
    sample node changes every tick: all rows, in frames); an older one decodes whole compact
    snapshots. The answers are packed beforehand: packing is the daemon's work."""
    import threading
    from dataclasses import replace

    from ctop.codec import pack_compact, unpack_compact
    from ctop.tui.source import StaticSource

    try:
        from ctop.control.delta import DeltaPacker, DeltaReader
    except ImportError:  # a tree before wire 2 (the baseline)
        DeltaPacker = None

    if DeltaPacker is not None:
        packer, reader = DeltaPacker(keep=len(snaps) + 1), DeltaReader()
        first = packer.pack(snaps[0], None, None)
        # answer k: snaps[k] to a UI holding snaps[k - 1], round and round
        packed, bases = [], []
        for k in [*range(1, len(snaps)), 0]:
            held = packer.version
            bases.append(held)
            packed.append(packer.pack(snaps[k], held, None))

        def decode(n: int) -> Any:
            if n == 0:
                return reader.apply(first)
            k = (n - 1) % len(packed)
            # Round and round: the UI holds the very snapshot answer k was packed against,
            # but a daemon's version numbers only grow (a content counter), so from the
            # second round on it is told the version it was packed against.
            reader.version = bases[k]
            return reader.apply(packed[k])
    else:
        whole = [pack_compact(s) for s in snaps]

        def decode(n: int) -> Any:
            return unpack_compact(whole[n % len(whole)])

    class Decoding(StaticSource):
        def __init__(self) -> None:
            super().__init__(decode(0))
            self.stop = threading.Event()
            threading.Thread(target=self._loop, daemon=True).start()

        def _loop(self) -> None:
            n = 0
            while not self.stop.wait(1.0):
                n += 1
                t = time.perf_counter()
                snap = decode(n)
                self._snaps[0] = replace(snap, tick=n + 1, ts=time.time())
                if spans is not None:  # (soak --explain: the decode's time in its thread)
                    spans.append(("decode", t, time.perf_counter()))

    return Decoding()


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


# -- workers: one tree each, results as one JSON line ----------------------------------------------


async def w_ticks(sizes: list[int], ticks: int, view: str) -> dict[str, Any]:
    from ctop.tui.app import CtopApp

    out: dict[str, Any] = {}
    for nodes in sizes:
        source = _rotating(_sample(nodes, 4))
        app = CtopApp(source, view=view, poll=3600)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            for _ in range(3):  # warm up caches, CSS, the compositor
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
        out[f"{nodes} nodes: tick CPU ms"] = _median(cpu)
        out[f"{nodes} nodes: tick CPU p95 ms"] = _p95(cpu)
        out[f"{nodes} nodes: tick wall ms"] = _median(wall)
    return out


# (label, keys pressed and timed, keys pressed after it untimed to get back)
KEYS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("down", ("down",), ()),
    ("pagedown", ("pagedown",), ()),
    ("end", ("end",), ()),
    ("home", ("home",), ()),
    *((f"s (sort {k})", ("s",), ()) for k in ("cpu", "mem", "conns", "ratio", "state", "name")),
    ("g (ungroup)", ("g",), ()),
    ("g (group)", ("g",), ()),
    ("t (other view)", ("t",), ()),
    ("t (back)", ("t",), ()),
    ("tab (LB pane)", ("tab",), ("shift+tab",)),
    ("enter (node detail)", ("enter",), ()),
    ("escape (back)", ("escape",), ()),
    ("a (alerts)", ("a",), ("escape",)),
    ("? (help)", ("question_mark",), ("escape",)),
    ("/ (filter box)", ("slash",), ()),
    ("filter key 1 'w'", ("w",), ()),
    ("filter key 2 'e'", ("e",), ()),
    ("filter key 3 'b'", ("b",), ()),
    ("escape (clear filter)", ("escape",), ()),
)


async def _settled(app: Any, pilot: Any) -> None:
    """Until a debounced filter (if any) has run and the screen is repainted."""
    import asyncio

    await pilot.pause()
    while getattr(app.screen, "_filter_timer", None) is not None:
        await asyncio.sleep(0.005)
    await pilot.pause()


async def w_keys(nodes: int, rounds: int, view: str) -> dict[str, Any]:
    from ctop.tui.app import CtopApp

    source = _rotating(_sample(nodes, 2))
    app = CtopApp(source, view=view, poll=3600)
    got: dict[str, list[tuple[float, float]]] = {}
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for _ in range(2):
            source.next()
            app.refresh_snapshot()
            await pilot.pause()
        for r in range(rounds + 1):  # the first round warms up
            for label, keys, back in KEYS:
                c, w = time.process_time(), time.perf_counter()
                await pilot.press(*keys)
                await _settled(app, pilot)
                took = ((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000)
                if r:
                    got.setdefault(label, []).append(took)
                if back:
                    await pilot.press(*back)
                    await _settled(app, pilot)
            shown = app.screen.arr.nodes if hasattr(app.screen, "arr") else ()
            assert len(shown) == nodes, "the filter was not cleared"
    out: dict[str, Any] = {}
    for label, took in got.items():
        out[f"{label}: wall ms"] = _median([w for w, _ in took])
        out[f"{label}: CPU ms"] = _median([c for _, c in took])
    return out


async def w_garbage(nodes: int, ticks: int, view: str) -> dict[str, Any]:
    import gc
    from collections import Counter

    from ctop.gcpolicy import process_heap
    from ctop.tui.app import CtopApp

    process_heap.freeze_above = 1 << 62  # ordinary collection: we count what it finds
    source = _rotating(_sample(nodes, 4))
    app = CtopApp(source, view=view, poll=3600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for _ in range(5):
            source.next()
            app.refresh_snapshot()
            await pilot.pause()
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        for _ in range(ticks):
            source.next()
            app.refresh_snapshot()
            await pilot.pause()
        gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
    out: dict[str, Any] = {"cyclic garbage per tick": sum(kinds.values()) / ticks}
    for kind, n in kinds.most_common(8):
        out[f"  {kind} per tick"] = n / ticks
    return out


async def w_soak(nodes: int, minutes: float, every: float,
                 explain: float = 0.0) -> dict[str, Any]:
    import asyncio
    import gc

    from ctop.tui.app import CtopApp

    spans: list[tuple[str, float, float]] = []  # (what, start, end): `explain` only
    source = _decoding(_sample(nodes, 4), spans if explain else None)
    app = CtopApp(source, view="table")  # polls every 0.5 s like the real one
    if explain:  # each tick's own time on the event loop (the timer calls this attribute)
        refresh = app.refresh_snapshot

        def timed_refresh(force: bool = False) -> None:
            t = time.perf_counter()
            refresh(force)
            spans.append(("tick", t, time.perf_counter()))

        app.refresh_snapshot = timed_refresh  # type: ignore[method-assign]
        from textual.screen import Screen

        update = Screen._on_timer_update  # the screen's repaint (layout, compositor)

        def timed_update(screen: Any) -> None:
            t = time.perf_counter()
            update(screen)
            spans.append(("paint", t, time.perf_counter()))

        Screen._on_timer_update = timed_update  # type: ignore[method-assign]
    gc_pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            t = started.pop()
            gc_pauses.append((time.perf_counter() - t) * 1000)
            if explain:
                spans.append((f"gc{info.get('generation')}", t, time.perf_counter()))

    gc.callbacks.append(on_gc)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20

    rows: list[dict[str, float]] = []
    explained: list[dict[str, Any]] = []
    async with app.run_test(size=SOAK_SIZE):
        t0 = time.perf_counter()
        end = t0 + minutes * 60
        next_row = t0 + every
        stall = own = 0.0
        cpu = time.process_time
        while (now := time.perf_counter()) < end:
            busy = cpu()
            await asyncio.sleep(0.01)
            late = (time.perf_counter() - now - 0.01) * 1000
            stall = max(stall, late)
            # The app's own share of the lateness: no more than the CPU its threads used
            # meanwhile. Lateness while other processes held the cores is the machine's,
            # not the app's (a shared machine inflates `stall`, never `own`).
            own = max(own, min(late, (cpu() - busy) * 1000))
            if explain and late > explain:  # what ran while the loop was held
                woke = time.perf_counter()
                during: dict[str, float] = {}
                for what, a, b in spans:
                    if b > now and a < woke:
                        ms = (min(b, woke) - max(a, now)) * 1000
                        during[f"{what} ms"] = round(during.get(f"{what} ms", 0.0) + ms, 1)
                explained.append({"t": round(now - t0, 2), "late ms": round(late, 1),
                                  "rss": round(rss_mb(), 1), **during})
                print(json.dumps(explained[-1]), file=sys.stderr, flush=True)
            if explain:
                del spans[:-64]  # (only the last few can overlap the next sleep)
            if time.perf_counter() >= next_row:
                next_row += every
                row = {"t": time.perf_counter() - t0, "rss": rss_mb(), "stall": stall,
                       "own": own, "load": os.getloadavg()[0],
                       "gc": max(gc_pauses, default=0.0), "gcs": len(gc_pauses)}
                rows.append(row)
                gc_pauses.clear()
                stall = own = 0.0
                print(json.dumps(row), file=sys.stderr, flush=True)
        source.stop.set()
    gc.callbacks.remove(on_gc)
    # the intervals that began after the first minute (the row at t = 60 s is the first one's)
    warm = [r for r in rows if r["t"] - every >= 59.5] or rows
    return {
        "rows": rows,
        "explained": explained,
        "longest stall after 1 min ms": max(r["stall"] for r in warm),
        "stalls over 100 ms after 1 min": sum(r["stall"] > 100 for r in warm),
        "longest own stall ms": max(r["own"] for r in rows),
        "longest own stall after 1 min ms": max(r["own"] for r in warm),
        "highest load after 1 min": max(r["load"] for r in warm),
        "longest GC pass after 1 min ms": max(r["gc"] for r in warm),
        "RSS after 2 min MB": next((r["rss"] for r in rows if r["t"] >= 120), rows[-1]["rss"]),
        "RSS at the end MB": rows[-1]["rss"],
        "RSS peak MB": max(r["rss"] for r in rows),
    }


async def w_decode(nodes: int, rounds: int) -> dict[str, Any]:
    """The attached UI's polling thread alone: CPU per new tick of an idle cluster (every node
    reported, nothing else moved), and how late a 1 ms sleeper in the main thread (the event
    loop) gets while a full snapshot is decoded in another thread."""
    import threading
    from dataclasses import replace

    from ctop.codec import pack_compact, unpack_compact
    from ctop.snapshot import Snapshot

    snap = _sample(nodes, 1)[0]
    ticks = []
    for k in range(rounds + 1):
        moved = tuple(n._replace(last_seen=n.last_seen + k) for n in snap.nodes)
        ticks.append(replace(snap, ts=snap.ts + k, tick=k + 1, nodes=moved,
                             _index=Snapshot.index_of(moved)))
    try:
        from ctop.control.delta import DeltaPacker, DeltaReader
    except ImportError:  # a tree before wire 2: each new tick is a whole compact snapshot
        packed = [pack_compact(t) for t in ticks]
        full = packed[0]

        def apply(k: int) -> Any:
            return unpack_compact(packed[k])

        def decode_full() -> Any:
            return unpack_compact(full)
    else:
        packer, reader = DeltaPacker(keep=rounds + 2), DeltaReader()
        packed = [packer.pack(ticks[0], None, None)]
        for t in ticks[1:]:
            held = packer.version
            packed.append(packer.pack(t, held, None))
        full = packed[0]

        def apply(k: int) -> Any:
            return reader.apply(packed[k])

        def decode_full() -> Any:
            return DeltaReader().apply(full)

    apply(0)
    cpu = []
    for k in range(1, rounds + 1):
        c = time.process_time()
        apply(k)
        cpu.append((time.process_time() - c) * 1000)
    done = threading.Event()
    late = 0.0

    def decoding() -> None:
        for _ in range(5):
            decode_full()
        done.set()

    import gc

    gc.collect()
    gc.disable()  # the app freezes its heap from 1,000 nodes (gcpolicy): the GIL, not the GC
    threading.Thread(target=decoding).start()
    while not done.is_set():
        t = time.perf_counter()
        time.sleep(0.001)
        late = max(late, (time.perf_counter() - t - 0.001) * 1000)
    gc.enable()
    return {f"{nodes} nodes: idle tick decode CPU ms": _median(cpu),
            f"{nodes} nodes: full snapshot, event loop late by ms (max of 5)": late}


def past_history(path: str, nodes: int, minutes: int) -> float:
    """A real history database written through the Store as the daemon writes it: `minutes`
    of ticks every 10 s (what it keeps raw at 10,000 nodes), a state event every ~1,000 nodes
    a tick, an LB round of up to 1,000 real servers each tick. Returns its last moment."""
    import lb_history as lb_bench

    from ctop.lb_history import LBRecorder
    from ctop.snapshot import EventView, Liveness, NodeView
    from ctop.store import Store

    def node(i: int, t: float, k: int) -> NodeView:
        cpu = float((i + k) % 97)
        return NodeView(f"n{i:05d}", f"n{i:05d}", f"g{i % 20}", Liveness.ALIVE, t, 1, 1.0,
                        (f"10.1.{i // 250}.{i % 250}",), 8, 1 << 34, "1", cpu=cpu, mem=40.0,
                        conns=i % 50, metrics={"cpu_percent": cpu, "procs": 100})

    start = time.time() - minutes * 60 - 60  # the past: the UI clamps a moment to now
    store = Store(path)
    store.record_events([EventView(start - 1, "join", f"n{i:05d}", "joined")
                         for i in range(nodes)])
    recorder = LBRecorder()
    t = start
    for k in range(minutes * 6):
        t = start + 10 * k
        events = [EventView(t, "state", f"n{i:05d}", f"n{i:05d} alive → suspect (silent 3 s)")
                  for i in range(k % 50, nodes, 997)]
        store.record_tick(t, [node(i, t, k) for i in range(nodes)], events)
        _, lb_round = recorder.observe(t, lb_bench.views(min(nodes, 1000), k))
        if lb_round is not None:
            store.record_lb(lb_round)
        store.flush(60)
    store.close()
    return t


async def w_past(path: str, at: float, steps: int) -> dict[str, Any]:
    """←/→ in the past at N nodes: the source's step alone (wall, CPU), then in the app: how
    long the key takes (the event loop free again), how late the event loop gets while the
    moment is read, and the time until the new moment is on the screen."""
    import asyncio

    from ctop.past import PastSource
    from ctop.tui.app import CtopApp

    source = PastSource(path, at, cluster="bench")
    source.snapshot()
    cpu, wall = [], []
    for _ in range(steps):
        c, w = time.process_time(), time.perf_counter()
        source.move(-60)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    source.close()
    out: dict[str, Any] = {"source step wall ms": _median(wall), "source step CPU ms": _median(cpu)}
    source = PastSource(path, at, cluster="bench")
    app = CtopApp(source, view="table", poll=3600)
    late = 0.0
    stop = asyncio.Event()

    async def sleeper() -> None:
        nonlocal late
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            late = max(late, (time.perf_counter() - t - 0.01) * 1000)

    keys, shown, lates = [], [], []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        watcher = asyncio.create_task(sleeper())
        for k in range(1, steps + 1):
            want = at - 60 * k
            late = 0.0
            w = time.perf_counter()
            app.simulate_key("left")  # (the pilot's press waits until the process is idle)
            while hasattr(app, "loading") and app.loading != want and app.snapshot.ts != want:
                await asyncio.sleep(0.001)  # a tree that says "loading": until it does
            keys.append((time.perf_counter() - w) * 1000)
            while app.snapshot.ts != want:
                await asyncio.sleep(0.005)
            await pilot.pause()
            shown.append((time.perf_counter() - w) * 1000)
            lates.append(late)
        stop.set()
        await watcher
    source.close()
    if hasattr(app, "loading"):
        out["app: key until the header says loading ms"] = _median(keys)
    out["app: until the moment is shown ms"] = _median(shown)
    out["app: event loop late by, max ms"] = max(lates)
    return out


def worker(mode: str, params: dict[str, Any]) -> None:
    import asyncio

    if mode == "ctop":  # the real CLI of this tree (idle mode runs it in tmux)
        from ctop.cli import main as ctop_main

        sys.exit(ctop_main(params["argv"]))
    run: dict[str, Callable[..., Any]] = {
        "ticks": w_ticks, "keys": w_keys, "garbage": w_garbage, "soak": w_soak,
        "decode": w_decode, "past": w_past,
    }
    print(json.dumps(asyncio.run(run[mode](**params))), flush=True)


# -- the parent: trees, side by side -------------------------------------------------------------


def baseline_tree(rev: str, into: Path) -> Path:
    tree = into / f"baseline-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def worker_cmd(tree: Path, mode: str, params: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--tree", str(tree),
            "_worker", mode, json.dumps(params)]


def run_workers(trees: dict[str, Path], mode: str, params: dict[str, Any], *,
                together: bool = False) -> dict[str, dict[str, Any]]:
    """Each tree's result; `together`: the workers run at the same time (long modes)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, tree in trees.items():
        procs[name] = subprocess.Popen(worker_cmd(tree, mode, params), stdout=subprocess.PIPE,
                                       text=True)
        if not together:
            out[name] = _result(procs.pop(name))
    for name, proc in procs.items():
        out[name] = _result(proc)
    return out


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"worker failed ({proc.returncode}): {' '.join(map(str, proc.args))}")
    return json.loads(stdout.strip().splitlines()[-1])


def side_by_side(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    keys = list(dict.fromkeys(
        k for r in results.values() for k, v in r.items() if isinstance(v, int | float)))
    width = max(len(k) for k in keys) + 2
    head = "".join(f"{n:>16}" for n in names)
    ratio = len(names) == 2
    print(f"{'':<{width}}{head}{'  this / base' if ratio else ''}")
    for k in keys:
        vals = [results[n].get(k) for n in names]
        cells = "".join(f"{v:>16.1f}" if isinstance(v, int | float) else f"{'-':>16}"
                        for v in vals)
        r = ""
        if ratio and isinstance(vals[0], int | float) and vals[0] and vals[1] is not None:
            r = f"  {vals[1] / vals[0]:>11.2f}"
        print(f"{k:<{width}}{cells}{r}")


def idle(trees: dict[str, Path], nodes: int, seconds: float, warmup: float) -> None:
    """Both trees' attached UIs in tmux on one real daemon fed by real UDP; CPU of each."""
    import multiprocessing as mp

    import ingest

    from tests.helpers.serve_helpers import Daemon

    clk = os.sysconf("SC_CLK_TCK")

    def cpu_s(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / clk

    with tempfile.TemporaryDirectory(prefix="ctop-bench-ui-") as tmp:
        root = Path(tmp)
        daemon = Daemon(root, key=ingest.KEY).start()
        stop = mp.Event()
        feeder = mp.Process(target=feed, args=(daemon.port, nodes, ingest.KEY, stop), daemon=True)
        feeder.start()
        sock = f"ctop-bench-ui-{os.getpid()}"
        tmux = ["tmux", "-L", sock]
        try:
            wait_for_nodes(daemon, nodes)
            pids = attached_uis(tmux, trees, daemon, nodes)
            time.sleep(warmup)
            before = {n: cpu_s(p) for n, p in pids.items()} | {"daemon": cpu_s(daemon.proc.pid)}
            time.sleep(seconds)
            after = {n: cpu_s(p) for n, p in pids.items()} | {"daemon": cpu_s(daemon.proc.pid)}
            heads = {name: subprocess.run([*tmux, "capture-pane", "-p", "-t", f"ui{k}"],
                                          capture_output=True, text=True).stdout.splitlines()[:2]
                     for k, name in enumerate(trees)}
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
            stop.set()
            feeder.join(5)
            daemon.stop()
    share = {n: (after[n] - before[n]) / seconds * 100 for n in after}
    print(f"idle attached UI, {nodes} nodes reporting every second (constant metrics), "
          f"tmux 200x50, {seconds:.0f} s after {warmup:.0f} s; % of one core:")
    for n, v in share.items():
        print(f"  {n:<12} {v:6.2f} %")
    for name, head in heads.items():  # a UI that lost the daemon would cost nothing
        print(f"  {name} showed: {' / '.join(line.strip() for line in head)}")
    if len(trees) == 2:
        base, this = list(trees)
        print(f"  this / base  {share[this] / share[base]:6.2f}")


def attached_uis(tmux: list[str], trees: dict[str, Path], daemon: Any, nodes: int,
                 size: tuple[int, int] = SOAK_SIZE) -> dict[str, int]:
    """Each tree's real `ctop` attached to the daemon in its own tmux session (ui0, ui1, ...),
    up and showing every node; the pid of each UI process."""
    def pane_pid(k: int) -> int:
        return int(subprocess.run([*tmux, "display", "-p", "-t", f"ui{k}", "#{pane_pid}"],
                                  check=True, capture_output=True, text=True).stdout)

    pids: dict[str, int] = {}
    for k, (name, tree) in enumerate(trees.items()):
        cmd = worker_cmd(tree, "ctop", {"argv": ["--config", str(daemon.config)]})
        subprocess.run([*tmux, "new-session", "-d", "-s", f"ui{k}", "-x", str(size[0]), "-y",
                        str(size[1]), f"exec {shlex.join(cmd)}", ";", "set-option", "-t",
                        f"ui{k}", "remain-on-exit", "on"], check=True)
        pids[name] = pane_pid(k)
    for k, name in enumerate(trees):  # up and showing the cluster
        screen = ""
        for _ in range(600):  # (a daemon busy on a loaded machine: a few first fetches fail)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", f"ui{k}"],
                                    capture_output=True, text=True).stdout
            if f"{nodes} nodes" in screen:
                break
            if "Pane is dead" in screen:  # a busy daemon missed the first 5 s fetch
                subprocess.run([*tmux, "respawn-pane", "-t", f"ui{k}"], check=True)
                pids[name] = pane_pid(k)
            time.sleep(0.5)
        else:
            raise SystemExit(f"{name}: the UI does not show the cluster:\n{screen}")
    return pids


def keys_tmux(trees: dict[str, Path], nodes: int, rounds: int, interval: float,
              warmup: float, pause: float = 0.3) -> None:
    """Every main-screen key of each tree's real `ctop`, attached in tmux at 200x50 to one
    real daemon fed by real UDP: from `send-keys` until the pane shows the key's result; the
    trees take turns key by key (the same machine for both), after a warm-up round."""
    import multiprocessing as mp

    import ingest
    from ui_tmux import Control, floor_ms, main_keys, timed_key, wait_shown

    from tests.helpers.serve_helpers import Daemon

    keys = main_keys(nodes)
    got: dict[str, dict[str, list[float]]] = {n: {} for n in [*trees, "floor"]}
    cpus: dict[str, dict[str, list[float]]] = {n: {} for n in trees}  # the UI process's
    with tempfile.TemporaryDirectory(prefix="ctop-bench-ui-") as tmp:
        daemon = Daemon(Path(tmp), key=ingest.KEY).start()
        stop = mp.Event()
        feeder = mp.Process(target=feed, args=(daemon.port, nodes, ingest.KEY, stop, interval),
                            daemon=True)
        feeder.start()
        tmux = ["tmux", "-L", f"ctop-bench-ui-{os.getpid()}"]
        ctl = None
        try:
            wait_for_nodes(daemon, nodes)
            pids = attached_uis(tmux, trees, daemon, nodes)
            subprocess.run([*tmux, "new-session", "-d", "-s", "floor", "-x", "200", "-y", "50",
                            "exec cat"], check=True)
            ctl = Control(tmux, "floor")
            time.sleep(warmup)
            targets = {name: f"ui{k}" for k, name in enumerate(trees)}
            for target in targets.values():  # all alive (nothing else moves on the screen)
                wait_shown(ctl, target, lambda s: f"{nodes} alive" in s, f"{nodes} alive")
            for r in range(rounds + 1):  # the first round warms up (first openings compose)
                for key in keys:
                    for name, target in targets.items():
                        took, cpu = timed_key(ctl, target, key.key, key.shown, pid=pids[name])
                        if r:
                            got[name].setdefault(key.label, []).append(took)
                            cpus[name].setdefault(key.label, []).append(cpu)
                        if key.back:
                            ctl.keys(target, key.back)
                            wait_shown(ctl, target, key.back_shown, f"back from {key.label}")
                        time.sleep(pause)
                    if r:
                        got["floor"].setdefault(key.label, []).append(floor_ms(ctl, "floor"))
        finally:
            if ctl is not None:
                ctl.close()
            subprocess.run([*tmux, "kill-server"], capture_output=True)
            stop.set()
            feeder.join(5)
            daemon.stop()
    floor = [ms for per_key in got.pop("floor").values() for ms in per_key]
    print(f"keys in tmux: {nodes} nodes reporting every {interval:g} s, the real ctop attached "
          f"at 200x50, median of {rounds} rounds after a warm-up round; ms from send-keys "
          "until the pane shows the key's result")
    print(f"floor (a key echoed by `cat` through tmux, same polling): median "
          f"{_median(floor):.1f} ms, max {max(floor):.1f} ms over {len(floor)} keys")
    side_by_side({name: {label: _median(v) for label, v in per.items()}
                  for name, per in got.items()})
    print("CPU of the UI process (every thread) from send-keys until shown, ms (median):")
    side_by_side({name: {label: _median(v) for label, v in per.items()}
                  for name, per in cpus.items()})


def wait_for_nodes(daemon: Any, nodes: int, timeout: float = 180) -> None:
    """Until the daemon knows every node (it may be too busy to answer at first)."""
    from ctop.codec import unpack_compact
    from ctop.control.client import exchange
    from ctop.control.wire import ControlError

    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(ControlError, OSError):
            seen = len(unpack_compact(exchange(str(daemon.sock), "ui", timeout=30)).nodes)
        if seen >= nodes:
            return
        time.sleep(1)
    raise SystemExit(f"the daemon knows {seen} of {nodes} nodes after {timeout:.0f} s")


def feed(port: int, nodes: int, key: bytes, stop: Any, interval: float = 1.0) -> None:
    """Every node reports once every `interval` seconds, the same metrics every time (an idle
    cluster), spread over the first half of each interval."""
    import socket

    import ingest

    from agentd.encoder import encode
    from agentd.protocol import Header, Report

    fleet = ingest.Fleet(nodes)
    bodies = [(fleet.metrics(i), fleet.services()) for i in range(nodes)]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    burst = max(1, round(nodes / (50 * interval)))
    while not stop.is_set():
        start = time.time()
        for first in range(0, nodes, burst):
            for i in range(first, min(first + burst, nodes)):
                fleet.seqs[i] += 1
                header = Header(fleet.ids[i], fleet.boots[i], fleet.seqs[i], time.time())
                report = Report(header, interval, f"rack-{i // 250:02d}", *bodies[i])
                udp.sendto(encode(key, report), ("127.0.0.1", port))
            time.sleep(0.005)
        time.sleep(max(0.0, interval - (time.time() - start)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2], json.loads(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="ticks",
                    choices=("ticks", "keys", "idle", "soak", "garbage", "decode", "past"))
    ap.add_argument("--baseline", help=f"git revision, or none (default {BASELINE}; past: "
                    f"{PAST_BASELINE}, the past view before its steps were made cheap)")
    ap.add_argument("--sizes", default="100,1000,10000", help="ticks")
    ap.add_argument("--ticks", type=int, default=20, help="ticks, garbage")
    ap.add_argument("--view", default="table", choices=("table", "grid"))
    ap.add_argument("--nodes", type=int,
                    help="keys 10000, idle 2000, soak 1000 and 10000 at once, garbage 1000, "
                    "decode 2000, past 10000")
    ap.add_argument("--steps", type=int, default=5, help="past: ←/→ steps (median)")
    ap.add_argument("--history", type=int, default=12, help="past: minutes of history")
    ap.add_argument("--db", help="past: the history database to write and keep, or to reuse "
                    "when it exists (writing 10,000 nodes takes minutes)")
    ap.add_argument("--rounds", type=int, default=3, help="keys: presses per key (median)")
    ap.add_argument("--seconds", type=float, default=30, help="idle: measured seconds")
    ap.add_argument("--warmup", type=float, default=20,
                    help="idle, keys --tmux: seconds before measuring")
    ap.add_argument("--tmux", action="store_true",
                    help="keys: the real ctop attached in tmux to a real daemon fed by UDP")
    ap.add_argument("--interval", type=float, default=10.0,
                    help="keys --tmux: each node's report interval, s (10,000 reports a second "
                    "would take both cores from the UIs)")
    ap.add_argument("--minutes", type=float, default=30, help="soak")
    ap.add_argument("--every", type=float, default=60, help="soak: seconds per report line")
    ap.add_argument("--explain", type=float, default=0.0, metavar="MS",
                    help="soak: each stall over MS with what ran meanwhile (ticks on the loop, "
                    "the decode thread, GC passes by generation)")
    args = ap.parse_args()
    if args.baseline is None:
        args.baseline = PAST_BASELINE if args.mode == "past" else BASELINE
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ctop-bench-ui-") as tmp:
        trees: dict[str, Path] = {}
        if args.baseline != "none":
            trees[f"base {args.baseline}"[:15]] = baseline_tree(args.baseline, Path(tmp))
        trees["this tree"] = ROOT
        print(f"bench/ui.py {args.mode}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
              f"on {os.cpu_count()} CPUs")
        if args.mode == "idle":
            idle(trees, args.nodes or 2000, args.seconds, args.warmup)
            return
        if args.mode == "keys" and args.tmux:
            keys_tmux(trees, args.nodes or 10_000, args.rounds, args.interval, args.warmup)
            return
        if args.mode == "ticks":
            params: dict[str, Any] = {
                "sizes": [int(s) for s in args.sizes.split(",")], "ticks": args.ticks,
                "view": args.view}
        elif args.mode == "keys":
            params = {"nodes": args.nodes or 10_000, "rounds": args.rounds, "view": args.view}
        elif args.mode == "decode":
            params = {"nodes": args.nodes or 2000, "rounds": args.ticks}
        elif args.mode == "past":
            nodes = args.nodes or 10_000
            path = args.db or str(Path(tmp) / "history.db")
            if args.db and Path(args.db).exists():  # written by an earlier run: its last tick
                import sqlite3

                with contextlib.closing(sqlite3.connect(args.db)) as db:
                    last = db.execute("SELECT max(ts) FROM samples").fetchone()[0] / 1000
                print(f"history: {args.db} (kept from an earlier run)")
            else:
                started = time.perf_counter()
                last = past_history(path, nodes, args.history)
                print(f"history: {nodes} nodes, {args.history} min written in "
                      f"{time.perf_counter() - started:.0f} s")
            params = {"path": path, "at": last - 5, "steps": args.steps}
        elif args.mode == "garbage":
            params = {"nodes": args.nodes or 1000, "ticks": args.ticks, "view": args.view}
        else:
            soak(trees, [args.nodes] if args.nodes else SOAK_NODES, args.minutes, args.every,
                 args.explain)
            return
        side_by_side(run_workers(trees, args.mode, params))


SOAK_NODES = (1000, 10_000)  # the two sizes, soaked at the same time


def soak(trees: dict[str, Path], sizes: list[int] | tuple[int, ...], minutes: float,
         every: float, explain: float = 0.0) -> None:
    """Every size and tree at once (same machine load for all): per size, RSS and the longest
    stall and GC pass per interval, then the summary side by side."""
    procs = {(nodes, name): subprocess.Popen(
        worker_cmd(tree, "soak", {"nodes": nodes, "minutes": minutes, "every": every,
                                  "explain": explain}),
        stdout=subprocess.PIPE, text=True) for nodes in sizes for name, tree in trees.items()}
    got = {key: _result(proc) for key, proc in procs.items()}
    for nodes in sizes:
        results = {name: got[(nodes, name)] for name in trees}
        print(f"soak: {nodes} nodes, {minutes:g} min, {len(sizes) * len(trees)} apps at once; "
              "per interval: RSS MB / longest stall ms (of which the app's own CPU) / "
              "longest GC pass ms / load")
        for rows in zip(*(r["rows"] for r in results.values()), strict=False):
            print(f"  t={rows[0]['t']:6.0f}s " + " | ".join(
                f"{name}: {r['rss']:6.1f} MB {r['stall']:7.1f} ms ({r['own']:5.1f}) "
                f"{r['gc']:7.1f} ms {r['load']:4.1f}"
                for name, r in zip(results, rows, strict=True)))
        side_by_side(results)


if __name__ == "__main__":
    main()
