"""The `ctop` command.

    ctop                 the terminal UI (attaches to `ctop serve` if running, else embeds it)
    ctop --demo          a real small cluster on this machine, shown in the UI
    ctop serve           the engine without a terminal (systemd), with the control socket
    ctop status [--json] the current cluster snapshot, from the running daemon
    ctop lb ...          list, drain, maint, re-weight and restore real servers (scriptable)
    ctop silence ...     add, list and remove silences of alerts
    ctop probe URL...    run service checks by hand
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ctop import __version__
from ctop.config import ConfigError, DirectorConfig, parse_address, worker_count
from ctop.config import load as load_config
from ctop.pair.view import PairView

log = logging.getLogger("ctop")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE",
                   help="config file (default /etc/ctop/ctop.toml)")
    p.add_argument("--listen", metavar="HOST:PORT", help="UDP address agents report to")
    p.add_argument("--key-file", metavar="FILE", help="cluster key file (mode 0600)")
    p.add_argument("--db", metavar="PATH", help="history database (SQLite)")
    p.add_argument("--socket", metavar="PATH", help="control socket of `ctop serve`")
    p.add_argument("--readonly", action="store_true", help="disable every load-balancer action")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ctop", description="Cluster monitor for LVS/IPVS clusters.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
    )
    p.add_argument("--version", action="version", version=f"ctop {__version__}")
    p.add_argument("--demo", action="store_true", help="run a real demo cluster on this machine")
    p.add_argument("--demo-nodes", type=int, default=6, metavar="N", help="agents in the demo")
    p.add_argument("--color", choices=("auto", "truecolor", "256", "16", "8"), default="auto",
                   help="force a colour depth")
    p.add_argument("--embedded", action="store_true",
                   help="run the engine inside the UI even if a daemon is running")
    p.add_argument("--at", metavar="TIME",
                   help='show the cluster as it was then, from the history database, read-only: '
                        '"2026-12-01 14:05" (local), "14:05", "-15m" or "2h ago"')
    p.add_argument("--nats", metavar="URL", action="append",
                   help="show every cluster and group that collectors publish to this NATS "
                        "server (repeat for more servers; read-only; docs/scaling.md)")
    _common(p)
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the engine headless (for systemd)")
    serve.add_argument("--receivers", metavar="N",
                       help='receiver processes ([receive] workers): a number or "auto"')
    serve.add_argument("--collector", action="store_true",
                       help="publish this engine's groups to NATS ([nats] role = collector)")
    _common(serve)
    status = sub.add_parser("status", help="print the cluster snapshot of the running daemon")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _common(status)
    groups = sub.add_parser("groups", help="groups, their pushed configuration and nodes")
    groups.add_argument("--json", action="store_true", help="machine-readable output")
    _common(groups)
    keys = sub.add_parser("keys", help="per-node keys: `ctop keys issue NODE` prints its key")
    keys.add_argument("action", choices=("issue",))
    keys.add_argument("node", help="the node id the agent sends (--node-id, default hostname)")
    keys.add_argument("--master-key-file", metavar="FILE",
                      help="master secret (default: master_key_file of the config)")
    keys.add_argument("--push", action="store_true",
                      help="print the node's push key (for its push_key_file), derived from "
                           "push_master_key_file (or --master-key-file)")
    _common(keys)
    from ctop.silence_cli import add_parser as add_silence_parser

    add_silence_parser(sub, _common)
    sub.add_parser("lb", help="load-balancer actions (see `ctop lb --help`)", add_help=False)
    sub.add_parser("probe", help="run service checks by hand (see `ctop probe --help`)",
                   add_help=False)
    return p


def director_config(args: argparse.Namespace) -> DirectorConfig:
    from dataclasses import replace

    cfg = load_config(args.config, must_exist=args.config is not None)
    changes: dict = {}
    if args.listen:
        changes["listen"] = parse_address(args.listen)
    if args.key_file:
        changes["key_file"] = args.key_file
    if args.db:
        changes["store"] = replace(cfg.store, path=args.db)
    if args.socket:
        changes["control_socket"] = args.socket
    if args.readonly:
        changes["readonly"] = True
    if getattr(args, "collector", False):
        if cfg.nats is None:
            raise ConfigError("--collector needs a [nats] section (servers) in the config")
        changes["nats"] = replace(cfg.nats, role="collector")
    if getattr(args, "receivers", None):
        try:
            value = args.receivers
            changes["receive_workers"] = worker_count(
                int(value) if value.isdigit() else value)
        except ValueError as e:
            raise ConfigError(f"--receivers: {e}") from None
    flags = {"listen": "listen", "key_file": "key_file", "store": "store.path",
             "control_socket": "control_socket", "receive_workers": "receive.workers"}
    changes["overrides"] = tuple(flags[k] for k in changes if k in flags)
    return replace(cfg, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-tools with their own parsers get their arguments untouched.
    if argv[:1] == ["lb"]:
        from ctop.lb.cli import main as lb_main

        return lb_main(argv[1:])
    if argv[:1] == ["probe"]:
        from probes.cli import main as probe_main

        return probe_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    if args.demo or args.command is None:
        from ctop.uideps import require_ui

        require_ui()  # a node install has no UI libraries: say so before starting anything
    try:
        if args.demo:
            from ctop.tui.launch import run_demo

            return run_demo(nodes=args.demo_nodes, color=args.color, readonly=args.readonly)
        cfg = director_config(args)
        if args.nats and args.command is None:
            return run_nats_ui(cfg, args.nats, color=args.color)
        if args.nats and args.command == "status":
            return run_nats_status(cfg, args.nats, as_json=args.json)
        if args.command == "serve":
            return asyncio.run(serve(cfg))
        if args.command == "status":
            return status(cfg, as_json=args.json)
        if args.command == "silence":
            from ctop.silence_cli import run as run_silence

            return run_silence(cfg, args)
        if args.command == "groups":
            from ctop.groupscli import groups_command

            return groups_command(cfg, as_json=args.json)
        if args.command == "keys":
            return issue_key(cfg, args.node, args.master_key_file, push=args.push)
        if args.at is not None:
            return run_past(cfg, args.at, color=args.color)
        return run_ui(cfg, color=args.color, embedded=args.embedded)
    except ConfigError as e:
        print(f"ctop: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from agentd.keys import KeyError_
        from ctop.control.wire import ControlError
        from ctop.startup import StartError

        if isinstance(e, StartError):
            print(f"ctop serve: {e}", file=sys.stderr)
            return 1
        if isinstance(e, ControlError):
            print(f"ctop: {e}", file=sys.stderr)
            return 3
        from ctop.alerts import RuleError

        if isinstance(e, KeyError_ | RuleError | ValueError | OSError):
            print(f"ctop: {e}", file=sys.stderr)
            return 2
        raise


async def serve(cfg: DirectorConfig) -> int:
    from agentd.keys import KeyError_
    from ctop.control.server import ControlServer
    from ctop.control.wire import ControlError
    from ctop.engine import Engine
    from ctop.startup import os_problem, setting_error

    try:
        engine = Engine(cfg)
    except KeyError_ as e:
        which = "master_key_file" if cfg.master_key_file else "key_file"
        raise setting_error(cfg, which, getattr(cfg, which), str(e)) from None
    try:
        control = ControlServer(engine, cfg.control_socket, group=cfg.control_group)
    except ControlError as e:  # an unknown [control] group: say so before starting anything
        raise ConfigError(str(e)) from None
    await engine.start()
    try:
        await control.start()
    except (OSError, ControlError) as e:
        await engine.stop()
        raise setting_error(cfg, "control_socket", cfg.control_socket,
                            "cannot create the control socket: "
                            + (os_problem(e) if isinstance(e, OSError) else str(e))) from None
    host = cfg.listen[0]
    log.info("ctop serve: cluster %s, udp %s:%d, database %s, control socket %s",
             cfg.cluster, host, engine.port, cfg.store.path, cfg.control_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, engine.reload_keys)  # key rotation
    await stop.wait()
    log.info("ctop serve: stopping")
    await control.stop()
    await engine.stop()
    return 0


def issue_key(cfg: DirectorConfig, node: str, master_file: str | None,
              push: bool = False) -> int:
    """Print the key of one node, for its key file (mode 0600) in per-node mode, or with
    `push` its push key (docs/director.md, configuration push)."""
    from agentd.keys import load_key, node_key
    from agentd.push import push_key

    setting = "push_master_key_file" if push else "master_key_file"
    path = master_file or (cfg.push_master_key_file if push else cfg.master_key_file)
    if not path:
        print(f"ctop: no master secret: set {setting} in ctop.toml or pass "
              "--master-key-file (docs/director.md)", file=sys.stderr)
        return 2
    if not 0 < len(node) <= 128:
        print("ctop: a node id is 1 to 128 characters", file=sys.stderr)
        return 2
    print((push_key if push else node_key)(load_key(path), node).decode())
    return 0


STATUS_ALL_NODES = 50  # `ctop status` lists every node up to this many


def status(cfg: DirectorConfig, *, as_json: bool) -> int:
    from ctop.control.client import ControlError, fetch_status

    try:
        data = fetch_status(cfg.control_socket)
    except ControlError as e:
        print(f"ctop: {e}", file=sys.stderr)
        return 3
    try:
        if as_json:
            json.dump(data, sys.stdout, indent=1, default=str)
            print()
        else:
            print(status_text(data))
        sys.stdout.flush()
    except BrokenPipeError:  # `ctop status --json | head`: the reader has had enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return 0


def receivers_text(workers: list[dict[str, Any]] | None) -> list[str]:
    """[receive] workers: one line per receiver process (ctop/ingest/workers.py)."""
    if not workers:
        return []
    out = [f"receivers: {len(workers)} worker processes"]
    for w in workers:
        state = f"pid {w['pid']}" if w["pid"] else "restarting"
        line = (f"  worker {w['worker']}: {state}, {w['datagrams']} datagrams, "
                f"{w['restarts']} restarts")
        if w["last_exit"]:
            line += f" (last: {w['last_exit']})"
        out.append(line)
    return out


def status_text(data: dict[str, Any]) -> str:
    """`ctop status` without --json: the cluster, alerts, balancers, nodes that need a look."""
    t = data["totals"]
    out = [
        f"cluster {data['cluster']}: {t['nodes']} nodes — {t['alive']} alive, "
        f"{t['suspect']} suspect, {t['dead']} dead, {t['left']} left"
        + (f", {t['unknown']} unknown (collector lost)" if t.get("unknown") else ""),
        f"cpu avg {t['cpu_avg']:.1f}% max {t['cpu_max']:.1f}%   "
        f"mem avg {t['mem_avg']:.1f}% max {t['mem_max']:.1f}%   conns {t['conns']}",
    ]
    if data.get("history_error"):
        out.append(data["history_error"])
    out += pair_text(data.get("pair"))
    out += [f"ALERT [{a['severity']}] {a['message']}{muted_text(a)}" for a in data["alerts"]]
    if data["drops"]:
        out.append("dropped datagrams: " + ", ".join(f"{k} {v}" for k, v in data["drops"].items()))
        sources = data.get("drop_sources", {})
        out += [f"  {reason} from " + ", ".join(f"{addr} ({n})" for addr, n in sources[reason])
                for reason in data["drops"] if sources.get(reason)]
    out += receivers_text(data.get("receivers"))
    for svc in data["lb"]:
        states = Counter(rs["state"] for rs in svc["servers"])
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        basis = "conn/s" if svc.get("basis") == "rate" else "active conns"
        out.append(f"lb {svc['backend']} {svc['key']}: {len(svc['servers'])} real servers "
                   f"({by_state}), imbalance {svc['imbalance']:.2f} by {basis}")
        # what needs a look: drift from the journal, automation that cannot judge a server
        for rs in svc["servers"]:
            where = f"lb {svc['backend']} {svc['key']} / {rs['key']}"
            if rs.get("drift"):
                out.append(f"{where}: DRIFT {rs['drift']} (re-apply: R in ctop)")
            if rs.get("health", "").endswith("no automation"):
                out.append(f"{where}: auto-quiesce: {rs['health']}")
    if data.get("pair_sync"):  # a director pair's shared actions over NATS (docs/pair.md)
        out.append(data["pair_sync"]["text"])
        out += [f"pair: tables differ from {p}: {v['differs']}"
                for p, v in data["pair_sync"]["peers"].items() if v.get("differs")]
    if "owners: " in data.get("lb_note", ""):  # keepalived, ldirectord, a state file
        out.append("lb " + data["lb_note"][data["lb_note"].index("owners: "):])
    if data["lb_error"]:
        out.append(f"lb error: {data['lb_error']}")
    if data.get("readonly"):
        out.append("load-balancer changes: refused (read-only)")
    # Every node up to a screenful; beyond that the ones that need a look (--json has all).
    nodes = data["nodes"]
    shown = nodes if len(nodes) <= STATUS_ALL_NODES else [
        n for n in nodes if n["liveness"] != "alive"]
    configs = data.get("configs", {}).get("nodes", {})
    out += [f"  {n['node_id']:<24} {n['liveness']:<8} cpu {n['cpu']:5.1f}%  "
            f"mem {n['mem']:5.1f}%  conns {n['conns']}{config_note(configs.get(n['node_id']))}"
            for n in shown]
    if len(shown) < len(nodes):
        out.append(f"  ({len(nodes) - len(shown)} alive nodes not listed: ctop status --json)")
    return "\n".join(out)


def pair_text(plain: dict[str, Any] | None) -> list[str]:
    """`ctop status` lines of the director pair ([pair]): roles, VIPs, the sync daemons."""
    pair = PairView.from_plain(plain)
    if pair is None:
        return []
    out = [pair.text()]
    for i in pair.instances:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.last_transition))
        out.append(f"  {i.name}: {i.state}, priority {i.priority} (base {i.base_priority}), "
                   f"VIPs {' '.join(i.vips) or 'none'} (held: {' '.join(i.vips_held) or 'none'})"
                   + (f", last transition {since}" if i.last_transition else ""))
    out += [f"  IPVS sync daemon: {d.role}, mcast interface {d.mcast_interface}, syncid "
            f"{d.syncid}" for d in pair.sync_daemons]
    if pair.sync_error:
        out.append(f"  IPVS sync daemon: {pair.sync_error}")
    elif not pair.sync_daemons:
        out.append("  IPVS sync daemon: none running")
    return out
def muted_text(alert: dict[str, Any]) -> str:
    """' (silenced by alice until 2026-12-07 06:54: kernel upgrade)' for a muted alert."""
    from ctop.mute import muted_text as text

    return f" ({text(alert)})" if alert.get("muted") else ""
def config_note(c: dict[str, Any] | None) -> str:
    """A node's pushed configuration in `ctop status`: its version and whether it is current."""
    if not c or (c["running"] in ("", "-") and c["current"]):  # nothing pushed, none due
        return ""
    running = "old agent" if c["running"] == "-" else c["running"] or "none"
    return f"  config {running} {'current' if c['current'] else 'NOT CURRENT'}"


