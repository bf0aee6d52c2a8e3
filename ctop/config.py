"""The director's configuration: a TOML file (default /etc/ctop/ctop.toml) plus flags.

Every error names the file, the line and the key, e.g.
`/etc/ctop/ctop.toml:12: key 'liveness.dead_after': expected a number > 0, got "soon"`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentd.protocol import DEFAULT_PORT
from agentd.tomlfile import ConfigError, assignment_line, read_toml

DEFAULT_PATH = "/etc/ctop/ctop.toml"


def default_database() -> str:
    """$CTOP_DB, else under /var/lib/ctop when root, else the user's data directory."""
    if os.environ.get("CTOP_DB"):
        return os.environ["CTOP_DB"]
    if os.geteuid() == 0:
        return "/var/lib/ctop/ctop.db"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "ctop", "ctop.db")


def default_control_socket() -> str:
    if os.geteuid() == 0:
        return "/run/ctop/ctop.sock"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/ctop-{os.geteuid()}"
    return os.path.join(base, "ctop.sock")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


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


@dataclass(frozen=True)
class TomlSource:
    """A parsed TOML file that can say on which line a key was written."""

    path: str
    data: Mapping[str, Any]
    text: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TomlSource:
        text, data = read_toml(path)
        return cls(str(path), data, text)

    def line_of(self, dotted: str) -> int:
        """Best effort: the line where the last part of `dotted` is assigned (1 if unknown)."""
        parts = dotted.split(".")
        leaf = parts[-1].split("[")[0]
        section = parts[-2] if len(parts) > 1 else None
        lines = self.text.splitlines()
        start = 0
        if section:
            for i, line in enumerate(lines):
                if re.match(rf"^\s*\[+\s*[\w.\"-]*{re.escape(section)}[\"]?\s*\]+", line):
                    start = i
                    break
        line = assignment_line(lines, leaf, start)
        if line is not None:
            return line
        return start + 1 if section else 1

    def line_in_array(self, array: str, index: int, key: str | None) -> int:
        """The line of `key` inside the index-th [[array]] table (its header if no key)."""
        lines = self.text.splitlines()
        headers = [i for i, line in enumerate(lines)
                   if re.match(rf"^\s*\[\[\s*{re.escape(array)}\s*\]\]", line)]
        if index >= len(headers):
            return 1
        start = headers[index]
        end = headers[index + 1] if index + 1 < len(headers) else len(lines)
        line = assignment_line(lines, key, start, end) if key else None
        return line if line is not None else start + 1

    def error(self, dotted: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line_of(dotted)}: key '{dotted}': {problem}")


