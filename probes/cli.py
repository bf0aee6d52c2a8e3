"""`python -m probes URL...` / `ctop probe URL...`: run checks by hand, print a table.

Exit code: 0 all ok, 1 some warn (none fail), 2 some fail or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TextIO

from probes.registry import run_many
from probes.result import ProbeResult, worst
from probes.spec import TYPES, ProbeSpec, ProbeSpecError, from_url

EXIT_CODES = {"ok": 0, "warn": 1, "fail": 2}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m probes",
        description="Run protocol checks now and print the results (see docs/probes.md).",
        epilog="types: " + ", ".join(TYPES) + ".  Exit: 0 all ok, 1 warn, 2 fail.",
    )
    parser.add_argument(
        "urls",
        nargs="+",
        metavar="URL",
        help="e.g. smtp://10.0.0.2:25  dns://10.0.0.3/www.example.com?type=A",
    )
    parser.add_argument(
        "-t", "--timeout", type=float, help="timeout in seconds for probes whose URL sets none"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _specs(urls: Sequence[str], timeout: float | None) -> list[ProbeSpec]:
    specs = []
    for url in urls:
        spec = from_url(url)
        if timeout is not None and "timeout=" not in url:
            spec = replace(spec, timeout=timeout)
        specs.append(spec)
    return specs


def _latency(result: ProbeResult) -> str:
    return "-" if result.latency_ms is None else f"{result.latency_ms:.1f} ms"


def render(specs: Sequence[ProbeSpec], results: Sequence[ProbeResult]) -> str:
    rows = [("STATUS", "LATENCY", "PROBE", "DETAIL")]
    rows += [
        (r.status.upper(), _latency(r), s.name, r.detail)
        for s, r in zip(specs, results, strict=True)
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=False))
        + "  "
        + row[3]
        for row in rows
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        specs = _specs(args.urls, args.timeout)
    except ProbeSpecError as exc:
        print(f"probes: invalid probe: {exc}", file=sys.stderr)
        return 2
    results = asyncio.run(run_many(specs))
    if args.json:
        for spec, result in zip(specs, results, strict=True):
            print(json.dumps({"probe": spec.name, **asdict(result)}), file=out)
    else:
        print(render(specs, results), file=out)
    return EXIT_CODES[worst(results)]
