"""Pure parsers for what the kernel and ipvsadm print about IPVS. No I/O here.

Inputs, all captured from a real kernel (tests/fixtures/ipvs/):
- `ipvsadm -Ln [--exact]`            -> parse_list() (scheduler, persistence, method, weight)
- `ipvsadm -Ln --thresholds`         -> parse_thresholds()
- `ipvsadm -Ln --stats [--exact]`    -> parse_stats()  (totals; --stats --rate prints ONLY these)
- `ipvsadm -Ln --rate [--exact]`     -> parse_rates()  (per-second rates)
- `ipvsadm -Ln --tun-info`           -> parse_tun_info() (tunnel type/port/checksum of -i servers)
- `/proc/net/ip_vs`                  -> parse_proc_ip_vs() (hex addresses, newest server first,
                                        persistence in kernel ticks, no thresholds or rates)
merge() folds thresholds, stats and rates into the list.

Columns are split on whitespace, never by position: weights up to 2147483647 and long IPv6
addresses break ipvsadm's alignment. Every malformed line raises IPVSParseError naming it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ctop.lb.base import Connection, LBError, RealServer, ServerState, VirtualService

PROTOCOLS = ("TCP", "UDP", "SCTP", "FWM")
# ipvsadm and /proc name -> RealServer.forward. "Local" is the pre-2.6.37 local-node method.
FORWARD_NAMES = {"Masq": "masq", "Route": "route", "Tunnel": "tunnel", "Local": "local"}
# ipvsadm without --exact abbreviates values >= 10^8 with decimal suffixes.
_SUFFIX = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class IPVSParseError(LBError):
    """Output we do not understand. The message names the line and quotes it."""


# ---- keys -----------------------------------------------------------------------------------


def format_hostport(address: str, port: int) -> str:
    """'10.0.0.2:80' or '[2001:db8::2]:80' (IPv6 in brackets, as ipvsadm prints it)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def service_key(protocol: str, address: str, port: int, fwmark: int | None, ipv6: bool) -> str:
    """'TCP 10.1.0.1:80', 'UDP [2001:db8::1]:53', 'FWM 7', 'FWM 7 IPv6'."""
    if protocol == "FWM":
        return f"FWM {fwmark} IPv6" if ipv6 else f"FWM {fwmark}"
    return f"{protocol} {format_hostport(address, port)}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A virtual service as ipvsadm names it on the command line."""

    protocol: str
    address: str = ""
    port: int = 0
    fwmark: int | None = None
    ipv6: bool = False

    @property
    def key(self) -> str:
        return service_key(self.protocol, self.address, self.port, self.fwmark, self.ipv6)

    def ipvsadm_args(self) -> list[str]:
        """The virtual-service part of an ipvsadm command line."""
        if self.protocol == "FWM":
            return ["-f", str(self.fwmark), *(["-6"] if self.ipv6 else [])]
        flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[self.protocol]
        return [flag, format_hostport(self.address, self.port)]


