"""agentd configuration: a TOML file plus command-line overrides.

    director = ["10.0.0.1:7117", "10.0.0.2"]   # or one string; port defaults to 7117
    key_file = "/etc/ctop/cluster.key"
    node_id = "web1"                             # default: the hostname
    group = "web"
    interval = 1.0                               # seconds between reports
    join_interval = 10.0                         # seconds between join re-announcements
    beacon_interval = 0.25                       # a liveness datagram at least this often; 0 = off
    probes = ["http://127.0.0.1:80/health", "smtp://127.0.0.1"]
    [[probes]]                                   # or tables, see docs/agentd.md
    type = "tcp"
    port = 3306

Every error names the file, the line and the key: "agentd.toml:12: key 'interval': ...".
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentd.protocol import DEFAULT_PORT
from agentd.tomlfile import ConfigError, assignment_line, read_toml
from agentd.watch import WatchSpec, WatchSpecError, parse_watches

__all__ = ["DEFAULT_PATH", "Config", "ConfigError", "Director", "load", "parse_director"]

DEFAULT_PATH = "/etc/ctop/agentd.toml"
DEFAULT_KEY_FILE = "/etc/ctop/cluster.key"
DEFAULT_PUSH_STATE = "/var/lib/ctop/agentd-push.state"
MIN_INTERVAL, MAX_INTERVAL = 0.05, 3600.0  # what the wire protocol accepts


@dataclass(frozen=True)
class Director:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    path: str | None = None  # the file it came from, if any
    directors: tuple[Director, ...] = ()
    key_file: str = DEFAULT_KEY_FILE
    node_id: str = field(default_factory=socket.gethostname)
    group: str = ""
    interval: float = 1.0
    join_interval: float = 10.0  # a restarted director has full facts (addresses) within this
    # Seconds between liveness datagrams: signed 33-byte beacons fill the gaps between
    # reports so the director sees one at least this often (agentd/beacon.py). 0 = reports
    # only (the old timing: a death verdict takes several report intervals).
    beacon_interval: float = 0.25
    probes: tuple[Any, ...] = ()  # probes.spec.ProbeSpec, parsed and validated at load time
    # Addresses announced in joins; empty = every address of the node. Set it when the LVS
    # real-server address is not the only one, or when several agents share one host.
    addresses: tuple[str, ...] = ()
    # Watched processes (agentd/watch.py): present, count, restarts and resources of each.
    watch: tuple[WatchSpec, ...] = ()
    # Configuration pushed by the director (agentd/pushed.py): its key ("" = refuse pushes),
    # where the last accepted one is kept, and whether pushed `command` probes may run.
    push_key_file: str = ""
    push_state_file: str = DEFAULT_PUSH_STATE
    allow_remote_commands: bool = False


KEYS = ("director", "key_file", "node_id", "group", "interval", "join_interval", "probes",
        "addresses", "beacon_interval", "watch", "push_key_file", "push_state_file",
        "allow_remote_commands")


def _show(value: Any) -> str:
    import json  # only config errors need it: a running agent never loads json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# Keys whose command-line flag is not the key's own name: one flag adds one item of the list.
_FLAGS = {"probes": "--probe", "addresses": "--address"}


def flag_of(key: str) -> str:
    """The agentd flag that sets config key `key` (agentd/main.py)."""
    return _FLAGS.get(key, f"--{key.replace('_', '-')}")


class _Source:
    """Where values came from, to prefix errors with "file:line: key 'x'"."""

    def __init__(self, path: str | None, text: str = "") -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str, start: int = 0) -> int | None:
        return assignment_line(self.lines, key, start)

    def probe_line(self, index: int, item: Any) -> int | None:
        """Line of the index-th probe: its [[probes]] header, or its URL inside the array."""
        header = re.compile(r"^\s*\[\[\s*probes\s*]]")
        headers = [i + 1 for i, ln in enumerate(self.lines) if header.match(ln)]
        if headers:
            return headers[index] if index < len(headers) else headers[-1]
        first = self.line_of("probes")
        if first is not None and isinstance(item, str):
            for i, ln in enumerate(self.lines[first - 1 :], first):
                if item in ln:
                    return i
        return first

    def item_line(self, key: str, items: Any, message: str) -> int | None:
        """Line of the list item a message names ("entry N: ..."), else of the key."""
        first = self.line_of(key)
        m = re.match(r"entry (\d+):", message)
        if first is None or not m or not isinstance(items, list):
            return first
        item = items[int(m[1]) - 1]
        text = f'"{item}"' if isinstance(item, str) else str(item)
        for i, ln in enumerate(self.lines[first - 1 :], first):
            if text in ln:
                return i
        return first

    def error(self, key: str, message: str, line: int | None = None) -> ConfigError:
        if self.path is None:  # a command-line flag
            return ConfigError(f"{flag_of(key)}: {message}")
        line = line if line is not None else self.line_of(key)
        where = f"{self.path}:{line}" if line else self.path
        return ConfigError(f"{where}: key '{key}': {message}")


def _number(src: _Source, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise src.error(key, f"expected a number of seconds > 0, got {_show(value)}")
    if not low <= value <= high:
        raise src.error(key, f"expected a number of seconds in {low:g}..{high:g}, got {value:g}")
    return float(value)


def _string(src: _Source, key: str, value: Any, max_len: int, empty_ok: bool) -> str:
    if not isinstance(value, str):
        raise src.error(key, f"expected a string, got {_show(value)}")
    if not empty_ok and not value.strip():
        raise src.error(key, "must not be empty")
    if len(value) > max_len:
        raise src.error(key, f"at most {max_len} characters, got {len(value)}")
    return value


def parse_director(text: str) -> Director:
    """host, host:port, [v6addr]:port or a bare IPv6 address; the port defaults to 7117."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        port_text = rest[1:]
    elif text.count(":") > 1:  # bare IPv6 address
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"no host in {text!r}")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"bad port in {text!r}")
        return Director(host, int(port_text))
    return Director(host, DEFAULT_PORT)


