"""`ctop silence add / ls / rm`: silences from the shell (ctop.silences).

    ctop silence add --node web-1 --for 2h --reason "kernel upgrade"
    ctop silence add --group web --rule cpu-high --for 30m --reason "load test"
    ctop silence ls [--all] [--json]
    ctop silence rm ID

With `ctop serve` running the daemon keeps them (control socket; the same permission as
load-balancer changes: root or `[control] group`) and takes the author from the socket;
without one they are written to the history database here, as the local user.
Exit codes: 0 done, 1 refused (a bad value, no such silence, permission), 2 usage or config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ctop.config import DirectorConfig
from ctop.control.client import daemon_running, request_silence
from ctop.control.wire import ControlError
from ctop.silences import Silence, SilenceError, local_author
from ctop.store.silencedb import open_book

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """`ctop silence …` under the main parser's subcommands."""
    silence = sub.add_parser("silence", help="silence alerts: add, ls, rm")
    ops = silence.add_subparsers(dest="silence_op", required=True)
    add = ops.add_parser("add", help="silence a node's, a group's and/or a rule's alerts")
    add.add_argument("--node", default="", help="the node id")
    add.add_argument("--group", default="", help="the nodes of this group")
    add.add_argument("--rule", default="", help="the alert rule's name ([[alert]] name)")
    add.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                     help="how long: 30m, 2h, 1d (at most 30d)")
    add.add_argument("--reason", required=True, help="why (shown beside every silenced alert)")
    common(add)
    ls = ops.add_parser("ls", help="the active silences")
    ls.add_argument("--all", action="store_true",
                    help="also expired and removed ones, with who removed them")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    common(ls)
    rm = ops.add_parser("rm", help="end a silence now")
    rm.add_argument("id", type=int, help="the silence's number (ctop silence ls)")
    common(rm)


def run(cfg: DirectorConfig, args: argparse.Namespace) -> int:
    try:
        if daemon_running(cfg.control_socket):
            answer = _through_daemon(cfg.control_socket, args)
        else:
            answer = _here(cfg.store.path, args)
    except (ControlError, SilenceError) as e:
        print(f"ctop silence: {e}", file=sys.stderr)
        return EXIT_FAILED
    if "silences" in answer:
        rows = [Silence.from_plain(s) for s in answer["silences"]]
        if args.json:
            json.dump([s.to_plain() for s in rows], sys.stdout, indent=1)
            print()
        else:
            print(listing(rows, everything=args.all, now=time.time()))
        return EXIT_OK
    s = Silence.from_plain(answer["silence"])
    if args.silence_op == "add":
        print(f"silence {s.id}: {s.target} until {_clock(s.expires)} by {s.author}: {s.reason}")
    else:
        print(f"silence {s.id} ({s.target}) removed by {s.removed_by}")
    return EXIT_OK


def _through_daemon(path: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.silence_op == "add":
        return request_silence(path, "add", node=args.node, group=args.group, rule=args.rule,
                               reason=args.reason, **{"for": args.duration})
    if args.silence_op == "rm":
        return request_silence(path, "rm", id=args.id)
    return request_silence(path, "ls", all=args.all)


def _here(db: str, args: argparse.Namespace) -> dict[str, Any]:
    book = open_book(db)
    try:
        if args.silence_op == "add":
            return {"silence": book.add(node=args.node, group=args.group, rule=args.rule,
                                        duration=args.duration, reason=args.reason,
                                        author=local_author()).to_plain()}
        if args.silence_op == "rm":
            return {"silence": book.remove(args.id, author=local_author()).to_plain()}
        return {"silences": [s.to_plain() for s in book.listing(everything=args.all)]}
    finally:
        book.close()


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def listing(rows: list[Silence], *, everything: bool, now: float) -> str:
    if not rows:
        return "no silences" if everything else "no active silences (ctop silence ls --all)"
    out = [f"{'ID':>4}  {'TARGET':<28} {'AUTHOR':<12} {'FROM':<16}  {'UNTIL':<16}  "
           + ("STATE" if everything else "REASON")]
    for s in rows:
        line = (f"{s.id:>4}  {s.target:<28} {s.author:<12} {_clock(s.created):<16}  "
                f"{_clock(s.expires):<16}  ")
        if everything:
            if s.removed_at is not None:
                state = f"removed by {s.removed_by} at {_clock(s.removed_at)}"
            else:
                state = "active" if s.active(now) else "expired"
            line += f"{state}: {s.reason}"
        else:
            line += s.reason
        out.append(line)
    return "\n".join(out)