def split_hostport(text: str) -> tuple[str, int]:
    """'10.0.0.2:80' / '[2001:0db8::2]:80' -> (canonical address, port). Raises ValueError."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {text!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {text!r}")
    port_n = int(port)
    if not 0 <= port_n <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return str(ipaddress.ip_address(host)), port_n


def parse_service_key(key: str) -> ServiceSpec:
    """Parse a service key, accepting any spelling of the address. Raises ValueError."""
    parts = key.split()
    if len(parts) < 2 or parts[0].upper() not in PROTOCOLS:
        raise ValueError(f"bad IPVS service {key!r}: want e.g. 'TCP 10.1.0.1:80' or 'FWM 7'")
    proto = parts[0].upper()
    if proto == "FWM":
        ipv6 = parts[2:] == ["IPv6"]
        if len(parts) > 3 or (len(parts) == 3 and not ipv6) or not parts[1].isdigit():
            raise ValueError(f"bad IPVS service {key!r}: want e.g. 'FWM 7' or 'FWM 7 IPv6'")
        return ServiceSpec("FWM", fwmark=int(parts[1]), ipv6=ipv6)
    if len(parts) != 2:
        raise ValueError(f"bad IPVS service {key!r}")
    address, port = split_hostport(parts[1])
    return ServiceSpec(proto, address, port, ipv6=":" in address)


def canonical_server_key(key: str) -> str:
    """Normalise '[2001:0db8::2]:80' to '[2001:db8::2]:80'. Raises ValueError."""
    return format_hostport(*split_hostport(key.strip()))


# ---- numbers --------------------------------------------------------------------------------


def parse_number(token: str) -> int:
    """An ipvsadm count: '12', or abbreviated '123K'/'4M'/'5G'/'6T' when --exact was missing."""
    if token[-1:] in _SUFFIX and token[:-1].isdigit():
        return int(token[:-1]) * _SUFFIX[token[-1]]
    if not token.isdigit():
        raise ValueError(f"not a number: {token!r}")
    return int(token)


# ---- common walk over ipvsadm -L output -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    number: int  # 1-based, for error messages
    text: str
    is_server: bool
    tokens: list[str]


def _lines(text: str) -> Iterator[_Line]:
    """Service and server lines of any `ipvsadm -L` / `/proc/net/ip_vs` table; headers skipped."""
    for number, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens or raw.startswith(("IP Virtual Server", "Prot ", "  -> RemoteAddress")):
            continue
        if tokens[0] == "->":
            yield _Line(number, raw, True, tokens[1:])
        elif tokens[0] in PROTOCOLS:
            yield _Line(number, raw, False, tokens)
        else:
            raise IPVSParseError(_where(number, raw, "neither a service nor a server line"))


def _where(number: int, text: str, why: str) -> str:
    return f"IPVS output line {number}: {why}: {text.strip()!r}"


def _columns(text: str) -> list[str]:
    """Column names of the 'Prot LocalAddress:Port ...' header, to refuse the wrong listing."""
    for raw in text.splitlines():
        if raw.startswith("Prot "):
            return raw.split()[2:]
    return []


def _require_columns(text: str, want: list[str], what: str) -> None:
    got = _columns(text)
    if got and got[: len(want)] != want:
        raise IPVSParseError(f"not {what} output: columns are {' '.join(got)!r}")


def _service_head(line: _Line, hex_form: bool = False) -> tuple[ServiceSpec, list[str]]:
    """The service part of a service line and the tokens after it."""
    tokens = line.tokens
    try:
        proto = tokens[0]
        if proto == "FWM":
            mark = int(tokens[1], 16) if hex_form else int(tokens[1])
            ipv6 = tokens[2:3] == ["IPv6"]
            return ServiceSpec("FWM", fwmark=mark, ipv6=ipv6), tokens[3 if ipv6 else 2 :]
        address, port = _hex_hostport(tokens[1]) if hex_form else split_hostport(tokens[1])
        return ServiceSpec(proto, address, port, ipv6=":" in address), tokens[2:]
    except (IndexError, ValueError) as exc:
        raise IPVSParseError(_where(line.number, line.text, f"bad service ({exc})")) from None


def _server_address(line: _Line, hex_form: bool = False) -> tuple[str, int]:
    try:
        return _hex_hostport(line.tokens[0]) if hex_form else split_hostport(line.tokens[0])
    except (IndexError, ValueError) as exc:
        raise IPVSParseError(_where(line.number, line.text, f"bad server ({exc})")) from None


def _hex_hostport(text: str) -> tuple[str, int]:
    """/proc form: '0A000001:0050' or '[2001:0db8:...:0001]:0050' (port in hex)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {text!r}")
        return str(ipaddress.IPv6Address(host)), int(port, 16)
    host, sep, port = text.partition(":")
    if not sep or len(host) != 8:
        raise ValueError(f"bad address {text!r}")
    return str(ipaddress.IPv4Address(int(host, 16))), int(port, 16)


# ---- ipvsadm -Ln ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ServiceFlags:
    scheduler: str
    persistent_s: int | None


