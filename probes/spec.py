"""ProbeSpec: one configured check, built from a TOML table or a URL; validated at config time.

URL forms (see docs/probes.md):
    smtp://10.0.0.2:25?timeout=3
    http://h:8080/health?expect=200&receive=OK&virtualhost=www.example.com
    https://h/?cert_warn_days=21
    dns://10.0.0.3:53/www.example.com?type=A&tcp=1
    command:///usr/lib/mon/check --flag      (rest of the line is split like a shell would)
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class ProbeSpecError(ValueError):
    """A probe spec that cannot be run; raised at config time with a message for the operator."""


@dataclass(frozen=True, slots=True)
class TypeInfo:
    default_port: int | None
    options: frozenset[str]  # type-specific keys allowed besides the common ones


_HTTP = frozenset({"path", "expect", "receive", "virtualhost"})
_HTTPS = _HTTP | {"verify", "cert_warn_days"}
TYPES: dict[str, TypeInfo] = {
    "http": TypeInfo(80, _HTTP),
    "https": TypeInfo(443, _HTTPS),
    "smtp": TypeInfo(25, frozenset()),
    "pop3": TypeInfo(110, frozenset()),
    "imap": TypeInfo(143, frozenset()),
    "ftp": TypeInfo(21, frozenset()),
    "nntp": TypeInfo(119, frozenset()),
    "telnet": TypeInfo(23, frozenset()),
    "ssh": TypeInfo(22, frozenset()),
    "dns": TypeInfo(53, frozenset({"query", "qtype", "tcp"})),
    "tcp": TypeInfo(None, frozenset()),  # no sensible default: a port is required
    "command": TypeInfo(None, frozenset({"command"})),
}
COMMON = frozenset({"type", "host", "port", "name", "timeout", "connect_timeout", "interval"})

DEFAULT_TIMEOUT = 5.0
DEFAULT_INTERVAL = 10.0
DEFAULT_CERT_WARN_DAYS = 14


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    type: str
    host: str = ""
    port: int | None = None
    name: str = ""
    timeout: float = DEFAULT_TIMEOUT  # whole conversation
    connect_timeout: float = 0.0  # 0 means "same as timeout"
    interval: float = DEFAULT_INTERVAL  # used by the scheduler only
    # http / https
    path: str = "/"
    expect: tuple[int, ...] = ()  # empty: any 2xx or 3xx
    receive: str | None = None  # substring the body must contain (ldirectord's "receive")
    virtualhost: str | None = None  # Host header and TLS SNI
    verify: bool = False  # self-signed certs are normal on real nodes; expiry is still read
    cert_warn_days: int = DEFAULT_CERT_WARN_DAYS
    # dns
    query: str = ""
    qtype: str = "A"
    tcp: bool = False
    # command
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def connect_limit(self) -> float:
        return min(self.connect_timeout or self.timeout, self.timeout)

    def to_url(self) -> str:
        """A short URL-ish label; the default name."""
        if self.type == "command":
            return "command:" + shlex.join(self.command)
        host = f"[{self.host}]" if ":" in self.host else self.host
        tail = ""
        if self.type in ("http", "https"):
            tail = self.path
        elif self.type == "dns":
            tail = f"/{self.query}?type={self.qtype}" + ("&tcp=1" if self.tcp else "")
        return f"{self.type}://{host}:{self.port}{tail}"


def _validate(spec: ProbeSpec) -> None:
    info = TYPES.get(spec.type)
    if info is None:
        raise ProbeSpecError(f"unknown probe type {spec.type!r} (known: {', '.join(TYPES)})")
    if spec.type == "command":
        if not spec.command:
            raise ProbeSpecError("command probe needs a command to run")
        if spec.host or spec.port is not None:
            raise ProbeSpecError("command probe takes no host or port")
    else:
        if not spec.host:
            raise ProbeSpecError(f"{spec.type} probe needs a host")
        if spec.port is None:
            raise ProbeSpecError(f"{spec.type} probe needs a port")
        if isinstance(spec.port, bool) or not isinstance(spec.port, int):
            raise ProbeSpecError(f"port must be an integer, not {spec.port!r}")
        if not 1 <= spec.port <= 65535:
            raise ProbeSpecError(f"port {spec.port} out of range 1-65535")
    for key in ("timeout", "interval"):
        value = getattr(spec, key)
        if not 0 < value <= 86400:
            raise ProbeSpecError(f"{key} must be > 0 seconds, got {value!r}")
    if spec.connect_timeout < 0:
        raise ProbeSpecError(f"connect_timeout must be >= 0, got {spec.connect_timeout!r}")
    if not spec.path.startswith("/"):
        raise ProbeSpecError(f"http path must start with '/', got {spec.path!r}")
    for code in spec.expect:
        if not 100 <= code <= 599:
            raise ProbeSpecError(f"expected HTTP status {code} is not a status code")
    if spec.cert_warn_days < 0:
        raise ProbeSpecError("cert_warn_days must be >= 0")
    if spec.type == "dns":
        _validate_dns(spec)


def _validate_dns(spec: ProbeSpec) -> None:
    # dnspython costs a node ~3 MB of RSS: imported only when a dns probe is configured.
    import dns.exception
    import dns.name
    import dns.rdatatype

    if not spec.query:
        raise ProbeSpecError("dns probe needs a name to query, e.g. dns://host/www.example.com")
    try:
        dns.name.from_text(spec.query)
    except dns.exception.DNSException as exc:
        raise ProbeSpecError(f"bad dns name {spec.query!r}: {exc}") from None
    try:
        dns.rdatatype.from_text(spec.qtype)
    except dns.exception.DNSException:
        raise ProbeSpecError(f"unknown dns record type {spec.qtype!r}") from None


# --- building specs -------------------------------------------------------------------------

_FLOATS = {"timeout", "connect_timeout", "interval"}
_INTS = {"port", "cert_warn_days"}
_BOOLS = {"verify", "tcp"}
_OPTIONAL = {"receive", "virtualhost"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(key: str, value: Any) -> Any:
    """Turn a TOML value or a URL query string into the field's type."""
    if value is None and key in _OPTIONAL:  # only from merging a parsed url; TOML has no null
        return None
    try:
        if key in _FLOATS:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if key in _INTS:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if key in _BOOLS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if key == "expect":
            items = value if isinstance(value, list | tuple) else str(value).split(",")
            return tuple(int(item) for item in items if str(item).strip())
        if key == "command":
            if isinstance(value, str):
                return tuple(shlex.split(value))
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError
        if key == "qtype":
            return str(value).upper()
        if not isinstance(value, str):
            raise ValueError
        return value
    except ValueError:
        raise ProbeSpecError(f"bad value for {key!r}: {value!r}") from None


