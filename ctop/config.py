"""The director's configuration: a TOML file (default /etc/ctop/ctop.toml) plus flags.

The file is parsed once, into frozen dataclasses: liveness, store, alert rules
(ctop.alerts.Rule), hooks (ctop.hooks.Hook), the load balancers (ctop.lb.config.LBConfig),
Prometheus and the control socket. Every error names the file, the line and the key, e.g.
`/etc/ctop/ctop.toml:12: key 'liveness.dead_after': expected a number > 0, got "soon"`;
the lines come from the file's text (ctop.tomlsource), the keys from the parsers' errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentd.protocol import DEFAULT_PORT
from agentd.tomlfile import ConfigError
from ctop.alerts import Rule, RuleError, parse_rule, parse_rules
from ctop.anomaly.config import AnomalyConfig, anomaly_config
from ctop.groups import GroupConfig, parse_groups
from ctop.hooks import Hook, HookError, parse_hook
from ctop.lb.config import ConfigError as LBConfigError
from ctop.lb.config import LBConfig, parse_config
from ctop.maintenance import MaintenanceConfig, WindowError, parse_remind_after, parse_window
from ctop.nats.config import NatsConfig, parse_nats
from ctop.pair.config import PairConfig
from ctop.parse import TableError, parse_address, parse_duration
from ctop.tomlsource import KeyPath, TomlSource

__all__ = [
    "DEFAULT_PATH", "ConfigError", "DirectorConfig", "LivenessConfig", "StoreConfig",
    "TomlSource", "default_control_socket", "default_database", "effective_readonly",
    "from_source", "load", "parse_address", "parse_duration",
]

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


class Section:
    """Typed access to one table of a TomlSource at `path`; each getter's error names the
    file, the line and the key."""

    def __init__(self, source: TomlSource, table: Mapping[str, Any], path: KeyPath = ()) -> None:
        self.source, self.table, self.path = source, table, path
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return self.source.error((*self.path, key), problem)

    def get(self, key: str, default: Any, convert: Callable[[Any], Any], what: str) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        try:
            return convert(value)
        except (ValueError, TypeError) as e:
            detail = str(e) if str(e) else f"expected {what}, got {value!r}"
            raise self.error(key, detail) from None

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

    def table_of(self, key: str) -> Section:
        self.used.add(key)
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {value!r}")
        return Section(self.source, value, (*self.path, key))

    def array_of(self, key: str) -> list[Mapping[str, Any]]:
        """The tables of [[key]] (none: an empty list)."""
        self.used.add(key)
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise self.error(key, f"expected [[{key}]] tables")
        return value

    def check_unknown(self) -> None:
        for key in self.table:
            if key not in self.used:
                raise self.error(key, "unknown key")


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
    # Configuration push (ctop/grouppush.py): the secret each node's push key is derived from
    # (`ctop keys issue NODE --push`); "" = nothing is pushed. [groups.NAME]: what is pushed.
    push_master_key_file: str = ""
    groups: tuple[GroupConfig, ...] = ()
    max_age: float = 30.0  # seconds a message may be old (clock skew + queueing)
    tick: float = 1.0  # seconds between snapshots
    lb_every: float = 2.0  # seconds between reads of the load-balancer tables
    liveness: LivenessConfig = LivenessConfig()
    store: StoreConfig = field(default_factory=StoreConfig)
    # [[alert]]: ctop.alerts.DEFAULT_RULES when the file has none
    alerts: tuple[Rule, ...] = field(default_factory=lambda: tuple(parse_rules(None)))
    hooks: tuple[Hook, ...] = ()  # [[hook]]
    lb: LBConfig = field(default_factory=LBConfig)  # [lb]
    pair: PairConfig = field(default_factory=PairConfig)  # [pair]: the director pair (VRRP)
    # [maintenance]: windows, the drain reminder (ctop.maintenance)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)  # [anomaly]
    prometheus: tuple[str, int] | None = None
    control_socket: str = field(default_factory=default_control_socket)
    control_group: str | None = None  # [control] group: may change the balancers, read the socket
    readonly: bool = False  # the top-level key or --readonly; effective_readonly() adds [lb]
    source: TomlSource | None = None  # where it came from, for error messages
    overrides: tuple[str, ...] = ()  # settings given by command-line flags, for error messages
    nats: NatsConfig | None = None  # [nats]: None = no NATS (single director, as before)
    victoria_url: str = ""  # [history] victoria_url: also keep history there (ctop.victoria)
    # [receive] workers: receiver processes (ctop/ingest/workers.py); 1 = in the engine
    receive_workers: int = 1


def worker_count(value: Any) -> int:
    """`[receive] workers`: receiver processes 1..256, or "auto" (the cores we may use)."""
    if value == "auto":
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
        return max(1, len(cores) or os.cpu_count() or 1)
    if type(value) is not int or not 1 <= value <= 256:
        raise ValueError(f'expected a number of processes 1..256 or "auto", got {value!r}')
    return value


def load(path: str | None, *, must_exist: bool = False) -> DirectorConfig:
    """Load the config; a missing default file means defaults, a missing named file an error."""
    target = path or DEFAULT_PATH
    if not os.path.exists(target) and not must_exist and path is None:
        return DirectorConfig()
    return from_source(TomlSource.load(target))


def from_source(src: TomlSource) -> DirectorConfig:
    top = Section(src, src.data)
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
        raise live.error("dead_after", "must be larger than suspect_after")
    if liveness.beacon_dead_after <= liveness.beacon_suspect_after:
        raise live.error("beacon_dead_after", "must be larger than beacon_suspect_after")
    if not 0 < liveness.check_every <= 10:
        raise live.error("check_every", "expected a duration in 0..10 s")
    live.check_unknown()
    store = _store_config(top.table_of("store"))
    prom = top.table_of("prometheus")
    prom_listen = prom.get("listen", None, lambda v: parse_address(v, "127.0.0.1"), "host:port")
    prom.check_unknown()
    control = top.table_of("control")
    control_group = control.string("group", "") or None
    control.check_unknown()
    history = top.table_of("history")
    victoria_url = history.get("victoria_url", "", _http_url, "an http:// URL")
    history.check_unknown()
    receive = top.table_of("receive")
    receive_workers = receive.get("workers", 1, worker_count,
                                  'a number of processes 1..256 or "auto"')
    receive.check_unknown()
    cfg = DirectorConfig(
        cluster=top.string("cluster", DirectorConfig.cluster),
        listen=top.get("listen", DirectorConfig.listen, parse_address, "host:port"),
        key_file=top.string("key_file", DirectorConfig.key_file),
        master_key_file=top.string("master_key_file", ""),
        push_master_key_file=top.string("push_master_key_file", ""),
        groups=_groups(top),
        max_age=top.number("max_age", DirectorConfig.max_age),
        tick=top.number("tick", DirectorConfig.tick),
        lb_every=top.number("lb_every", DirectorConfig.lb_every),
        liveness=liveness,
        store=store,
        alerts=_alert_rules(src, top.array_of("alert")),
        hooks=_hooks(src, top.array_of("hook")),
        lb=_lb_config(src, top.table_of("lb")),
        pair=_pair_config(top, "pair" in src.data),
        maintenance=_maintenance(src, top.table_of("maintenance")),
        anomaly=anomaly_config(top.table_of("anomaly")),
        prometheus=prom_listen,
        control_socket=top.string("control_socket", default_control_socket()),
        control_group=control_group,
        readonly=top.boolean("readonly", False),
        source=src,
        nats=parse_nats(top.table_of("nats")),
        victoria_url=victoria_url,
        receive_workers=receive_workers,
    )
    if not cfg.key_file and not cfg.master_key_file:
        raise top.error("key_file", "is empty; give the path of the cluster key file")
    top.check_unknown()
    return cfg


def _http_url(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith(("http://", "https://")) or " " in v:
        raise ValueError(f"expected an http://host:port URL, got {v!r}")
    return v


def effective_readonly(cfg: DirectorConfig) -> bool:
    """The one read-only value every path honours: `--readonly`, the top-level `readonly` key
    or `[lb] readonly`. The daemon, both UIs, `ctop lb`, auto-quiesce and automatic advice all
    take it from here."""
    return cfg.readonly or cfg.lb.readonly


def _store_config(st: Section) -> StoreConfig:
    def positive(key: str, default: float) -> float:
        value = st.duration(key, default)
        if value <= 0:
            raise st.error(key, f"expected a duration > 0, got {st.table[key]!r}")
        return value

    # rollup_retention, from before the hourly level, said how far back charts go (in 1-minute
    # rows): that is hourly_retention now. Minute rows then keep minute_retention (default
    # 48 h), but never longer than it says.
    hourly = positive("hourly_retention", StoreConfig.hourly_retention)
    if "rollup_retention" in st.table:
        if "hourly_retention" in st.table:
            raise st.error("rollup_retention",
                           "old name of hourly_retention; set only hourly_retention")
        hourly = positive("rollup_retention", StoreConfig.hourly_retention)
    minute = positive("minute_retention", StoreConfig.minute_retention)
    if "minute_retention" in st.table and minute > hourly:
        raise st.error("minute_retention",
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


def _each(src: TomlSource, name: str, tables: Sequence[Mapping[str, Any]],
          parse: Callable[[Mapping[str, Any]], Any], error: type[Exception]) -> tuple[Any, ...]:
    """Each [[name]] table parsed; the first bad one named by its line."""
    out = []
    for i, table in enumerate(tables):
        try:
            out.append(parse(table))
        except error as e:
            raise _element_error(src, name, i, e) from None  # type: ignore[arg-type]
    return tuple(out)


def _alert_rules(src: TomlSource, tables: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    if not tables:
        return tuple(parse_rules(None))
    return _each(src, "alert", tables, parse_rule, RuleError)


def _hooks(src: TomlSource, tables: Sequence[Mapping[str, Any]]) -> tuple[Hook, ...]:
    return _each(src, "hook", tables, parse_hook, HookError)


def _maintenance(src: TomlSource, section: Section) -> MaintenanceConfig:
    """[maintenance] remind_after and its [[maintenance.window]] tables."""
    remind = section.get("remind_after", MaintenanceConfig.remind_after, parse_remind_after,
                         "a duration > 0")
    windows = []
    for i, table in enumerate(section.array_of("window")):
        try:
            windows.append(parse_window(table))
        except WindowError as e:
            path: KeyPath = ("maintenance", "window", i, e.key) if e.key else (
                "maintenance", "window", i)
            raise ConfigError(f"{src.path}:{src.line(path)}: [[maintenance.window]] "
                              f"#{i + 1}: {e}") from None
    section.check_unknown()
    return MaintenanceConfig(remind, tuple(windows))


def _element_error(src: TomlSource, array: str, index: int, e: TableError) -> ConfigError:
    """'file:line: [[alert]] #2: key 'when': ...' at the key's line (else the table's)."""
    path: KeyPath = (array, index, e.key) if e.key else (array, index)
    return ConfigError(f"{src.path}:{src.line(path)}: [[{array}]] #{index + 1}: {e}")


def _pair_config(top: Section, given: bool) -> PairConfig:
    sec = top.table_of("pair")
    d = PairConfig()
    cfg = PairConfig(
        enabled=sec.boolean("enabled", given),  # a [pair] section means on
        keepalived_pid_file=sec.string("keepalived_pid_file", d.keepalived_pid_file),
        json_file=sec.string("json_file", d.json_file),
        json_every=sec.duration("json_every", d.json_every),
        notify_fifo=sec.string("notify_fifo", d.notify_fifo),
        peer=sec.string("peer", d.peer),
        peer_every=sec.duration("peer_every", d.peer_every),
        sync_daemon=sec.boolean("sync_daemon", d.sync_daemon),
        ipvsadm=sec.string("ipvsadm", d.ipvsadm),
    )
    for key in ("json_every", "peer_every"):
        if not 0 < getattr(cfg, key) <= 3600:
            raise sec.error(key, f"expected a duration in 0..3600 s, got {sec.table[key]!r}")
    for key in ("keepalived_pid_file", "json_file"):
        if not getattr(cfg, key):
            raise sec.error(key, "is empty; give a path")
    if cfg.peer:
        try:
            host, _ = parse_address(cfg.peer.removeprefix("http://").rstrip("/"), "")
        except ValueError:
            host = ""
        if not host:
            raise sec.error("peer", f"expected host:port of the peer ctop's [prometheus] "
                                    f"listen, got {cfg.peer!r}")
    sec.check_unknown()
    return cfg
def _groups(top: Section) -> tuple[GroupConfig, ...]:
    groups = top.table_of("groups")
    try:
        return parse_groups(groups.table)
    except ValueError as e:
        name, _, rest = str(e).partition(": ")
        raise groups.error(name, rest) from None


def _lb_config(src: TomlSource, lb: Section) -> LBConfig:
    try:
        return parse_config({"lb": lb.table})
    except LBConfigError as e:
        raise ConfigError(f"{src.path}:{src.line(('lb', *e.at))}: {e}") from None
