"""Where `ctop lb` sends a change: to the running daemon, else to a local controller.

When `ctop serve` runs, it owns the balancers: the change goes over its control socket, and the
daemon plans, applies, reads back, journals it (as this unix user, from SO_PEERCRED) and shows
it to every attached UI. Without a daemon (or with --no-daemon) the command acts itself, under
the flock every controller takes (ctop.lb.lock), so concurrent commands take turns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ctop.control.client import ControlError, daemon_running, hello, request_action
from ctop.lb.actions import ActionResult
from ctop.lb.request import ActionRequest

EXIT_OK, EXIT_FAILED = 0, 1
CHANGES = ("drain", "maint", "weight", "restore")


def add_options(p: argparse.ArgumentParser, *, sub: bool) -> None:
    d = argparse.SUPPRESS if sub else None
    f = argparse.SUPPRESS if sub else False
    p.add_argument("--socket", default=d, metavar="PATH",
                   help="control socket of ctop serve (default: the config's control_socket)")
    p.add_argument("--no-daemon", action="store_true", default=f,
                   help="act here even if ctop serve runs (under the shared lock)")


def daemon_socket(args: argparse.Namespace, control_socket: str) -> str | None:
    """The socket of the daemon that should run this change, or None to act locally
    (--no-daemon, or balancers named on the command line instead of the config's)."""
    if args.no_daemon or args.haproxy_socket or args.ipvs:
        return None
    path = args.socket or control_socket
    return path if daemon_running(path) else None


def daemon_refuses(args: argparse.Namespace, control_socket: str) -> str:
    """--no-daemon next to a read-only daemon: why not ("" = go ahead). `ctop serve
    --readonly` is read-only for everyone on this director, not only for its own clients."""
    path = args.socket or control_socket
    if not daemon_running(path):
        return ""
    try:
        readonly = bool(hello(path).get("readonly"))
    except ControlError:  # a daemon that does not answer: --no-daemon is for exactly that
        return ""
    return f"read-only: ctop serve on {path} runs read-only" if readonly else ""


def run_remote(
    path: str,
    request: ActionRequest,
    *,
    readonly: bool,
    show: Callable[[ActionResult], None],
) -> int:
    """Send the change to the daemon and print its answer; the exit code."""
    what = f"ctop lb {request.verb}"
    if readonly:  # --readonly or this config's: refused before asking anyone
        print(f"{what}: read-only mode: load-balancer actions are disabled", file=sys.stderr)
        return EXIT_FAILED
    try:
        result = request_action(path, request)
    except ControlError as exc:
        print(f"{what}: ctop serve ({path}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    show(result)
    return EXIT_OK if result.ok else EXIT_FAILED