def _directors(src: _Source, value: Any) -> tuple[Director, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise src.error("director", f'expected "host:port" or a list of them, got {_show(value)}')
    out = []
    for item in items:
        try:
            out.append(parse_director(item))
        except ValueError as e:
            raise src.error("director", str(e)) from None
    return tuple(out)


def _probes(src: _Source, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise src.error("probes", f"expected a list of probe URLs or tables, got {_show(value)}")
    if not value:
        return ()
    from probes.spec import ProbeSpecError, parse  # lazy: only nodes with probes pay for it

    specs = []
    for i, item in enumerate(value):
        try:
            specs.append(parse(item))
        except ProbeSpecError as e:
            raise src.error("probes", f"probe {i + 1}: {e}", src.probe_line(i, item)) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise src.error("probes", f"probe names must be unique; repeated: {', '.join(dupes)}")
    return tuple(specs)


def _apply(cfg: Config, src: _Source, values: Mapping[str, Any]) -> Config:
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in KEYS:
            raise src.error(key, f"unknown key (known: {', '.join(KEYS)})")
        if key == "director":
            changes["directors"] = _directors(src, value)
        elif key == "key_file":
            changes[key] = _string(src, key, value, 4096, empty_ok=False)
        elif key == "node_id":
            changes[key] = _string(src, key, value, 128, empty_ok=False)
        elif key == "group":
            changes[key] = _string(src, key, value, 64, empty_ok=True)
        elif key == "interval":
            changes[key] = _number(src, key, value, MIN_INTERVAL, MAX_INTERVAL)
        elif key == "join_interval":
            changes[key] = _number(src, key, value, MIN_INTERVAL, 86400.0)
        elif key == "beacon_interval":
            changes[key] = 0.0 if value == 0 and not isinstance(value, bool) else _number(
                src, key, value, MIN_INTERVAL, MAX_INTERVAL)
        elif key == "probes":
            changes[key] = _probes(src, value)
        elif key == "addresses":
            changes[key] = _addresses(src, value)
        elif key == "watch":
            changes[key] = _watch(src, value)
        elif key in ("push_key_file", "push_state_file"):
            changes[key] = _string(src, key, value, 4096, empty_ok=True)
        elif key == "allow_remote_commands":
            if not isinstance(value, bool):
                raise src.error(key, f"expected true or false, got {_show(value)}")
            changes[key] = value
    return replace(cfg, **changes)


def _watch(src: _Source, value: Any) -> tuple[WatchSpec, ...]:
    try:
        return parse_watches(value)
    except WatchSpecError as e:
        raise src.error("watch", str(e), src.item_line("watch", value, str(e))) from None


def _addresses(src: _Source, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise src.error("addresses", f"expected a list of IP addresses, got {_show(value)}")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_address(str(item).strip("[]"))))
        except ValueError:
            raise src.error("addresses", f"not an IP address: {_show(item)}") from None
    return tuple(out)


def read_file(path: str) -> tuple[_Source, dict[str, Any]]:
    text, data = read_toml(path)
    return _Source(path, text), data


def load(
    path: str | None = DEFAULT_PATH,
    overrides: Mapping[str, Any] | None = None,
    required: bool = False,
) -> Config:
    """Defaults, then the file (skipped if missing and not `required`), then `overrides`.

    `overrides` use the file's keys (director, node_id, ...); a "probes" override adds to the
    file's probes rather than replacing them.
    """
    cfg = Config()
    if path is not None and (required or Path(path).exists()):
        src, data = read_file(path)
        cfg = _apply(replace(cfg, path=path), src, data)
    if overrides:
        extra = dict(overrides)
        cli = _Source(None)
        added = _probes(cli, extra.pop("probes", []))
        cfg = _apply(cfg, cli, extra)
        if added:
            names = {s.name for s in cfg.probes}
            for spec in added:
                if spec.name in names:
                    raise cli.error("probe", f"a probe named {spec.name!r} is already configured")
            cfg = replace(cfg, probes=cfg.probes + added)
    return cfg
