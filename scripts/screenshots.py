"""Regenerate screenshots/*.svg and *.png of the ctop UI.

The pictures come from the real app on the live demo cluster (`ctop --demo`: real agents,
HTTP servers and HAProxy on loopback, warmed up for a few seconds), except the 600-node table,
which shows the layout at scale on the deterministic sample cluster (tests.helpers.sample) since
this machine cannot run 600 agents. PNGs are made with rsvg-convert (Debian librsvg2-bin).
The main grid, the node detail and the help are also taken at 80x24, 120x40 and 250x60
(`main-grid-80x24.png`, ...): look at every one after a visible change.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [names...]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.snapshot import Snapshot
from ctop.tui.app import CtopApp
from ctop.tui.source import EngineLike, StaticSource
from tests.helpers.sample import sample_history, sample_snapshot

SIZE = (150, 44)
# terminal sizes every picture in SIZED is also taken at: the classic, a laptop, a wide monitor
SIZES = ((80, 24), (120, 40), (250, 60))
SIZED = ("main-grid", "node-detail", "help")
WARM_UP = 45.0  # seconds of real reports, probes and traffic: the live charts fill up
# name -> (source: "demo" or a sample node count, initial view, keys to press before the picture)
SHOTS: dict[str, tuple[str | int, str | None, tuple[str, ...]]] = {
    "main-grid": ("demo", "grid", ()),
    "main-table": ("demo", "table", ()),
    "node-detail": ("demo", "grid", ("right", "enter")),
    "lb-drain-dialog": ("demo", "grid", ("tab", "down", "d")),
    "lb-after-drain": ("demo", "grid", ("tab", "down", "d", "y")),
    "alerts": ("demo", "grid", ("a",)),
    "help": ("demo", "grid", ("question_mark",)),
    "sample-600-nodes-table": (600, "table", ("s",)),
    # ctop --at on a history database with an incident in it (tests.helpers.past_history)
    "past-incident": ("past", "grid", ()),
    # the header with a director pair ([pair] + [nats]) on the sample cluster: this director
    # MASTER, the peer BACKUP as told over NATS
    "header-pair": ("pair", "grid", ()),
    # issue 13 on the sample cluster: the table's ANOM column with the anomaly alerts, the
    # alerts pane with a silenced and a held alert, the node detail's watched processes
    "table-anomalies": ("anomalies", "table", ()),
    "alerts-silenced-held": ("muted", "grid", ()),
    "node-detail-watched": ("watched", "grid", ("right", "enter")),
    # issue 15: a NATS view whose collector for one group is lost: that group's nodes are
    # unknown (never dead), counted in the header and the group's row
    "collector-lost": ("collector-lost", "table", ()),
}


async def shoot(
    name: str, src: EngineLike, view: str | None, keys: tuple[str, ...], out: Path,
    size: tuple[int, int] = SIZE,
) -> Path:
    app = CtopApp(src, view=view)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        # the action flow's worker waits on the open dialog; everything else must finish
        busy = [w for w in app.workers if w.group != "lb-action"]
        if busy:  # (an empty list would mean "all workers")
            await app.workers.wait_for_complete(busy)
        await pilot.pause(1.5 if "y" in keys else 0.2)
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
    return path


_LEAD = re.compile(r'(<text [^>]*?x=")([\d.]+)("[^>]*?textLength=")([\d.]+)("[^>]*>)((?:&#160;)+)')


def _for_rsvg(svg: str) -> str:
    """rsvg squeezes leading no-break spaces out of a text run: move x past them instead."""

    def shift(m: re.Match[str]) -> str:
        n = len(m.group(6)) // len("&#160;")
        return _shift(m, n, float(m.group(2)), float(m.group(4)))

    return _LEAD.sub(shift, svg)


def _shift(m: re.Match[str], n: int, x: float, length: float) -> str:
    text_end = m.string.find("</text>", m.end())
    chars = n + len(
        m.string[m.end() : text_end]
        .replace("&#160;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
    )
    cell = length / chars if chars else 0
    return f"{m.group(1)}{x + n * cell:.1f}{m.group(3)}{length - n * cell:.1f}{m.group(5)}"


def to_png(svg: Path) -> Path:
    png = svg.with_suffix(".png")
    fixed = svg.with_suffix(".rsvg.svg")
    fixed.write_text(_for_rsvg(svg.read_text()))
    try:
        subprocess.run(["rsvg-convert", "-o", str(png), str(fixed)], check=True)
    finally:
        fixed.unlink()
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="screenshots")
    ap.add_argument("only", nargs="*", help="names of pictures to make (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = shutil.which("rsvg-convert") is not None
    if not png:
        print("rsvg-convert not found (apt-get install librsvg2-bin): SVG only", file=sys.stderr)
    wanted = {n: v for n, v in SHOTS.items() if not args.only or n in args.only}
    for svg in asyncio.run(shoot_all(wanted, out)):
        print(svg, to_png(svg) if png else "")


async def shoot_past(name: str, view: str | None, keys: tuple[str, ...], out: Path) -> Path:
    import tempfile

    from ctop.past import PastSource
    from tests.helpers.past_history import write_incident

    with tempfile.TemporaryDirectory() as tmp:
        moment = write_incident(Path(tmp) / "ctop.db")
        source = PastSource(str(Path(tmp) / "ctop.db"), moment, cluster="prod")
        try:
            return await shoot(name, source, view, keys, out)
        finally:
            source.close()


def pair_snapshot() -> Snapshot:
    """The 16-node sample cluster seen from a director pair's MASTER."""
    from dataclasses import replace

    from ctop.pair.view import InstanceView, PairView, SyncDaemonView

    snap = sample_snapshot(16)
    pair = PairView(role="MASTER", peer_role="BACKUP", peer_source="NATS dir-b",
                    peer_seen=snap.ts - 0.3,
                    instances=(InstanceView("VI_1", "MASTER", priority=150, base_priority=150,
                                            vips=("10.0.0.100/24",),
                                            vips_held=("10.0.0.100/24",)),),
                    peer_instances=(("VI_1", "BACKUP"),),
                    sync_daemons=(SyncDaemonView("master", "eth1", 7),), read_at=snap.ts - 1)
    return replace(snap, pair=pair)