def _build(kind: str, values: dict[str, Any]) -> ProbeSpec:
    if kind not in TYPES:
        raise ProbeSpecError(f"unknown probe type {kind!r} (known: {', '.join(TYPES)})")
    allowed = COMMON | TYPES[kind].options
    for key in values:
        if key not in allowed:
            if key in {f.name for f in fields(ProbeSpec)}:
                raise ProbeSpecError(f"option {key!r} does not apply to {kind} probes")
            raise ProbeSpecError(f"unknown option {key!r} for {kind} probe")
    coerced = {key: _coerce(key, value) for key, value in values.items()}
    coerced["type"] = kind
    if coerced.get("port") is None and "port" not in values:
        coerced["port"] = TYPES[kind].default_port
    spec = ProbeSpec(**coerced)
    return spec if spec.name else replace(spec, name=spec.to_url())


def from_url(url: str) -> ProbeSpec:
    """Parse the URL form; the query string carries options (timeout=, expect=, type=, ...)."""
    url = url.strip()
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise ProbeSpecError(f"not a probe URL (want TYPE://HOST[:PORT]...): {url!r}")
    kind = scheme.lower()
    if kind == "command":
        # Everything after "command:" is the command line; "command:///bin/x" reads naturally.
        line = rest[2:] if rest.startswith("//") else rest
        return _build(kind, {"command": line})
    parts = urlsplit(url)
    if parts.username or parts.password or parts.fragment:
        raise ProbeSpecError(f"probe URL must not carry user info or a fragment: {url!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ProbeSpecError(f"bad port in {url!r}: {exc}") from None
    values: dict[str, Any] = {"host": host or ""}
    if port is not None:
        values["port"] = port
    if kind in ("http", "https"):
        values["path"] = parts.path or "/"
    elif kind == "dns":
        values["query"] = parts.path.strip("/")
    elif parts.path not in ("", "/"):
        raise ProbeSpecError(f"{kind} probe URL takes no path: {url!r}")
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if kind == "dns" and key == "type":  # dns://.../name?type=MX reads better than qtype=
            key = "qtype"
        if key == "type":
            raise ProbeSpecError("the probe type is the URL scheme; 'type=' is not an option here")
        values[key] = value
    return _build(kind, values)


def from_table(table: Mapping[str, Any]) -> ProbeSpec:
    """Parse a TOML table: either type = "...", host = ..., or url = "..." plus overrides."""
    values = dict(table)
    url = values.pop("url", None)
    if url is not None:
        if not isinstance(url, str):
            raise ProbeSpecError(f"url must be a string, not {url!r}")
        base = from_url(url)
        kind = values.pop("type", base.type)
        if kind != base.type:
            raise ProbeSpecError(f"type {kind!r} contradicts url scheme {base.type!r}")
        merged = {
            f.name: getattr(base, f.name)
            for f in fields(ProbeSpec)
            if f.name in COMMON | TYPES[kind].options and f.name != "type"
        }
        if "name" not in values:
            merged.pop("name")  # recompute from the merged fields
        merged.update(values)
        return _build(kind, merged)
    kind = values.pop("type", None)
    if not isinstance(kind, str):
        raise ProbeSpecError(f'probe table needs type = "..." or url = "...": {dict(table)!r}')
    return _build(kind.lower(), values)


def parse(source: str | Mapping[str, Any] | ProbeSpec) -> ProbeSpec:
    """Accept whatever config hands us: a ready spec, a URL string or a TOML table."""
    if isinstance(source, ProbeSpec):
        return source
    if isinstance(source, str):
        return from_url(source)
    if isinstance(source, Mapping):
        return from_table(source)
    raise ProbeSpecError(f"cannot make a probe spec from {type(source).__name__}")
