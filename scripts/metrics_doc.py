"""Write the metric tables of docs/agentd.md and docs/protocol.md from the metric registry.

    .venv/bin/python scripts/metrics_doc.py           # rewrite the tables in place
    .venv/bin/python scripts/metrics_doc.py --check   # exit 1 if a doc differs from the registry

Each table sits between `<!-- metrics:NAME -->` and `<!-- /metrics:NAME -->` lines; the text
around them is left alone. tests/test_metric_registry.py runs --check.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentd.metrics import METRICS, SCALARS, Metric  # noqa: E402

KINDS = {"num": "number", "list": "list", "map": "map", "procs": "list", "watch": "list",
         "arp": "list"}
SCALE_WORDS = {10: "× 10", 100: "× 100"}


def _yes(flag: object) -> str:
    return "yes" if flag else ""


def agentd_table() -> str:
    """Every metric: what it is, how it travels and where the director uses it."""
    rows = ["| metric | unit | type | wire | stored | chart | alert | Prometheus | what |",
            "|---|---|---|---|---|---|---|---|---|"]
    for m in METRICS:
        wire = f"`v[{SCALARS.index(m)}]`" if m.scalar else f"`{m.key}`"
        kind = KINDS[m.kind] + (", counter" if m.counter else "")
        rows.append(
            f"| `{m.name}` | {m.unit} | {kind} | {wire} | {_yes(m.column)} | {m.chart} | "
            f"{_yes(m.alertable)} | {f'`{m.prometheus}`' if m.prometheus else ''} | "
            f"{m.description} |")
    return "\n".join(rows)


def _wire_unit(m: Metric) -> str:
    unit = {"%": "percent", "B": "bytes", "B/s": "bytes/s", "pkt/s": "packets/s",
            "s": "seconds", "": "count"}[m.unit]
    scaled = f"{unit} {SCALE_WORDS.get(m.scale, f'× {m.scale}')}" if m.scale != 1 else unit
    bound = "" if m.maximum is None else f", at most {m.limit:,}"
    return scaled + bound


def protocol_table() -> str:
    """The positional scalars of `m.v`: their order is the wire format."""
    rows = ["| # | metric | on the wire |", "|---|--------|-------------|"]
    rows += [f"| {i} | {m.name} | {_wire_unit(m)} |" for i, m in enumerate(SCALARS)]
    return "\n".join(rows)


TABLES: dict[str, tuple[Path, Callable[[], str]]] = {
    "registry": (ROOT / "docs" / "agentd.md", agentd_table),
    "scalars": (ROOT / "docs" / "protocol.md", protocol_table),
}


def rendered(text: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- metrics:{name} -->\n)(?:.*?\n)?(<!-- /metrics:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- metrics:{name} --> ... <!-- /metrics:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text, count=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if different")
    args = ap.parse_args()
    stale = []
    for name, (path, render) in TABLES.items():
        text = path.read_text()
        new = rendered(text, name, render())
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    if stale and args.check:
        print(f"out of date with agentd/metrics.py: {', '.join(map(str, stale))}; "
              "run scripts/metrics_doc.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
