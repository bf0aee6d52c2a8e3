"""`ctop lb ...`: the load-balancer actions for scripts.

    ctop lb list
    ctop lb drain SERVICE SERVER [--wait [--timeout S]] [--expire-templates]
    ctop lb maint SERVICE SERVER [--cut-sessions]
    ctop lb weight SERVICE SERVER N
    ctop lb restore SERVICE SERVER [--ramp 60s]
    ctop lb log [SERVICE [SERVER]] [--server S] [--user U] [--since 1h|ISO-TIME]

drain, maint, weight and restore take --force (past the last-server / quorum guard) and
--dry-run (the plan and the what-if; nothing changes, exit 0).

Exit codes: 0 done (or nothing to do, or a dry run), 1 the action failed or was refused, or
--wait timed out, 2 usage or config error (including "no load balancer configured").

When `ctop serve` runs, drain/maint/weight/restore are requests to it (ctop.lb.client);
--no-daemon acts here, under the lock every process takes. A ramp then runs in the daemon;
--wait polls the balancer from here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime

from ctop.config import ConfigError as DirectorConfigError
from ctop.config import effective_readonly, parse_duration
from ctop.config import load as load_director_config
from ctop.lb import client
from ctop.lb.actions import ActionResult, LBController
from ctop.lb.base import LBError, VirtualService
from ctop.lb.config import ConfigError, HAProxyConfig, LBConfig
from ctop.lb.drainwatch import DrainWatch
from ctop.lb.factory import MONITORING_ONLY, build_controller
from ctop.lb.journal import ActionRecord
from ctop.lb.limits import limits_from_rules
from ctop.lb.plainkeys import to_plain_keys
from ctop.lb.request import MAX_WHY, ActionRequest, perform, resolve

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
    # --backend: the flag's old name, kept working for scripts
    p.add_argument("--balancer", "--backend", dest="balancer", default=d, metavar="NAME",
                   help="the balancer (ipvs, haproxy, a [[lb.haproxy]] name) when a service "
                        "is ambiguous")
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
        if name in ("drain", "maint", "weight", "restore"):
            sp.add_argument(
                "--force", action="store_true", help="even the last serving server / below quorum"
            )
            sp.add_argument(
                "--dry-run", action="store_true", help="show the plan and the what-if only"
            )
            sp.add_argument("--local", action="store_true",
                            help="director pair: change this director alone when the peer "
                                 "cannot confirm (it applies the change when it is back)")
            sp.add_argument("--why", metavar="TEXT",
                            help=f"the reason, kept in the journal and shared with the peer "
                                 f"(printable, at most {MAX_WHY} characters)")
        if name == "drain":
            sp.add_argument("--wait", action="store_true", help="return when it is empty")
            sp.add_argument("--timeout", type=_duration, default=None, metavar="S",
                            help="with --wait: give up (exit 1) after this long")  # fmt: skip
            sp.add_argument(
                "--expire-templates",
                action="store_true",
                help="IPVS: set net.ipv4.vs.expire_quiescent_template=1 first",
            )
        if name == "maint":
            sp.add_argument("--cut-sessions", action="store_true",
                            help="HAProxy: also kill its open sessions")  # fmt: skip
        if name == "restore":
            sp.add_argument("--ramp", type=_duration, default=0.0, metavar="DURATION",
                            help="raise the weight in steps over this long (60s, 2m)")  # fmt: skip
        if name == "log":
            sp.add_argument("service", nargs="?")
            sp.add_argument("server", nargs="?")
            sp.add_argument("--server", dest="server_opt", metavar="SERVER")
            sp.add_argument("--user", help="unix user (or the sudo caller)")
            sp.add_argument("--since", type=_since, metavar="1h|ISO-TIME")
            sp.add_argument("--limit", type=int, default=20)
    return p


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (60s, 2m, 1h)") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    return value


def _since(text: str) -> float:
    """'1h' (that long ago) or a local ISO time ('2026-12-06T21:00', '2026-12-06 21:00')."""
    try:
        return time.time() - _duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()  # naive = the machine's zone
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since wants a duration (1h, 30m) or a time (2026-12-06T21:00), got {text!r}"
        ) from None


def _config(args: argparse.Namespace) -> LBConfig:
    """The director's own config (/etc/ctop/ctop.toml unless --config), so the CLI acts on
    the same balancers and records in the same database (intent, restore) as ctop does."""
    try:
        director = load_director_config(args.config, must_exist=args.config is not None)
    except DirectorConfigError as exc:
        raise ConfigError(str(exc)) from exc
    if args.db is None:
        args.db = director.store.path
    args.control_socket = director.control_socket
    lb = director.lb
    if args.haproxy_socket:
        lb = replace(lb, haproxy=tuple(
            HAProxyConfig("haproxy" if i == 0 else f"haproxy{i + 1}", s)
            for i, s in enumerate(args.haproxy_socket)))
    if args.ipvs:
        lb = replace(lb, ipvs=True)
    if args.readonly or effective_readonly(director):
        lb = replace(lb, readonly=True)
    args.alerts = director.alerts
    args.pair_peers = director.nats.peers if director.nats is not None else ()
    return lb


def _pair_refuses(args: argparse.Namespace) -> str:
    """A director pair shares changes through `ctop serve` (docs/pair.md): acting here
    without it would change this director alone, unrecorded for the peer."""
    if (not args.pair_peers or args.local or args.dry_run or args.haproxy_socket
            or args.ipvs):
        return ""
    return (f"director pair with {', '.join(args.pair_peers)}: changes are shared through "
            "ctop serve, which does not run here (or --no-daemon); start it, or give --local to "
            "change this director alone (not recorded for the peer)")


def _resolved(ctl: LBController, request: ActionRequest) -> ActionRequest:
    """The request naming the service's exact key and its balancer, from what the user typed
    ("10.0.0.1:80" for "TCP 10.0.0.1:80"); LBError when not found or ambiguous."""
    balancer, service = resolve(ctl, request.service, request.balancer or None)
    return replace(request, balancer=balancer, service=service)


def _print_list(services: list[VirtualService], as_json: bool) -> None:
    if as_json:
        print(json.dumps([to_plain_keys(asdict(vs)) for vs in services], indent=2))
        return
    if not services:
        print("no virtual services")
    for vs in services:
        extra = f" {vs.scheduler}" if vs.scheduler else ""
        print(f"{vs.balancer}  {vs.key}  {vs.protocol}{extra}")
        for rs in vs.servers:
            addr = f"[{rs.address}]" if ":" in rs.address else rs.address
            print(
                f"  {rs.key:<24} {addr}:{rs.port:<6} weight {rs.weight:<5} {rs.state:<9}"
                f" active {rs.active_conns:<6} {rs.conns_per_s:.0f}/s  total {rs.total_conns}"
            )


def _print_result(res: ActionResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(to_plain_keys(asdict(res)), indent=2))
    elif res.ok:
        print(res.message)
    else:
        print(
            f"ctop lb {res.action}: {res.balancer} {res.service}/{res.server}: {res.message}",
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
            try:
                request = _action_request(args, args.balancer or "", args.service)
            except ValueError as exc:
                print(f"ctop lb {args.cmd}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            rc = client.run_remote(
                daemon, request, readonly=cfg.readonly and not request.dry_run,
                show=lambda res: _print_result(res, args.json),
            )
            if rc != EXIT_OK or request.dry_run or not getattr(args, "wait", False):
                return rc
            return _wait_here(cfg, args, request)  # the daemon drained it: watch from here
        refusal = client.daemon_refuses(args, args.control_socket) or _pair_refuses(args)
        if refusal:
            print(f"ctop lb {args.cmd}: {refusal}", file=sys.stderr)
            return EXIT_FAILED
    try:
        ctl = build_controller(cfg, args.db)
        ctl.limits = limits_from_rules(args.alerts)
    except (ConfigError, OSError, ValueError) as exc:
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
        _print_list(ctl.services(args.balancer), args.json)
        return EXIT_OK
    if args.cmd == "log":
        return _log(ctl, args)
    try:
        request = _action_request(args, args.balancer or "", args.service)
    except ValueError as exc:
        print(f"ctop lb {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    request = _resolved(ctl, request)
    balancer, service = request.balancer, request.service
    if request.ramp_s and not args.json:
        ctl.on_ramp_step = lambda r: print(r.message, flush=True)
    res = perform(ctl, request)
    _print_result(res, args.json)
    if res.dry_run:
        return EXIT_OK if res.ok else EXIT_FAILED
    if res.ok and request.ramp_s:
        ramp = ctl.ramps.get((balancer, service, args.server))
        if ramp is not None:  # without a daemon this process carries the ramp to its end
            ramp.join()
            if not args.json:
                print(f"ramp {ramp.outcome}")
            if not ramp.outcome.startswith("done"):
                return EXIT_FAILED
    if res.ok and getattr(args, "wait", False):
        return _wait_empty(ctl, replace(request, dry_run=False), args)
    return EXIT_OK if res.ok else EXIT_FAILED


def _wait_here(cfg: LBConfig, args: argparse.Namespace, request: ActionRequest) -> int:
    """drain --wait after the daemon drained: read the balancer from this process."""
    try:
        ctl = build_controller(cfg, args.db)
    except (ConfigError, OSError) as exc:
        print(f"ctop lb: --wait: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _wait_empty(ctl, _resolved(ctl, request), args)
    except LBError as exc:
        print(f"ctop lb drain --wait: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if ctl.journal is not None:
            ctl.journal.close()


def _wait_empty(ctl: LBController, req: ActionRequest, args: argparse.Namespace) -> int:
    """drain --wait: poll the server's active connections (and persistence templates) until
    none are left; one progress line per change, with the time to empty from the decay."""
    watch = DrainWatch()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    last = ""
    while True:
        active, templates = ctl.drain_status(req.balancer, req.service, req.server)
        now = time.monotonic()
        watch.add(now, active + (templates or 0))
        line = f"{req.server}: {active} active"
        if templates is not None:
            line += f", {templates} persistence template{'s' if templates != 1 else ''}"
        if active + (templates or 0) == 0:
            print(f"{line}: empty", flush=True)
            return EXIT_OK
        eta = watch.eta()
        line += f", empty in ~{eta:.0f} s" if eta is not None else ", not decreasing yet"
        if line != last:
            print(line, flush=True)
            last = line
        if deadline is not None and now >= deadline:
            print(
                f"ctop lb drain: {req.server} not empty after {args.timeout:g} s ({active} "
                f"active{'' if templates is None else f', {templates} templates'})",
                file=sys.stderr,
            )
            return EXIT_FAILED
        time.sleep(POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - now)))


POLL_S = 0.5


def _log(ctl: LBController, args: argparse.Namespace) -> int:
    assert ctl.journal is not None
    rows = ctl.journal.actions(
        service=args.service, server=args.server_opt or args.server, user=args.user,
        since=args.since, limit=args.limit,
    )  # fmt: skip
    if args.json:
        plain = [{**to_plain_keys(asdict(r)), "time": _local(r.ts)} for r in rows]
        print(json.dumps(plain, indent=2))
        return EXIT_OK
    for r in rows:
        print(_log_line(r))
    return EXIT_OK


def _local(ts: float) -> str:
    """ISO 8601 in the machine's zone, with its offset: 2026-12-06T23:14:05+01:00."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _log_line(r: ActionRecord) -> str:
    weights = f"{_w(r.weight_before)}->{_w(r.weight_after)}"
    if r.saved_weight is not None:  # drain/maint: what restore goes back to
        weights += f" (saved {r.saved_weight})"
    return (
        f"{_local(r.ts)} {r.who} {r.origin} {r.balancer} {r.service}/{r.server} "
        f"{r.action} {weights} {r.result}"
    ) + (f" why: {r.why}" if r.why else "")


def _w(weight: int | None) -> str:
    return "?" if weight is None else str(weight)


def _action_request(args: argparse.Namespace, balancer: str, service: str) -> ActionRequest:
    """The change the command line asks for, the same whoever runs it (daemon or here).
    Raises ValueError (a ramp out of range)."""
    return ActionRequest(
        args.cmd, balancer, service, args.server, getattr(args, "weight", None),
        origin="cli", force=args.force, dry_run=args.dry_run,
        ramp_s=getattr(args, "ramp", 0.0),
        cut_sessions=getattr(args, "cut_sessions", False),
        expire_templates=getattr(args, "expire_templates", False),
        local=getattr(args, "local", False),
        why=getattr(args, "why", None),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
