"""What the side-by-side benches share: the same child run once per tree (this checkout and a
`--baseline` one), each in its own process with that tree's ctop first on sys.path, one after
the other, so both see the same machine; the child prints one JSON line, checked here to have
run the ctop of the tree it was asked for.

Used by bench/tick.py and bench/ingest_cpu.py:

    ap = sidebyside.parser(__doc__)           # --nodes, --rounds, --baseline (+ its own flags)
    args = ap.parse_args()
    if args.child: child(args.child, ...)     # ends with sidebyside.emit(out)
    for name, tree in sidebyside.trees(args.baseline):
        r = sidebyside.run_child(__file__, name, tree, [...flags...])
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags every side-by-side bench has; add its own to the parser returned."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=60_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="another checkout to measure side by side")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def trees(baseline: str | None) -> list[tuple[str, str]]:
    """(name, checkout) to run, the baseline first."""
    out = [("this tree", str(HERE))]
    if baseline:
        out.insert(0, ("baseline", str(Path(baseline).resolve())))
    return out


def emit(out: dict[str, Any]) -> None:
    """The child's answer: `out` and the ctop it ran, as one JSON line."""
    out["ctop"] = str(Path(sys.modules["ctop"].__file__ or "").parent.parent)
    print(json.dumps(out))


def run_child(script: str, name: str, tree: str, flags: list[str]) -> dict[str, Any]:
    """Run `script --child tree *flags` and return its JSON; exits if it failed or ran
    another tree's ctop."""
    got = subprocess.run([sys.executable, script, "--child", tree, *flags],
                         capture_output=True, text=True)
    if got.returncode:
        raise SystemExit(f"{name}: {got.stderr[-2000:]}")
    r: dict[str, Any] = json.loads(got.stdout.strip().splitlines()[-1])
    if Path(r["ctop"]).resolve() != Path(tree).resolve():
        raise SystemExit(f"{name}: ran the ctop of {r['ctop']}, not of {tree}")
    return r


def timer(spent: dict[str, float]) -> Callable[[str, Callable[..., Any]], Callable[..., Any]]:
    """`timed(part, f)`: f, adding the calling thread's CPU time of each call to spent[part]
    (wrap a model's or engine's method to split a round into parts)."""
    def timed(part: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def run(*a: Any, **k: Any) -> Any:
            began = time.thread_time()
            try:
                return f(*a, **k)
            finally:
                spent[part] += time.thread_time() - began
        return run
    return timed
