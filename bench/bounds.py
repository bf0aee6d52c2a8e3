"""What bounding every decoded field costs: report body checks, this tree against a git ref.

Loads the director's body decoder of this tree (`ctop/ingest/decode.py`) and of REF (default
`main`, read with `git show`: its `ctop/ingest/decode.py`, or `agentd/wire.py` from before the
protocol was split) as two modules in one process and times them, alternating so a noisy
machine affects both alike:

- fast: `_fast_report(body)`, the director's path for a well-formed report (run once per node
  per tick when the tick folds the newest report in, not per datagram: the receiver checks only
  the header on arrival, docs/protocol.md);
- reference: `parse_body` through its checked path (`_fast_report` bypassed), what names the
  fault of a bad report.

The body is a busy 16-core node's report with 7 services and 5 top processes. Prints the best
of --rounds for each and the ratio this tree / REF.

    .venv/bin/python bench/bounds.py [--ref main] [--rounds 60]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType

import msgpack

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def report_body() -> dict:
    from agentd.encoder import encode
    from agentd.metrics import SCALARS
    from agentd.protocol import Header, Report, ServiceStatus

    metrics = {m.name: 123_456 for m in SCALARS}
    metrics.update(cpu_percent=55.5, mem_percent=40.1, swap_percent=1.0, disk_root_percent=50.0,
                   cpu_cores=[50] * 16, load=[1.5, 1.2, 1.0],
                   net_ifaces={"eth0": [10**6, 2 * 10**6, 900, 1200]},
                   tcp_states={"ESTABLISHED": [100], "TIME_WAIT": [20]},
                   top_procs=[("haproxy", 1234, 38.7, 2**31)] * 5)
    services = tuple(ServiceStatus(f"svc{i}", "ok", 1.5) for i in range(7))
    data = encode(b"k" * 32, Report(Header("n", 1, 1, time.time()), 1.0, "g", metrics, services))
    return msgpack.unpackb(data[3:-16], raw=False, strict_map_key=False)


def reference(w: ModuleType, body: dict) -> object:
    return w.Report(w._parse_header(body), w._interval(body), w._str(body, "g", "group", ""),
                    w._parse_metrics(body["m"]), tuple(map(w._parse_service, body["s"])))


def source_at(ref: str) -> str:
    """REF's decoder: ctop/ingest/decode.py, or agentd/wire.py before the protocol split."""
    for path in ("ctop/ingest/decode.py", "agentd/wire.py"):
        got = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, capture_output=True,
                             text=True)
        if got.returncode == 0:
            return got.stdout
    raise SystemExit(f"{ref} has neither ctop/ingest/decode.py nor agentd/wire.py")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="main")
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source_at(args.ref))
    mods = {"ref": load("decode_ref", Path(f.name)),
            "tree": load("decode_tree", ROOT / "ctop" / "ingest" / "decode.py")}
    body = report_body()
    for m in mods.values():
        assert m._fast_report(body) is not None, "the body must take the fast path"
    best: dict[tuple[str, str], float] = {}
    n = 2000
    for _ in range(args.rounds):
        for name, m in mods.items():
            for path, fn in (("fast", m._fast_report), ("reference", lambda b, m=m:
                                                          reference(m, b))):
                t = min(timeit.repeat(lambda fn=fn: fn(body), number=n, repeat=2)) / n
                best[(path, name)] = min(best.get((path, name), t), t)
    for path in ("fast", "reference"):
        ref, tree = best[(path, "ref")], best[(path, "tree")]
        print(f"{path:<10} {args.ref}: {ref * 1e6:6.2f} µs   this tree: {tree * 1e6:6.2f} µs"
              f"   ratio {tree / ref:.2f}")


if __name__ == "__main__":
    main()
