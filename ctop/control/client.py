"""The client side of the control socket: `ctop status`, `ctop lb` and an attached UI ask the
running `ctop serve` (ctop.control.server). The requests are in ctop.control.wire.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import msgpack

from ctop.control.wire import ACTION_TIMEOUT, LENGTH, ControlError
from ctop.lb.actions import ActionResult, Plan
from ctop.lb.base import Connection
from ctop.lb.journal import claimed_sudo_user
from ctop.lb.request import ActionRequest, plan_from_plain, result_from_plain
from ctop.sockpath import UntrustedPath, check_socket


def request_connections(path: str, balancer: str, service: str, server: str) -> list[Connection]:
    """The daemon's reading of one real server's connections (IPVS with templates)."""
    # "backend": the key an older daemon reads (ctop/lb/plainkeys.py)
    where = json.dumps({"backend": balancer, "service": service, "server": server})
    answer = ask(path, "conns " + where, timeout=15.0)
    return [Connection(**c) for c in answer["connections"]]


def request_plan(path: str, request: ActionRequest) -> Plan:
    """The daemon's plan for `request` (what the confirmation dialog shows)."""
    return plan_from_plain(ask(path, "plan " + _envelope(request))["plan"])


def request_action(path: str, request: ActionRequest) -> ActionResult:
    """The daemon runs `request` (as the caller, whom it reads from the socket)."""
    # A ramp (or a queue on the balancer) may take a while; the answer is the outcome.
    timeout = ACTION_TIMEOUT + float(getattr(request, "ramp_s", 0) or 0)
    answer = ask(path, "action " + _envelope(request), timeout=timeout)
    return result_from_plain(answer["result"])


def request_silence(path: str, op: str, **fields: Any) -> dict[str, Any]:
    """Add, remove or list silences through the daemon ({"silence": …} or {"silences": […]});
    the daemon takes the author from the socket, the SUDO_USER claim rides along."""
    message = {"op": op, "sudo_user": claimed_sudo_user(), **fields}
    return ask(path, "silence " + json.dumps(message))


def _envelope(request: ActionRequest) -> str:
    return json.dumps({"request": request.to_plain(), "sudo_user": claimed_sudo_user()})


def _trusted(path: str) -> None:
    """Refuse a socket another user could have planted (ctop.sockpath)."""
    try:
        check_socket(path)
    except FileNotFoundError:
        raise ControlError(f"no ctop daemon: {path} does not exist (start `ctop serve`)"
                           ) from None
    except UntrustedPath as e:
        raise ControlError(f"{e}; not using this control socket") from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None


def exchange(path: str, what: str, timeout: float = 5.0) -> bytes:
    """One request line out, the answer's msgpack bytes back."""
    if "\n" in what:
        raise ControlError("a request is one line")
    _trusted(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(what.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no ctop daemon: {path} does not exist (start `ctop serve`)") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (run as root or the ctop group)") from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None
    if len(data) < 4 or len(data) - 4 != LENGTH.unpack(data[:4])[0]:
        raise ControlError(f"{path}: truncated answer from the daemon")
    return data[4:]


def ask(path: str, what: str, timeout: float = 5.0) -> dict[str, Any]:
    answer = msgpack.unpackb(exchange(path, what, timeout), strict_map_key=False)
    if "error" in answer:
        raise ControlError(answer["error"])
    return answer


def hello(path: str) -> dict[str, Any]:
    """The daemon's pid and effective read-only value."""
    return ask(path, "hello", timeout=2.0)


def fetch_status(path: str) -> dict[str, Any]:
    return ask(path, "status")


def daemon_running(path: str) -> bool:
    """True if a daemon listens on `path`; ControlError if what is there is not trusted.
    Permission denied counts as running (it is there; the caller may not use it): nobody then
    works around it with a local controller."""
    if not os.path.lexists(path):
        return False
    _trusted(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(path)
        return True
    except PermissionError:
        return True
    except OSError:
        return False
