"""Regenerate screenshots/*.svg and *.png of the ctop UI.

For now the app is fed by the deterministic sample cluster (ctop.tui.sample) through
StaticSource; switch `source()` to the live demo cluster once it exists. PNGs are made with
rsvg-convert (Debian package librsvg2-bin).

    .venv/bin/python scripts/screenshots.py [--out screenshots]
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

from ctop.tui.app import CtopApp
from ctop.tui.sample import sample_history, sample_snapshot
from ctop.tui.source import StaticSource

SIZE = (140, 42)
# name -> (nodes, initial view, keys to press before the picture)
SHOTS: dict[str, tuple[int, str | None, tuple[str, ...]]] = {
    "main-grid": (16, "grid", ()),
    "main-table": (600, "table", ()),
    "main-table-sorted-cpu": (600, "table", ("s",)),
    "node-detail": (16, "grid", ("right", "enter")),
    "lb-drain-dialog": (16, "grid", ("tab", "down", "down", "d")),
    "alerts": (16, "grid", ("a",)),
    "help": (16, "grid", ("question_mark",)),
}


def source(nodes: int) -> StaticSource:
    return StaticSource(sample_snapshot(nodes), history=sample_history)


async def shoot(name: str, nodes: int, view: str | None, keys: tuple[str, ...], out: Path) -> Path:
    app = CtopApp(source(nodes), view=view)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        # the action flow's worker waits on the open dialog; everything else must finish
        busy = [w for w in app.workers if w.group != "lb-action"]
        if busy:  # (an empty list would mean "all workers")
            await app.workers.wait_for_complete(busy)
        await pilot.pause(0.2)
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
    for name, (nodes, view, keys) in SHOTS.items():
        if args.only and name not in args.only:
            continue
        svg = asyncio.run(shoot(name, nodes, view, keys, out))
        print(svg, to_png(svg) if png else "")


if __name__ == "__main__":
    main()
