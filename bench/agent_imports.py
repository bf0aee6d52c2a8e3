"""What each library costs an agent's resident memory, import by import.

Each row is a fresh interpreter (byte-compiled code, as a node's pip install leaves it) that
imports what the row names on top of the rows above it, then reads its VmRSS; the best of
`--repeats` runs is kept (fewer pages touched by chance). The last column is the import time
`python -X importtime` sums for the row's new modules (self time, ms): noisy on a shared machine,
the RSS is not.

    .venv/bin/python bench/agent_imports.py [--repeats 3]

Rows: a bare interpreter, the libraries every agent needs (psutil, msgpack, hmac, asyncio), the
agent itself with a TCP probe, then each probe library as its probe kind loads it (the checks
modules import dnspython and httpx; an http probe's first request loads httpcore's anyio
backend too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS: list[tuple[str, str]] = [
    ("python (site, no imports)", ""),
    ("+ psutil", "import psutil"),
    ("+ msgpack, hashlib, hmac", "import msgpack, hashlib, hmac"),
    ("+ asyncio (loads ssl)", "import asyncio"),
    ("+ agentd (main, daemon)", "import agentd.main, agentd.daemon"),
    ("+ probes: tcp/smtp/ftp/...", "import probes.scheduler, probes.checks.lines, "
     "probes.checks.stream"),
    ("+ dns probe (dnspython)", "import probes.checks.dns"),
    ("+ http probe (httpx)", "import probes.checks.http"),
    ("+ its first request (anyio)", "import httpcore._backends.anyio, anyio._backends._asyncio"),
]
READ_RSS = (
    "\nwith open('/proc/self/status') as f:\n"
    "    print(next(int(l.split()[1]) for l in f if l.startswith('VmRSS:')))"
)


def rss_kb(code: str, repeats: int) -> int:
    runs = [
        int(subprocess.run([sys.executable, "-c", code + READ_RSS], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout)
        for _ in range(repeats)
    ]  # fmt: skip
    return min(runs)


def import_ms(code: str, before: str) -> float:
    """Self time of the modules `code` imports that `before` did not."""

    def times(src: str) -> dict[str, int]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", src], cwd=ROOT,
                             check=True, capture_output=True, text=True).stderr
        out = {}
        for line in err.splitlines():
            if line.startswith("import time:") and "|" in line and "self" not in line:
                own, _, name = line[len("import time:"):].split("|")
                out[name.strip()] = int(own)
        return out

    new, old = times(code), times(before) if before else {}
    return sum(us for name, us in new.items() if name not in old) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", "agentd", "probes"], cwd=ROOT,
                   check=True)  # fmt: skip
    print(f"{'':32} {'RSS MB':>7} {'added':>7} {'import ms':>10}")
    code, previous = "", None
    for label, line in ROWS:
        before = code
        code = f"{code}\n{line}" if line else code
        rss = rss_kb(code, args.repeats) / 1024
        added = f"{rss - previous:+7.2f}" if previous is not None else ""
        print(f"{label:32} {rss:7.2f} {added:>7} {import_ms(code, before):10.1f}")
        previous = rss
    return 0


if __name__ == "__main__":
    sys.exit(main())
