"""Parsers for the values of config keys and flags (durations, addresses) and the error a
config table raises: a leaf module, so the parts of the config (alert rules, hooks) and the
config itself import it without importing each other."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class TableError(ValueError):
    """One table of the config is wrong. `key` names the offending key (None: the table as a
    whole), so the config can say on which line it was written."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def parse_duration(value: Any) -> float:
    """30 -> 30.0; "30s", "5m", "24h", "30d" -> seconds. Raises ValueError."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like 30s, 5m, 24h, got {value!r}")


def parse_address(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """"host:port", ":port", "[v6]:port" or "port" -> (host, port). Raises ValueError."""
    text = str(value).strip()
    if text.isdigit():
        host, port = default_host, text
    elif text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
        host = host or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host, int(port)
