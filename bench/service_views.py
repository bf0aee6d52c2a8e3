"""The snapshot's ServiceViews at many distinct nodes: the old build against this tree's.

Every report carries each probe's result number (mod 128) and latency, so the ServiceView
cache in ctop.cluster rarely hits and a view is built for nearly every service of every node
that reported since the last tick. Times `_service_views` over N nodes' services (7 each, as
bench/ingest.py's Fleet makes them) against the previous build (ServiceView(name, status,
...)) in the same process, best of 3, and checks both give equal views.

    .venv/bin/python bench/service_views.py [--nodes 60000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))
import ingest as shared

import ctop.cluster as cluster
from ctop.snapshot import ServiceView


def baseline(services: tuple[Any, ...]) -> tuple[ServiceView, ...]:
    """_service_views as it was: each miss built by naming the fields."""
    cache = cluster._SERVICE_VIEWS
    out = []
    for s in services:
        if type(s) is ServiceView:
            out.append(s)
            continue
        view = cache.get(s)
        if view is None:
            if len(cache) >= cluster.SERVICE_VIEWS_KEPT:
                cache.clear()
            view = cache[s] = ServiceView(s.name, s.status, s.latency_ms, s.detail, s.seq)
        out.append(view)
    return tuple(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=60_000)
    args = ap.parse_args()
    fleet = shared.Fleet(1)
    services = [fleet.services() for _ in range(args.nodes)]
    assert all(baseline(s) == cluster._service_views(s) for s in services[:1000])
    gc.disable()
    best: dict[str, float] = {}
    runs: tuple[tuple[str, Callable[[tuple[Any, ...]], Any]], ...] = (
        ("baseline", baseline), ("this tree", cluster._service_views))
    for _ in range(3):
        for name, fn in runs:
            cluster._SERVICE_VIEWS.clear()
            started = time.process_time()
            for s in services:
                fn(s)
            took = time.process_time() - started
            best[name] = min(best.get(name, took), took)
    for name, took in best.items():
        print(f"{name:>10}: {1e3 * took:.0f} ms CPU for {args.nodes:,} nodes' services")
    print(f"ratio this tree / baseline: {best['this tree'] / best['baseline']:.2f}")


if __name__ == "__main__":
    main()