def _service_flags(line: _Line, rest: list[str]) -> _ServiceFlags:
    """'wlc', 'rr persistent 300 mask 255.255.255.0 ops', 'sh (sh-fallback,sh-port)'."""
    if not rest:
        raise IPVSParseError(_where(line.number, line.text, "no scheduler"))
    persistent: int | None = None
    if "persistent" in rest:
        after = rest[rest.index("persistent") + 1 : rest.index("persistent") + 2]
        if not after or not after[0].isdigit():
            raise IPVSParseError(_where(line.number, line.text, "persistent without seconds"))
        persistent = int(after[0])
    return _ServiceFlags(rest[0], persistent)


def _state(weight: int) -> ServerState:
    return ServerState.DRAINED if weight == 0 else ServerState.SERVING


def _forward(line: _Line, name: str) -> str:
    if name not in FORWARD_NAMES:
        raise IPVSParseError(_where(line.number, line.text, f"unknown forwarding method {name!r}"))
    return FORWARD_NAMES[name]


def _real_server(line: _Line, address: str, port: int, fields: list[str]) -> RealServer:
    """A `-> ADDR:PORT Forward Weight ActiveConn InActConn` line (ipvsadm or /proc)."""
    if len(fields) != 4:
        raise IPVSParseError(_where(line.number, line.text, "want Forward Weight Active InAct"))
    try:
        weight, active, inactive = (parse_number(f) for f in fields[1:])
    except ValueError as exc:
        raise IPVSParseError(_where(line.number, line.text, str(exc))) from None
    return RealServer(
        key=format_hostport(address, port),
        address=address,
        port=port,
        weight=weight,
        state=_state(weight),
        active_conns=active,
        inactive_conns=inactive,
        forward=_forward(line, fields[0]),
    )


def parse_list(text: str) -> list[VirtualService]:
    """`ipvsadm -Ln [--exact]` (also accepts `--tun-info` listings) -> services in kernel order."""
    _require_columns(text, ["Scheduler", "Flags"], "ipvsadm -Ln")
    services: list[VirtualService] = []
    for line in _lines(text):
        if not line.is_server:
            spec, rest = _service_head(line)
            flags = _service_flags(line, rest)
            services.append(_new_service(spec, flags.scheduler, flags.persistent_s))
            continue
        if not services:
            raise IPVSParseError(_where(line.number, line.text, "server before any service"))
        address, port = _server_address(line)
        fields = line.tokens[1:]
        if len(fields) == 5:  # --tun-info adds a TunnelInfo column after Forward
            fields = [fields[0], *fields[2:]]
        server = _real_server(line, address, port, fields)
        services[-1] = replace(services[-1], servers=(*services[-1].servers, server))
    return services


def _new_service(spec: ServiceSpec, scheduler: str, persistent_s: int | None) -> VirtualService:
    return VirtualService(
        key=spec.key,
        balancer="ipvs",
        protocol=spec.protocol,
        address=spec.address,
        port=spec.port,
        scheduler=scheduler,
        persistent_s=persistent_s,
        fwmark=spec.fwmark,
    )


# ---- per-server numeric tables: thresholds, stats, rates, tunnel info ------------------------

# (service key, server key or None for the service's own row) -> values
Table = dict[tuple[str, str | None], tuple[int, ...]]


def _numeric_table(text: str, width: int, has_flags: bool) -> Table:
    """Rows of `width` numbers after the address, for services (unless has_flags) and servers."""
    table: Table = {}
    current: str | None = None
    for line in _lines(text):
        if line.is_server:
            if current is None:
                raise IPVSParseError(_where(line.number, line.text, "server before any service"))
            address, port = _server_address(line)
            row, server = line.tokens[1:], format_hostport(address, port)
        else:
            spec, row = _service_head(line)
            current, server = spec.key, None
            if has_flags:  # service lines carry the scheduler, not numbers
                continue
        if len(row) != width:
            raise IPVSParseError(_where(line.number, line.text, f"want {width} numbers"))
        try:
            table[(current, server)] = tuple(parse_number(t) for t in row)
        except ValueError as exc:
            raise IPVSParseError(_where(line.number, line.text, str(exc))) from None
    return table


def parse_thresholds(text: str) -> dict[tuple[str, str], tuple[int, int]]:
    """`ipvsadm -Ln --thresholds` -> {(service key, server key): (upper -x, lower -y)}."""
    _require_columns(text, ["Uthreshold", "Lthreshold"], "ipvsadm -Ln --thresholds")
    table = _numeric_table(text, 4, has_flags=True)
    return {(svc, srv): (row[0], row[1]) for (svc, srv), row in table.items() if srv}


