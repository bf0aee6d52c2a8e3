"""Load-balance ratios: does each real server get the share of work its weight asks for?

ratio = (server's share of active connections) / (server's share of effective weight).
1.0 is balanced, 2.0 means twice its share, 0.5 half. Same for new connections per second.
The service imbalance index is the total variation distance between the load shares and the
weight shares: 0 = perfectly balanced, 1 = all load where no weight is.

Which of the two measures a service is judged by (`load_basis`) is the one with more events
behind it: long-lived connections (SMTP, databases) pile up as active connections, while short
HTTP requests come and go between two reads and show mostly as new connections per second; a
share of two or three active connections is noise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ctop.lb.base import RealServer, ServerState, VirtualService

_NO_NEW = (ServerState.DRAINED, ServerState.QUIESCED, ServerState.MAINT, ServerState.DOWN)


@dataclass(frozen=True, slots=True)
class ServerRatio:
    service: str
    server: str
    weight_share: float  # 0..1 of the service's effective weight
    conn_share: float | None  # 0..1 of active connections (None: service has none)
    rate_share: float | None  # 0..1 of new connections per second (None: none)
    conn_ratio: float | None  # conn_share / weight_share (None: no weight or no connections)
    rate_ratio: float | None
    conns_per_weight: float | None  # active connections per unit of weight


def _weight(rs: RealServer) -> int:
    return 0 if rs.state in _NO_NEW else max(rs.weight, 0)


def _share(part: float, total: float) -> float | None:
    return part / total if total > 0 else None


def _ratio(share: float | None, weight_share: float) -> float | None:
    if share is None or weight_share <= 0:
        return None
    return share / weight_share


def server_ratios(service: VirtualService) -> list[ServerRatio]:
    total_w = sum(_weight(rs) for rs in service.servers)
    total_c = sum(rs.active_conns for rs in service.servers)
    total_r = sum(rs.conns_per_s for rs in service.servers)
    out = []
    for rs in service.servers:
        w = _weight(rs)
        ws = w / total_w if total_w > 0 else 0.0
        cs, rsh = _share(rs.active_conns, total_c), _share(rs.conns_per_s, total_r)
        out.append(
            ServerRatio(
                service=service.key,
                server=rs.key,
                weight_share=ws,
                conn_share=cs,
                rate_share=rsh,
                conn_ratio=_ratio(cs, ws),
                rate_ratio=_ratio(rsh, ws),
                conns_per_weight=rs.active_conns / w if w > 0 else None,
            )
        )
    return out


def load_basis(service: VirtualService) -> str:
    """"conns" (active connections) or "rate" (new connections per second), whichever the
    service has more of right now."""
    total_c = sum(rs.active_conns for rs in service.servers)
    total_r = sum(rs.conns_per_s for rs in service.servers)
    return "rate" if total_r > total_c else "conns"


def imbalance_index(ratios: Iterable[ServerRatio], *, use: str = "conns") -> float | None:
    """0 (balanced) .. 1; None when the service has no load or no weight to compare."""
    pairs = [(r.rate_share if use == "rate" else r.conn_share, r.weight_share) for r in ratios]
    if not pairs or any(s is None for s, _ in pairs) or sum(w for _, w in pairs) <= 0:
        return None
    return 0.5 * sum(abs((s or 0.0) - w) for s, w in pairs)


def _norm(addr: str) -> str:
    addr = addr.strip().strip("[]").split("%")[0]
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr.lower()


def map_servers_to_nodes(
    services: Iterable[VirtualService], node_addresses: dict[str, list[str]]
) -> dict[tuple[str, str, str], str]:
    """(balancer, service key, server key) -> node id, by the addresses the nodes announce.

    Addresses are compared as IP addresses (so "::ffff:10.0.0.2"-style and zero-padded IPv6
    spellings match); a server whose address no node announces is left out. When two nodes
    announce the same address the first one (in dict order) wins.
    """
    owner: dict[str, str] = {}
    for node, addrs in node_addresses.items():
        for a in addrs:
            owner.setdefault(_norm(a), node)
            mapped = _unmap_v4(a)
            if mapped:
                owner.setdefault(mapped, node)
    result: dict[tuple[str, str, str], str] = {}
    for vs in services:
        for rs in vs.servers:
            node = owner.get(_norm(rs.address)) or owner.get(_unmap_v4(rs.address) or "")
            if node is not None:
                result[(vs.balancer, vs.key, rs.key)] = node
    return result


def _unmap_v4(addr: str) -> str | None:
    try:
        ip = ipaddress.ip_address(addr.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return None
