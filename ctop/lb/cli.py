"""`ctop lb ...`: the load-balancer actions for scripts.

    ctop lb list
    ctop lb drain SERVICE SERVER
    ctop lb maint SERVICE SERVER
    ctop lb weight SERVICE SERVER N
    ctop lb restore SERVICE SERVER
    ctop lb log [SERVICE [SERVER]]

Exit codes: 0 done (or nothing to do), 1 the action failed or was refused, 2 usage or config
error (including "no load balancer configured").

When `ctop serve` runs, drain/maint/weight/restore are requests to it (ctop.lb.client);
--no-daemon acts here, under the lock every process takes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ctop.lb import client
from ctop.lb.actions import ActionResult, LBController
from ctop.lb.base import LBError, VirtualService
from ctop.lb.config import ConfigError, LBConfig, parse_config
from ctop.lb.factory import MONITORING_ONLY, build_controller
from ctop.lb.request import ActionRequest, perform, resolve

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _common(p: argparse.ArgumentParser, *, sub: bool) -> None:
    # The same options work before and after the subcommand; SUPPRESS keeps a subparser from
    # overwriting what was given before it.
    d = argparse.SUPPRESS if sub else None
    f = argparse.SUPPRESS if sub else False
    p.add_argument(
        "--haproxy-socket",
        action="append",
        default=d,
        metavar="PATH|HOST:PORT",
        help="HAProxy admin socket (repeatable)",
    )
    p.add_argument("--ipvs", action="store_true", default=f, help="use the local IPVS table")
    p.add_argument("--config", default=d, metavar="TOML", help="ctop config with an [lb] table")
    p.add_argument("--db", default=d, metavar="PATH", help="ctop database (journal and intent)")
    p.add_argument("--backend", default=d, help="backend name when a service is ambiguous")
    p.add_argument("--readonly", action="store_true", default=f, help="refuse every action")
    p.add_argument("--json", action="store_true", default=f, help="machine-readable output")
    client.add_options(p, sub=sub)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctop lb", description="Load-balancer control.")
    _common(p, sub=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, extra, text in (
        ("list", (), "virtual services and real servers"),
        ("drain", ("service", "server"), "no new connections; existing ones finish"),
        (
            "maint",
            ("service", "server"),
            "maintenance: no traffic at all, not even sticky sessions (HAProxy only)",
        ),
        ("weight", ("service", "server", "weight"), "set a weight"),
        ("restore", ("service", "server"), "back to the weight before the drain or maint"),
        ("log", (), "recent actions from the journal"),
    ):
        sp = sub.add_parser(name, help=text)
        _common(sp, sub=True)
        for arg in extra:
            sp.add_argument(arg, type=int if arg == "weight" else str)
        if name == "log":
            sp.add_argument("service", nargs="?")
            sp.add_argument("server", nargs="?")
            sp.add_argument("--limit", type=int, default=20)
    return p


def _config(args: argparse.Namespace) -> LBConfig:
    """The director's own config (/etc/ctop/ctop.toml unless --config), so the CLI acts on
    the same balancers and records in the same database (intent, restore) as ctop does."""
    from ctop.config import ConfigError as DirectorConfigError
    from ctop.config import effective_readonly
    from ctop.config import load as load_director_config

    try:
        director = load_director_config(args.config, must_exist=args.config is not None)
    except DirectorConfigError as exc:
        raise ConfigError(str(exc)) from exc
    if args.db is None:
        args.db = director.store.path
    args.control_socket = director.control_socket
    lb = dict(director.lb)
    if effective_readonly(director):
        lb["readonly"] = True
    if args.haproxy_socket:
        lb["haproxy"] = [
            {"name": "haproxy" if i == 0 else f"haproxy{i + 1}", "socket": s}
            for i, s in enumerate(args.haproxy_socket)
        ]
    if args.ipvs:
        lb["ipvs"] = {**lb.get("ipvs", {}), "enabled": True}
    if args.readonly:
        lb["readonly"] = True
    return parse_config({"lb": lb})


_resolve = resolve  # (backend, service key) for what the user typed


def _print_list(services: list[VirtualService], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(vs) for vs in services], indent=2))
        return
    if not services:
        print("no virtual services")
    for vs in services:
        extra = f" {vs.scheduler}" if vs.scheduler else ""
        print(f"{vs.backend}  {vs.key}  {vs.protocol}{extra}")
        for rs in vs.servers:
            addr = f"[{rs.address}]" if ":" in rs.address else rs.address
            print(
                f"  {rs.key:<24} {addr}:{rs.port:<6} weight {rs.weight:<5} {rs.state:<9}"
                f" active {rs.active_conns:<6} {rs.conns_per_s:.0f}/s  total {rs.total_conns}"
            )


def _print_result(res: ActionResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(res), indent=2))
    elif res.ok:
        print(res.message)
    else:
        print(
            f"ctop lb {res.action}: {res.backend} {res.service}/{res.server}: {res.message}",
            file=sys.stderr,
        )


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["lb"]:  # tolerate being handed the whole `lb ...` command line
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"ctop lb: config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if cfg.monitoring_only:
        print(f"ctop lb: {MONITORING_ONLY}", file=sys.stderr)
        return EXIT_USAGE
    if args.cmd in client.CHANGES:
        daemon = client.daemon_socket(args, args.control_socket)
        if daemon is not None:  # ctop serve owns the balancers: it resolves the service too
            request = _action_request(args, args.backend or "", args.service)
            return client.run_remote(
                daemon, request, readonly=cfg.readonly,
                show=lambda res: _print_result(res, args.json),
            )
        refusal = client.daemon_refuses(args, args.control_socket)
        if refusal:
            print(f"ctop lb {args.cmd}: {refusal}", file=sys.stderr)
            return EXIT_FAILED
    try:
        ctl = build_controller(cfg, args.db)
    except (ConfigError, OSError) as exc:
        print(f"ctop lb: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _run(ctl, args)
    except LBError as exc:
        print(f"ctop lb {args.cmd}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if ctl.journal is not None:
            ctl.journal.close()


def _run(ctl: LBController, args: argparse.Namespace) -> int:
    if args.cmd == "list":
        _print_list(ctl.services(args.backend), args.json)
        return EXIT_OK
    if args.cmd == "log":
        assert ctl.journal is not None
        rows = ctl.journal.actions(service=args.service, server=args.server, limit=args.limit)
        if args.json:
            print(json.dumps([asdict(r) for r in rows], indent=2))
        for r in [] if args.json else rows:
            print(
                f"{r.ts:.0f} {r.who} {r.origin} {r.backend} {r.service}/{r.server} "
                f"{r.action} {r.weight_before}->{r.weight_after} {r.result}"
            )
        return EXIT_OK
    backend, service = _resolve(ctl, args.service, args.backend)
    res = perform(ctl, _action_request(args, backend, service))
    _print_result(res, args.json)
    return EXIT_OK if res.ok else EXIT_FAILED


def _action_request(args: argparse.Namespace, backend: str, service: str) -> ActionRequest:
    """The change the command line asks for, the same whoever runs it (daemon or here)."""
    return ActionRequest(
        args.cmd, backend, service, args.server, getattr(args, "weight", None), origin="cli"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
