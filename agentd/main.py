"""agentd command line: `agentd [--config FILE] [--director HOST:PORT ...] [--once --json]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from agentd import __version__
from agentd.config import DEFAULT_PATH, Config, ConfigError, load
from agentd.keys import KeyError_, load_key

EXIT_USAGE = 2  # bad config, key or flags: systemd's Restart=on-failure will not help


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentd",
        description="ctop node agent: streams signed metric reports to the director over UDP.",
    )
    p.add_argument("--config", metavar="FILE", help=f"TOML config file (default {DEFAULT_PATH})")
    p.add_argument(
        "--director",
        metavar="HOST:PORT",
        action="append",
        help="send to this director (repeatable; replaces the config file's list)",
    )
    p.add_argument("--key-file", metavar="FILE", help="cluster key file, mode 0600")
    p.add_argument("--node-id", metavar="ID", help="node id (default: the hostname)")
    p.add_argument("--group", metavar="LABEL", help="group label shown by the director")
    p.add_argument("--interval", metavar="SECONDS", type=float, help="report interval")
    p.add_argument(
        "--join-interval", metavar="SECONDS", type=float, help="join re-announcement period"
    )
    p.add_argument(
        "--beacon-interval", metavar="SECONDS", type=float,
        help="liveness beacon spacing between reports (default 0.25; 0 = reports only)",
    )
    p.add_argument(
        "--probe",
        metavar="URL",
        action="append",
        help="add a service probe, e.g. http://127.0.0.1:80/ (repeatable; added to the file's)",
    )
    p.add_argument(
        "--address",
        metavar="IP",
        action="append",
        help="announce this address instead of all of the node's (repeatable)",
    )
    p.add_argument("--push-key-file", metavar="FILE",
                   help="accept configuration pushed by the director, signed with this key")
    p.add_argument("--push-state-file", metavar="FILE",
                   help="where the last pushed configuration is kept")
    p.add_argument("--allow-remote-commands", action="store_true", default=None,
                   help="let pushed command probes run (default: refused)")
    p.add_argument("--once", action="store_true", help="print one report and exit (no sending)")
    p.add_argument("--json", action="store_true", help="with --once: print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"agentd {__version__}")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "director": args.director,
        "key_file": args.key_file,
        "node_id": args.node_id,
        "group": args.group,
        "interval": args.interval,
        "join_interval": args.join_interval,
        "beacon_interval": args.beacon_interval,
        "probes": args.probe,
        "addresses": args.address,
        "push_key_file": args.push_key_file,
        "push_state_file": args.push_state_file,
        "allow_remote_commands": args.allow_remote_commands,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _setup_logging(verbose: bool) -> None:
    # Under systemd stderr goes to the journal, which adds its own timestamps.
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = (
        "%(levelname)s %(message)s"
        if under_journal
        else "%(asctime)s agentd %(levelname)s %(message)s"
    )
    logging.basicConfig(
        stream=sys.stderr, level=logging.DEBUG if verbose else logging.INFO, format=fmt
    )
    if not verbose:  # httpx logs every HTTP probe at INFO: one journal line per check
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _print_once(cfg: Config, as_json: bool) -> None:
    from agentd.daemon import once

    report = asyncio.run(once(cfg))
    if as_json:
        import json  # --once only: a running agent never loads it

        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for name, value in report.items():
        if name == "metrics":
            for metric, v in value.items():
                print(f"{metric:20} {v}")
        elif name == "services":
            for s in value:
                print(f"service {s['name']}: {s['status']} {s['latency_ms']} ms {s['detail']}")
        else:
            print(f"{name:20} {value}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    path = args.config or DEFAULT_PATH
    overrides = _overrides(args)

    def reload() -> Config:
        return load(path, overrides, required=args.config is not None)

    try:
        cfg = reload()
        if args.once:
            _print_once(cfg, args.json)
            return 0
        if not cfg.directors:
            where = cfg.path or f"{path} (missing)"
            raise ConfigError(f"no director configured: set director in {where} or pass --director")
        key = load_key(cfg.key_file)
        push_key = load_key(cfg.push_key_file) if cfg.push_key_file else None
    except ConfigError as e:
        print(f"agentd: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyError_ as e:
        print(f"agentd: key error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from agentd.daemon import Agent

    try:
        return asyncio.run(Agent(cfg, key, reload=reload, push_key=push_key).run())
    except KeyboardInterrupt:  # a second Ctrl-C while leaving
        return 130


if __name__ == "__main__":
    sys.exit(main())