@dataclass(frozen=True, slots=True)
class TrafficCounts:
    """One row of --stats (totals since the counters were zeroed) or --rate (per second)."""

    conns: int
    in_packets: int
    out_packets: int
    in_bytes: int
    out_bytes: int


def parse_stats(text: str) -> dict[tuple[str, str | None], TrafficCounts]:
    """`ipvsadm -Ln --stats [--exact]` -> totals per service (server None) and per server."""
    _require_columns(text, ["Conns", "InPkts"], "ipvsadm -Ln --stats")
    return {k: TrafficCounts(*row) for k, row in _numeric_table(text, 5, has_flags=False).items()}


def parse_rates(text: str) -> dict[tuple[str, str | None], TrafficCounts]:
    """`ipvsadm -Ln --rate [--exact]` -> CPS, InPPS, OutPPS, InBPS, OutBPS per service/server.

    Refuses `--stats --rate` output: ipvsadm prints only the stats columns for that.
    """
    _require_columns(text, ["CPS", "InPPS"], "ipvsadm -Ln --rate")
    return {k: TrafficCounts(*row) for k, row in _numeric_table(text, 5, has_flags=False).items()}


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Tunnel settings of an -i server; an edit must repeat them or the kernel resets to ipip."""

    type: str  # "ipip" | "gue" | "gre"
    port: int | None = None  # gue only
    csum: str = ""  # "" (ipip) | "nocsum" | "csum" | "remcsum"

    def ipvsadm_args(self) -> list[str]:
        args = ["--tun-type", self.type]
        if self.port is not None:
            args += ["--tun-port", str(self.port)]
        if self.csum:
            args.append(f"--tun-{self.csum}")
        return args


_CSUM = {"-c": "nocsum", "+c": "csum", "r+c": "remcsum"}
_TUN_RE = re.compile(r"^(?:(ipip)|gue:(\d+):([-+r]+c)|gre:([-+r]+c))$")


def parse_tun_info(text: str) -> dict[tuple[str, str], Tunnel]:
    """`ipvsadm -Ln --tun-info` -> {(service key, server key): Tunnel} for tunnel servers."""
    _require_columns(text, ["Scheduler", "Flags"], "ipvsadm -Ln --tun-info")
    out: dict[tuple[str, str], Tunnel] = {}
    current: str | None = None
    for line in _lines(text):
        if not line.is_server:
            current = _service_head(line)[0].key
            continue
        if current is None or len(line.tokens) != 6:
            raise IPVSParseError(_where(line.number, line.text, "want a --tun-info server line"))
        info = line.tokens[2]
        if info == "n/a":
            continue
        m = _TUN_RE.match(info)
        if not m or (m.group(3) or m.group(4) or "-c") not in _CSUM:
            raise IPVSParseError(_where(line.number, line.text, f"unknown tunnel info {info!r}"))
        if m.group(1):
            tunnel = Tunnel("ipip")
        elif m.group(2):
            tunnel = Tunnel("gue", int(m.group(2)), _CSUM[m.group(3)])
        else:
            tunnel = Tunnel("gre", None, _CSUM[m.group(4)])
        out[(current, format_hostport(*_server_address(line)))] = tunnel
    return out


# ---- merge ----------------------------------------------------------------------------------


def merge(
    services: list[VirtualService],
    *,
    thresholds: dict[tuple[str, str], tuple[int, int]] | None = None,
    stats: dict[tuple[str, str | None], TrafficCounts] | None = None,
    rates: dict[tuple[str, str | None], TrafficCounts] | None = None,
) -> list[VirtualService]:
    """Fold the separate listings into the main one, by key.

    The listings come from separate ipvsadm runs, so a server added in between may be missing
    from one of them; it then keeps zeros rather than failing the whole read.
    """
    out = []
    for svc in services:
        servers = []
        for rs in svc.servers:
            key = (svc.key, rs.key)
            upper, lower = (thresholds or {}).get(key, (rs.upper_threshold, rs.lower_threshold))
            total = (stats or {}).get(key)
            rate = (rates or {}).get(key)
            servers.append(
                replace(
                    rs,
                    upper_threshold=upper,
                    lower_threshold=lower,
                    total_conns=total.conns if total else rs.total_conns,
                    conns_per_s=float(rate.conns) if rate else rs.conns_per_s,
                    bytes_in_per_s=float(rate.in_bytes) if rate else rs.bytes_in_per_s,
                    bytes_out_per_s=float(rate.out_bytes) if rate else rs.bytes_out_per_s,
                )
            )
        out.append(replace(svc, servers=tuple(servers)))
    return out


# ---- /proc ----------------------------------------------------------------------------------


def parse_proc_ip_vs(text: str, hz: int) -> list[VirtualService]:
    """`/proc/net/ip_vs` -> services, servers in ipvsadm's order (the kernel lists newest first).

    Persistence is printed in kernel ticks; `hz` is the kernel's CONFIG_HZ. An IPv6 firewall-mark
    service is not marked as such in /proc; it is recognised by its IPv6 servers.
    """
    services: list[VirtualService] = []
    for line in _lines(text):
        if not line.is_server:
            spec, rest = _service_head(line, hex_form=True)
            persistent: int | None = None
            if "persistent" in rest:
                i = rest.index("persistent")
                try:
                    persistent = int(rest[i + 1]) // hz
                except (IndexError, ValueError):
                    raise IPVSParseError(
                        _where(line.number, line.text, "persistent without ticks")
                    ) from None
            if not rest:
                raise IPVSParseError(_where(line.number, line.text, "no scheduler"))
            services.append(_new_service(spec, rest[0], persistent))
            continue
        if not services:
            raise IPVSParseError(_where(line.number, line.text, "server before any service"))
        address, port = _server_address(line, hex_form=True)
        fields = line.tokens[1:]
        server = _real_server(line, address, port, fields)
        svc = services[-1]
        if svc.protocol == "FWM" and ":" in address and not svc.key.endswith("IPv6"):
            svc = replace(svc, key=f"{svc.key} IPv6")
        # newest first in /proc; prepend so the order matches ipvsadm (oldest first)
        services[-1] = replace(svc, servers=(server, *svc.servers))
    return services


# ---- /proc/net/ip_vs_conn -------------------------------------------------------------------


def _conn_address(token: str) -> str:
    """An address column of /proc/net/ip_vs_conn: '0A000001' (IPv4, hex) or full IPv6."""
    if ":" in token:
        return str(ipaddress.IPv6Address(token))
    if len(token) != 8:
        raise ValueError(f"bad address {token!r}")
    return str(ipaddress.IPv4Address(int(token, 16)))


def parse_proc_conn(text: str) -> list[Connection]:
    """`/proc/net/ip_vs_conn` (readable without root) -> one Connection per entry.

    Columns: Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]; IPv4
    addresses in hex, IPv6 in full colon form, ports in hex, Expires in seconds. A persistence
    template is the entry with client port 0 (the kernel creates it with cport 0 so that every
    connection of that client matches it); its state is NONE or ASSURED, its protocol "IP" for
    a firewall-mark service. `ip_vs_conn_sync` has an extra Origin column before Expires.
    """
    out: list[Connection] = []
    for number, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[0] == "Pro":
            continue
        try:
            proto, caddr, cport, vaddr, vport, daddr, dport, state = tokens[:8]
            rest = tokens[8:]
            expires = rest[1] if rest and not rest[0].isdigit() else rest[0]  # sync: Origin
            client_port = int(cport, 16)
            out.append(
                Connection(
                    client=format_hostport(_conn_address(caddr), client_port),
                    virtual=format_hostport(_conn_address(vaddr), int(vport, 16)),
                    server=format_hostport(_conn_address(daddr), int(dport, 16)),
                    protocol=proto,
                    state=state,
                    expires_s=float(int(expires)),
                    template=client_port == 0,
                )
            )
        except (IndexError, ValueError) as exc:
            raise IPVSParseError(_where(number, raw, f"bad connection entry ({exc})")) from None
    return out
