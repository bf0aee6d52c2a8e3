"""Start-up failures of `ctop serve` as one line for the operator: the setting, where it was
set (file:line, a flag, or the default), its value, and what went wrong; never a traceback."""

from __future__ import annotations

import errno
import socket
import sqlite3
from typing import Any

from ctop.config import DirectorConfig

FLAGS = {"listen": "--listen", "key_file": "--key-file", "store.path": "--db",
         "control_socket": "--socket"}


class StartError(Exception):
    """`ctop serve` cannot start; the message is complete."""


def origin(cfg: DirectorConfig, dotted: str) -> str:
    """Where a setting came from: "/etc/ctop/ctop.toml:12", "--listen" or "default"."""
    if dotted in cfg.overrides:
        return FLAGS.get(dotted, "command line")
    src = cfg.source
    if src is not None:
        table: Any = src.data
        for part in dotted.split("."):
            table = table.get(part) if isinstance(table, dict) else None
        if table is not None:
            return f"{src.path}:{src.line_of(dotted)}"
    return "default"


def setting_error(cfg: DirectorConfig, dotted: str, value: Any, problem: str) -> StartError:
    return StartError(f"{origin(cfg, dotted)}: key '{dotted}' = {str(value)!r}: {problem}")


def os_problem(e: BaseException) -> str:
    """An OS or SQLite error in words (no "[Errno 98]" alone)."""
    if isinstance(e, socket.gaierror):
        return f"the host name does not resolve ({e.strerror})"
    if isinstance(e, sqlite3.Error):
        return str(e)
    if isinstance(e, OSError):
        known = {
            errno.EADDRINUSE: "address already in use (another ctop serve or another program "
                              "listens there)",
            errno.EADDRNOTAVAIL: "no such address on this host",
            errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted",
        }
        text = known.get(e.errno or 0, e.strerror or str(e))
        return f"{text}: {e.filename}" if e.filename and e.errno not in known else text
    return str(e) or type(e).__name__