def seeds_snapshot(kind: str) -> Snapshot:
    """The sample cluster with what issue 13 adds to the screen (as the snapshot tests do)."""
    from dataclasses import replace

    from ctop.anomaly.levels import COST, GROUP, NODE
    from ctop.snapshot import AlertView, Severity

    snap = sample_snapshot(40 if kind == "anomalies" else 16)
    t = snap.ts
    if kind == "anomalies":
        a, b, group = snap.nodes[1], snap.nodes[2], snap.nodes[-1].group
        return replace(snap, alerts=(
            AlertView(f"{GROUP}:{group}", GROUP, "", Severity.CRIT,
                      f"group {group}: 4 of 10 nodes anomalous at once (>= 30%)", t - 60, 0.4),
            AlertView(f"{NODE}:{a.node_id}:cpu_percent", NODE, a.node_id, Severity.WARN,
                      f"cpu_percent on {a.node_id} is 83, 7.2 robust z above its usual 21 at "
                      "this hour of the week", t - 120, 7.2),
            AlertView(f"{COST}:{b.node_id}", COST, b.node_id, Severity.WARN,
                      f"{b.node_id} costs 3.1x its group {b.group}'s median CPU per connection",
                      t - 180, 7.6)))
    if kind == "muted":
        return replace(snap, alerts=(
            AlertView("node-dead:web-03", "node-dead", "web-03", Severity.CRIT,
                      "web-03 is dead", t - 300),
            AlertView("node-dead:web-05", "node-dead", "web-05", Severity.CRIT,
                      "web-05 is dead", t - 120, muted="silenced", muted_by="alice",
                      muted_until=t + 7200, muted_note="kernel upgrade"),
            AlertView("node-dead:web-07", "node-dead", "web-07", Severity.CRIT,
                      "web-07 is dead", t - 60, muted="held", muted_by="bob",
                      muted_note="in maintenance by bob since 03:00")))
    watched = [("nginx", 4, 1, None, 0, 12.5, 96 << 20, 4, 210),
               ("haproxy", 1, 2, 2, 3, 3.2, 40 << 20, 2, 64),
               ("java:*tomcat*", 0, 1, None, 1, 0.0, 0, 0, 0)]
    return replace(snap, nodes=tuple(n._replace(metrics={**n.metrics, "watched": watched})
                                     for n in snap.nodes))


def collector_lost_snapshot() -> Snapshot:
    """The 40-node sample cluster as a --nats view sees it when one group's collector is lost."""
    from dataclasses import replace

    from ctop.snapshot import GroupView, Liveness
    from tests.helpers.sample import _aggregate

    snap = sample_snapshot(40)
    lost = snap.nodes[0].group  # the first group: its rows are on screen
    nodes = tuple(n._replace(liveness=Liveness.UNKNOWN) if n.group == lost else n
                  for n in snap.nodes)
    groups = tuple(GroupView(g.name, _aggregate([n for n in nodes if n.group == g.name]))
                   for g in snap.groups)
    return replace(snap, nodes=nodes, groups=groups, totals=_aggregate(nodes))


async def shoot_all(shots: dict[str, tuple[str | int, str | None, tuple[str, ...]]],
                    out: Path) -> list[Path]:
    made = []
    demo = DemoCluster(nodes=6) if any(src == "demo" for src, _, _ in shots.values()) else None
    engine = None
    try:
        if demo is not None:
            demo.start()
            engine = Engine(demo.config())
            await engine.start()
            await asyncio.sleep(WARM_UP)
        for name, (src, view, keys) in shots.items():
            if src == "demo":
                assert engine is not None
                source: EngineLike = engine
            elif src == "pair":
                source = StaticSource(pair_snapshot(), history=sample_history)
            elif src in ("anomalies", "muted", "watched"):
                source = StaticSource(seeds_snapshot(str(src)), history=sample_history)
            elif src == "collector-lost":
                source = StaticSource(collector_lost_snapshot(), history=sample_history)
            elif src == "past":
                made.append(await shoot_past(name, view, keys, out))
                continue
            else:
                source = StaticSource(sample_snapshot(int(src)), history=sample_history)
            made.append(await shoot(name, source, view, keys, out))
            for size in SIZES if name in SIZED else ():
                made.append(await shoot(f"{name}-{size[0]}x{size[1]}", source, view, keys, out,
                                        size))
    finally:
        if engine is not None:
            await engine.stop()
        if demo is not None:
            demo.stop()
    return made


if __name__ == "__main__":
    main()