def run_ui(cfg: DirectorConfig, *, color: str = "auto", embedded: bool = False) -> int:
    # The UI's modules load Textual: `ctop status`, `ctop serve` and `ctop lb` never need it.
    from ctop.config import effective_readonly
    from ctop.control.client import daemon_running
    from ctop.tui.launch import make_app, run_embedded
    from ctop.tui.remote import RemoteSource

    readonly = effective_readonly(cfg)
    if not embedded and daemon_running(cfg.control_socket):
        # The daemon owns the balancers: this UI's actions are requests to it.
        victoria = None
        if cfg.victoria_url:
            from ctop.victoria import VictoriaReader

            victoria = VictoriaReader(cfg.victoria_url, cfg.cluster)
        source = RemoteSource(cfg.control_socket, cfg.store.path, readonly=readonly,
                              victoria=victoria)
        try:
            make_app(source, readonly, color).run()
            return 0
        finally:
            source.close()
    return asyncio.run(run_embedded(cfg, color))


def run_nats_ui(cfg: DirectorConfig, urls: Sequence[str], *, color: str = "auto") -> int:
    """`ctop --nats URL`: every cluster and group collectors publish there, read-only. The
    config's [nats] gives the login, the prefix and (a scoped user) the groups to ask for."""
    from dataclasses import replace

    from ctop.nats.config import URL, NatsConfig
    from ctop.nats.view import NatsSource
    from ctop.tui.launch import make_app

    bad = [u for u in urls if not URL.match(u)]
    if bad:
        print(f"ctop: --nats: not a nats://host:port URL: {bad[0]!r}", file=sys.stderr)
        return 2
    source = NatsSource(replace(cfg.nats or NatsConfig(), servers=tuple(urls)),
                        victoria_url=cfg.victoria_url)
    try:
        make_app(source, True, color).run()
        return 0
    finally:
        source.close()


