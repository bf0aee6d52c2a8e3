"""The [lb] section of ctop's TOML config, checked and turned into typed settings.

    [lb]
    readonly = false
    reassert = false                  # put drifted operator intents back each round

    [lb.haproxy]                      # or [[lb.haproxy]] with name = "..." for several
    socket = "/run/haproxy/admin.sock"  # or "127.0.0.1:9999" (a TCP stats socket)
    state_file = ""                   # saved after each change, so a reload keeps it
    config = ""                       # or: HAProxy's config, naming its server-state-file

    [lb.ipvs]
    enabled = true
    keepalived_dir = "/etc/keepalived/ctop"   # the includes for a keepalived-owned table

    [lb.automation]
    checks = {"web" = ["http"]}       # which probes judge a service (default: same port)

    [lb.automation."web"]             # service key, or "balancer:service"; off unless listed
    quiesce_after = 3                 # failed probe results in a row
    restore_after = 2                 # good probe results in a row
    keep_last = true

    [lb.advice]
    auto = false
    max_step = 0.25
    min_weight = 1
    max_weight = 100

No [lb.haproxy] and no enabled [lb.ipvs] means monitoring only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ctop.lb.advice import AdvicePolicy
from ctop.lb.automation import QuiescePolicy

_LB_KEYS = {"readonly", "reassert", "haproxy", "ipvs", "automation", "advice"}


# Where in [lb] a problem is: ("haproxy", 1, "timeout") is `timeout` of the second
# [[lb.haproxy]], so the director's config can name the line.
At = tuple[str | int, ...]


class ConfigError(ValueError):
    """The [lb] config is wrong; the message names the key, `at` its path inside [lb]."""

    def __init__(self, message: str, at: At = ()) -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True, slots=True)
class HAProxyConfig:
    name: str
    socket: str
    timeout: float = 5.0
    # the server-state file saved after each change (a reload then keeps it), given directly
    # or read from HAProxy's own config (ctop.lb.owners.haproxy_state)
    state_file: str = ""
    config: str = ""


@dataclass(frozen=True, slots=True)
class LBConfig:
    haproxy: tuple[HAProxyConfig, ...] = ()
    ipvs: bool = False
    ipvsadm: str = "ipvsadm"
    keepalived_dir: str = "/etc/keepalived/ctop"  # where ctop writes keepalived includes
    readonly: bool = False
    reassert: bool = False  # put drifted operator intents back each round (ctop.lb.reassert)
    automation: dict[str, QuiescePolicy] = field(default_factory=dict)
    # service key (or "balancer:service") -> the probe names that judge it; unlisted services
    # are judged by the node's probes on the real server's port
    checks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    advice: AdvicePolicy = field(default_factory=AdvicePolicy)

    @property
    def monitoring_only(self) -> bool:
        return not self.haproxy and not self.ipvs


def _table(value: Any, where: str, at: At) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(value).__name__}", at)
    return value


def _known(table: Mapping[str, Any], allowed: set[str], where: str, at: At) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", (*at, unknown[0]))


def _typed(value: Any, kind: type | tuple[type, ...], where: str, at: At) -> Any:
    # bool is an int in Python; a weight of `true` is a mistake, not 1
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where} must be {kind}, got a boolean", at)
    if not isinstance(value, kind):
        raise ConfigError(f"{where} has the wrong type: {value!r}", at)
    return value


def _dataclass_from(cls: type, table: Mapping[str, Any], where: str, at: At) -> Any:
    kinds = {f.name: f.type for f in fields(cls)}
    _known(table, set(kinds), where, at)
    args = {}
    for key, value in table.items():
        kind = {"bool": bool, "int": int, "float": (int, float)}[str(kinds[key])]
        args[key] = _typed(value, kind, f"{where}.{key}", (*at, key))
    return cls(**args)


def parse_config(raw: Mapping[str, Any] | None) -> LBConfig:
    """Accepts the whole parsed config (with an "lb" key) or just its [lb] table."""
    if not raw:
        return LBConfig()
    if "lb" in raw:
        lb = _table(raw["lb"], "[lb]", ())
    elif set(raw) <= _LB_KEYS:
        lb = raw  # handed the [lb] table itself
    else:
        return LBConfig()  # a whole config without an [lb] table
    _known(lb, _LB_KEYS, "[lb]", ())

    haproxy: list[HAProxyConfig] = []
    entries = lb.get("haproxy", [])
    for i, entry in enumerate([entries] if isinstance(entries, Mapping) else entries):
        single = isinstance(entries, Mapping)
        where = "[lb.haproxy]" if single else f"[[lb.haproxy]] #{i + 1}"
        at: At = ("haproxy",) if single else ("haproxy", i)
        entry = _table(entry, where, at)
        _known(entry, {"name", "socket", "timeout", "state_file", "config"}, where, at)
        if "socket" not in entry:
            raise ConfigError(f"{where}: socket is required (a path or host:port)", at)
        default_name = "haproxy" if i == 0 else f"haproxy{i + 1}"
        haproxy.append(
            HAProxyConfig(
                name=_typed(entry.get("name", default_name), str, f"{where}.name",
                            (*at, "name")),
                socket=_typed(entry["socket"], str, f"{where}.socket", (*at, "socket")),
                timeout=float(_typed(entry.get("timeout", 5.0), (int, float),
                                     f"{where}.timeout", (*at, "timeout"))),
                state_file=_typed(entry.get("state_file", ""), str, f"{where}.state_file",
                                  (*at, "state_file")),
                config=_typed(entry.get("config", ""), str, f"{where}.config", (*at, "config")),
            )
        )
    names = [h.name for h in haproxy]
    if len(set(names)) != len(names) or "ipvs" in names:
        raise ConfigError(f"[lb.haproxy]: balancer names must be unique and not 'ipvs': {names}",
                          ("haproxy",))

    ipvs_t = _table(lb.get("ipvs", {}), "[lb.ipvs]", ("ipvs",))
    _known(ipvs_t, {"enabled", "ipvsadm", "keepalived_dir"}, "[lb.ipvs]", ("ipvs",))
    ipvs = _typed(ipvs_t.get("enabled", bool(ipvs_t)), bool, "[lb.ipvs].enabled",
                  ("ipvs", "enabled"))

    automation = {}
    auto_t = dict(_table(lb.get("automation", {}), "[lb.automation]", ("automation",)))
    checks = _checks(auto_t.pop("checks", {}))
    for service, table in auto_t.items():
        where = f'[lb.automation."{service}"]'
        at = ("automation", service)
        table = dict(_table(table, where, at))
        table.setdefault("enabled", True)  # listing a service is opting it in
        policy = _dataclass_from(QuiescePolicy, table, where, at)
        if policy.quiesce_after < 1 or policy.restore_after < 1:
            raise ConfigError(f"{where}: quiesce_after and restore_after must be >= 1", at)
        automation[service] = policy

    advice = _dataclass_from(AdvicePolicy, _table(lb.get("advice", {}), "[lb.advice]",
                                                  ("advice",)), "[lb.advice]", ("advice",))
    if not 0 < advice.max_step <= 1 or not 1 <= advice.min_weight <= advice.max_weight:
        raise ConfigError("[lb.advice]: need 0 < max_step <= 1 and 1 <= min_weight <= max_weight",
                          ("advice",))

    return LBConfig(
        haproxy=tuple(haproxy),
        ipvs=ipvs,
        ipvsadm=_typed(ipvs_t.get("ipvsadm", "ipvsadm"), str, "[lb.ipvs].ipvsadm",
                       ("ipvs", "ipvsadm")),
        keepalived_dir=_typed(ipvs_t.get("keepalived_dir", "/etc/keepalived/ctop"), str,
                              "[lb.ipvs].keepalived_dir", ("ipvs", "keepalived_dir")),
        readonly=_typed(lb.get("readonly", False), bool, "[lb].readonly", ("readonly",)),
        reassert=_typed(lb.get("reassert", False), bool, "[lb].reassert", ("reassert",)),
        automation=automation,
        checks=checks,
        advice=advice,
    )


def _checks(value: Any) -> dict[str, tuple[str, ...]]:
    """[lb.automation] checks = {"web" = ["http"], "haproxy:api" = ["api", "api-tls"]}"""
    where = "[lb.automation].checks"
    example = '{"web" = ["http"]}'
    at: At = ("automation", "checks")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of service = [probe names], e.g. {example}",
                          at)
    out = {}
    for service, names in value.items():
        if (
            not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise ConfigError(
                f'{where}."{service}" must be a non-empty list of probe names (the names in '
                f"the agents' probe config), e.g. {example}; got {names!r}", (*at, service)
            )
        out[str(service)] = tuple(n.strip() for n in names)
    return out