class Reader:
    """Typed access to one table of a TomlSource; each getter names file:line:key on error."""

    def __init__(self, source: TomlSource, table: Mapping[str, Any], prefix: str = "") -> None:
        self.source, self.table, self.prefix = source, table, prefix
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def get(self, key: str, default: Any, convert: Callable[[Any], Any], what: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        try:
            return convert(value)
        except (ValueError, TypeError) as e:
            detail = str(e) if str(e) else f"expected {what}, got {value!r}"
            raise self.source.error(self._key(key), detail) from None

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        def conv(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= minimum:
                raise ValueError(f"expected a number > {minimum:g}, got {v!r}")
            return float(v)

        return self.get(key, default, conv, "a number")

    def string(self, key: str, default: str) -> str:
        def conv(v: Any) -> str:
            if not isinstance(v, str):
                raise ValueError(f"expected a string, got {v!r}")
            return v

        return self.get(key, default, conv, "a string")

    def boolean(self, key: str, default: bool) -> bool:
        def conv(v: Any) -> bool:
            if not isinstance(v, bool):
                raise ValueError(f"expected true or false, got {v!r}")
            return v

        return self.get(key, default, conv, "a boolean")

    def duration(self, key: str, default: float) -> float:
        return self.get(key, default, parse_duration, "a duration")

    def table_of(self, key: str) -> Reader:
        self.used.add(key)
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.source.error(self._key(key), f"expected a table, got {value!r}")
        return Reader(self.source, value, f"{self._key(key)}.")

    def check_unknown(self, known: set[str] | None = None) -> None:
        allowed = self.used | (known or set())
        for key in self.table:
            if key not in allowed:
                raise self.source.error(self._key(key), "unknown key")


@dataclass(frozen=True)
class LivenessConfig:
    # Agents without beacons (reports only): missed report intervals.
    suspect_after: float = 2.5  # missed intervals before a node is suspect
    dead_after: float = 5.0  # missed intervals before it is dead
    # Agents with beacons: missed gaps of the node's announced pattern (0.25 s by default:
    # suspect after 1.9 s, dead after 2.6 s of silence; the sums are in docs/director.md).
    beacon_suspect_after: float = 7.5
    beacon_dead_after: float = 10.5
    check_every: float = 0.1  # seconds between liveness judgements (snapshot at once on change)
    forget_left_after: float = 600.0  # seconds a node that said goodbye stays listed as left


@dataclass(frozen=True)
class StoreConfig:
    path: str = field(default_factory=default_database)
    raw_retention: float = 24 * 3600.0
    # 1-minute rollups: 48 h keep the UI's 24 h chart at full resolution (~1.8 GB a day at
    # 10,000 nodes; the former 30 days were ~53 GB). Longer charts read the hourly rollups
    # (~30 MB a day at 10,000 nodes). Figures: docs/performance.md.
    minute_retention: float = 48 * 3600.0
    hourly_retention: float = 90 * 86400.0
    # Seconds between stored raw samples of one node; 0 = by cluster size (1 s up to 1,000
    # nodes, 5 s up to 5,000, 10 s beyond). Every report still feeds the 1-minute rollups.
    raw_every: float = 0.0

    @property
    def rollup_retention(self) -> float:
        """The old name of hourly_retention (how far back charts go), for older callers."""
        return self.hourly_retention


@dataclass(frozen=True)
class DirectorConfig:
    cluster: str = "cluster"
    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT)
    key_file: str = "/etc/ctop/cluster.key"
    # Per-node keys: each node's key is derived from this secret (`ctop keys issue NODE`) and
    # the cluster key is not used. "" = one cluster key for every node (key_file).
    master_key_file: str = ""
    max_age: float = 30.0  # seconds a message may be old (clock skew + queueing)
    tick: float = 1.0  # seconds between snapshots
    lb_every: float = 2.0  # seconds between reads of the load-balancer tables
    liveness: LivenessConfig = LivenessConfig()
    store: StoreConfig = field(default_factory=StoreConfig)
    alerts: tuple[Mapping[str, Any], ...] = ()  # raw [[alert]] tables, parsed by ctop.alerts
    hooks: tuple[Mapping[str, Any], ...] = ()  # raw [[hook]] tables
    lb: Mapping[str, Any] = field(default_factory=dict)  # raw [lb] table, parsed by ctop.lb
    prometheus: tuple[str, int] | None = None
    control_socket: str = field(default_factory=default_control_socket)
    control_group: str | None = None  # [control] group: may change the balancers, read the socket
    readonly: bool = False  # the top-level key or --readonly; effective_readonly() adds [lb]
    source: TomlSource | None = None  # where it came from, for error messages
    overrides: tuple[str, ...] = ()  # settings given by command-line flags, for error messages


def load(path: str | None, *, must_exist: bool = False) -> DirectorConfig:
    """Load the config; a missing default file means defaults, a missing named file an error."""
    target = path or DEFAULT_PATH
    if not os.path.exists(target) and not must_exist and path is None:
        return DirectorConfig()
    return from_source(TomlSource.load(target))


def from_source(src: TomlSource) -> DirectorConfig:
    top = Reader(src, src.data)
    live = top.table_of("liveness")
    liveness = LivenessConfig(
        suspect_after=live.number("suspect_after", LivenessConfig.suspect_after),
        dead_after=live.number("dead_after", LivenessConfig.dead_after),
        beacon_suspect_after=live.number("beacon_suspect_after",
                                         LivenessConfig.beacon_suspect_after),
        beacon_dead_after=live.number("beacon_dead_after", LivenessConfig.beacon_dead_after),
        check_every=live.duration("check_every", LivenessConfig.check_every),
        forget_left_after=live.duration("forget_left_after", LivenessConfig.forget_left_after),
    )
    if liveness.dead_after <= liveness.suspect_after:
        raise src.error("liveness.dead_after", "must be larger than suspect_after")
    if liveness.beacon_dead_after <= liveness.beacon_suspect_after:
        raise src.error("liveness.beacon_dead_after", "must be larger than beacon_suspect_after")
    if not 0 < liveness.check_every <= 10:
        raise src.error("liveness.check_every", "expected a duration in 0..10 s")
    live.check_unknown()
    store = _store_config(src, top.table_of("store"))
    prom = top.table_of("prometheus")
    prom_listen = prom.get("listen", None, lambda v: parse_address(v, "127.0.0.1"), "host:port")
    prom.check_unknown()
    control = top.table_of("control")
    control_group = control.string("group", "") or None
    control.check_unknown()
    cfg = DirectorConfig(
        cluster=top.string("cluster", DirectorConfig.cluster),
        listen=top.get("listen", DirectorConfig.listen, parse_address, "host:port"),
        key_file=top.string("key_file", DirectorConfig.key_file),
        master_key_file=top.string("master_key_file", ""),
        max_age=top.number("max_age", DirectorConfig.max_age),
        tick=top.number("tick", DirectorConfig.tick),
        lb_every=top.number("lb_every", DirectorConfig.lb_every),
        liveness=liveness,
        store=store,
        alerts=tuple(_tables(top, "alert")),
        hooks=tuple(_tables(top, "hook")),
        lb=top.get("lb", {}, _table, "a table"),
        prometheus=prom_listen,
        control_socket=top.string("control_socket", default_control_socket()),
        control_group=control_group,
        readonly=top.boolean("readonly", False),
        source=src,
    )
    if not cfg.key_file and not cfg.master_key_file:
        raise src.error("key_file", "is empty; give the path of the cluster key file")
    top.check_unknown()
    _check_alerts(src, cfg)
    _check_lb(src, cfg)
    return cfg


def effective_readonly(cfg: DirectorConfig) -> bool:
    """The one read-only value every path honours: `--readonly`, the top-level `readonly` key
    or `[lb] readonly`. The daemon, both UIs, `ctop lb`, auto-quiesce and automatic advice all
    take it from here."""
    return bool(cfg.readonly or cfg.lb.get("readonly") is True)


def _store_config(src: TomlSource, st: Reader) -> StoreConfig:
    def positive(key: str, default: float) -> float:
        value = st.duration(key, default)
        if value <= 0:
            raise src.error(f"store.{key}", f"expected a duration > 0, got {st.table[key]!r}")
        return value

    # rollup_retention, from before the hourly level, said how far back charts go (in 1-minute
    # rows): that is hourly_retention now. Minute rows then keep minute_retention (default
    # 48 h), but never longer than it says.
    hourly = positive("hourly_retention", StoreConfig.hourly_retention)
    if "rollup_retention" in st.table:
        if "hourly_retention" in st.table:
            raise src.error("store.rollup_retention",
                            "old name of hourly_retention; set only hourly_retention")
        hourly = positive("rollup_retention", StoreConfig.hourly_retention)
    minute = positive("minute_retention", StoreConfig.minute_retention)
    if "minute_retention" in st.table and minute > hourly:
        raise src.error("store.minute_retention",
                        f"must not exceed hourly_retention ({hourly / 86400:g} days)")
    store = StoreConfig(
        path=st.string("path", default_database()),
        raw_retention=st.duration("raw_retention", StoreConfig.raw_retention),
        minute_retention=min(minute, hourly),
        hourly_retention=hourly,
        raw_every=st.duration("raw_every", StoreConfig.raw_every),
    )
    st.check_unknown()
    return store


def _check_lb(src: TomlSource, cfg: DirectorConfig) -> None:
    from ctop.lb.config import ConfigError as LBConfigError
    from ctop.lb.config import parse_config

    try:
        parse_config(cfg.lb)
    except LBConfigError as e:
        m = re.search(r"unknown key\(s\) (\w+)|\.(\w+) (?:must|has)", str(e))
        key = m and (m.group(1) or m.group(2))
        line = src.line_of(key) if key else 1
        raise ConfigError(f"{src.path}:{line}: {e}") from None


def _check_alerts(src: TomlSource, cfg: DirectorConfig) -> None:
    """Parse [[alert]] and [[hook]] now, so their errors name the file and line."""
    from ctop.alerts import RuleError, parse_hook, parse_rule

    for array, tables, parse in (("alert", cfg.alerts, parse_rule),
                                 ("hook", cfg.hooks, parse_hook)):
        for i, table in enumerate(tables):
            try:
                parse(table)
            except RuleError as e:
                m = re.search(r"key '(\w+)", str(e))
                line = src.line_in_array(array, i, m.group(1) if m else None)
                raise ConfigError(f"{src.path}:{line}: [[{array}]] #{i + 1}: {e}") from None


def _table(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"expected a table, got {v!r}")
    return v


def _tables(top: Reader, key: str) -> list[Mapping[str, Any]]:
    value = top.get(key, [], lambda v: v, "an array of tables")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise top.source.error(key, f"expected [[{key}]] tables")
    return value
