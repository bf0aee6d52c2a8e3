"""Failover as ctop sees it: two directors with real keepalived and real ctop serve
(tests/helpers/vrrp_lab.py). Each run stops the MASTER's keepalived (SIGTERM: a clean stop,
priority 0 sent) and prints the seconds until the VIP is on the backup and until the backup's
ctop snapshot (what `ctop status` reads) says MASTER; the gap between the two is ctop's part.

    sudo .venv/bin/python bench/pair_failover.py [--runs 4]

Target (issue 14): MASTER shown within 3 s of the transition.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.vrrp_lab import VrrpLab, usable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
    if usable():
        print(f"pair_failover: {usable()}", file=sys.stderr)
        return 2
    lab = VrrpLab(Path(tempfile.mkdtemp(prefix="ctop-pair-bench-"))).up()
    try:
        for i in (1, 2):
            lab.start_keepalived(i)
        lab.master(15)
        for i in (1, 2):
            lab.start_serve(i)
        print("run  stopped  VIP moved s  ctop shows MASTER s  ctop's part s")
        for run in range(args.runs):
            m = lab.master()
            b = 3 - m
            lab.wait_pair(b, lambda s: s["pair"]["role"] == "BACKUP", 15)
            t0 = time.monotonic()
            stopping = lab.stop_keepalived(m, wait=False)
            vip = shown = None
            while time.monotonic() - t0 < 10 and shown is None:
                if vip is None and lab.holds_vip(b):
                    vip = time.monotonic() - t0
                s = lab.status(b)
                if s and s["pair"] and s["pair"]["role"] == "MASTER":
                    shown = time.monotonic() - t0
                time.sleep(0.01)
            part = f"{shown - vip:.2f}" if shown is not None and vip is not None else "-"
            print(f"{run:>3}  d{m:<7} {vip or float('nan'):>11.2f}  "
                  f"{shown or float('nan'):>19.2f}  {part:>13}")
            stopping.wait(timeout=10)
            lab.start_keepalived(m)
            lab.wait_pair(m, lambda s: s["pair"]["role"] in ("MASTER", "BACKUP"), 15)
            time.sleep(2)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