def run_nats_status(cfg: DirectorConfig, urls: Sequence[str], *, as_json: bool) -> int:
    """`ctop --nats URL status [--json]`: the NATS view's snapshot once (ctop.nats.status)."""
    from dataclasses import replace

    from ctop.nats.config import URL, NatsConfig
    from ctop.nats.link import NatsError
    from ctop.nats.status import nats_status

    bad = [u for u in urls if not URL.match(u)]
    if bad:
        print(f"ctop: --nats: not a nats://host:port URL: {bad[0]!r}", file=sys.stderr)
        return 2
    try:
        data = nats_status(replace(cfg.nats or NatsConfig(), servers=tuple(urls)))
    except NatsError as e:
        print(f"ctop: {e}", file=sys.stderr)
        return 3
    print(json.dumps(data, indent=1, default=str) if as_json else status_text(data))
    return 0


def run_past(cfg: DirectorConfig, when: str, *, color: str = "auto") -> int:
    """`ctop --at TIME`: the whole screen at that moment, from the store; nothing can change."""
    from ctop.past import PastError, PastSource, parse_moment
    from ctop.tui.launch import make_app

    try:
        at = parse_moment(when)
        source = PastSource(cfg.store.path, at, cluster=cfg.cluster)
    except (ValueError, PastError) as e:
        print(f"ctop: {e}", file=sys.stderr)
        return 2
    try:
        make_app(source, True, color).run()
        return 0
    finally:
        source.close()


if __name__ == "__main__":
    sys.exit(main())
