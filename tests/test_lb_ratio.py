"""Load-balance ratios, imbalance index and mapping real servers to nodes."""

from __future__ import annotations

import pytest

from ctop.lb.base import RealServer, ServerState, VirtualService
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.ratio import imbalance_index, load_basis, map_servers_to_nodes, server_ratios
from tests.helpers.haproxy_peer import HAProxyLab

S = ServerState.SERVING


def _vs(*servers: RealServer, key: str = "TCP 10.0.0.1:80", balancer: str = "ipvs"):
    return VirtualService(key, balancer, "TCP", "10.0.0.1", 80, servers=servers)


def _rs(key: str, weight: int, conns: int, rate: float = 0.0, state=S, addr: str = "10.0.0.2"):
    return RealServer(key, addr, 80, weight, state, active_conns=conns, conns_per_s=rate)


def test_balanced_and_unbalanced_ratios() -> None:
    vs = _vs(_rs("a", 2, 200, 20), _rs("b", 1, 100, 10), _rs("c", 1, 100, 10))
    rs = {r.server: r for r in server_ratios(vs)}
    assert rs["a"].weight_share == pytest.approx(0.5)
    assert all(r.conn_ratio == pytest.approx(1.0) for r in rs.values())
    assert all(r.rate_ratio == pytest.approx(1.0) for r in rs.values())
    assert rs["a"].conns_per_weight == 100
    assert imbalance_index(rs.values()) == pytest.approx(0.0)

    vs = _vs(_rs("a", 1, 300), _rs("b", 1, 100))
    rs = {r.server: r for r in server_ratios(vs)}
    assert rs["a"].conn_ratio == pytest.approx(1.5) and rs["b"].conn_ratio == pytest.approx(0.5)
    assert imbalance_index(rs.values()) == pytest.approx(0.25)
    assert imbalance_index(rs.values(), use="rate") is None  # no new connections measured


def test_the_basis_is_the_measure_with_more_events() -> None:
    # Short HTTP requests: two open connections are noise, 40 new ones a second are not.
    web = _vs(_rs("a", 1, 2, 30.0), _rs("b", 1, 0, 10.0))
    assert load_basis(web) == "rate"
    rs = server_ratios(web)
    assert imbalance_index(rs, use="rate") == pytest.approx(0.25)
    # Long-lived connections (SMTP, databases) pile up; few new ones arrive.
    smtp = _vs(_rs("a", 1, 300, 2.0), _rs("b", 1, 100, 1.0))
    assert load_basis(smtp) == "conns"
    assert load_basis(_vs(_rs("a", 1, 0), _rs("b", 1, 0))) == "conns"  # idle: either


def test_drained_server_has_no_weight_share() -> None:
    vs = _vs(_rs("a", 1, 90), _rs("b", 5, 10, state=ServerState.DRAINED))
    rs = {r.server: r for r in server_ratios(vs)}
    assert rs["a"].weight_share == 1.0 and rs["b"].weight_share == 0.0
    assert rs["b"].conn_ratio is None  # connections still finishing, no share to compare
    assert imbalance_index(rs.values()) == pytest.approx(0.1)


def test_no_load_no_ratio() -> None:
    rs = server_ratios(_vs(_rs("a", 1, 0), _rs("b", 1, 0)))
    assert all(r.conn_ratio is None for r in rs) and imbalance_index(rs) is None


def test_map_servers_to_nodes() -> None:
    services = [
        _vs(_rs("10.0.0.2:80", 1, 0, addr="10.0.0.2"), _rs("10.0.0.3:80", 1, 0, addr="10.0.0.3")),
        _vs(_rs("[2001:db8::5]:53", 1, 0, addr="2001:db8:0:0::5"), key="UDP [2001:db8::1]:53"),
        _vs(_rs("s1", 1, 0, addr="10.0.0.9"), key="web", balancer="haproxy"),
    ]
    nodes = {
        "n1": ["10.0.0.2", "fe80::1%eth0"],
        "n2": ["10.0.0.3", "2001:db8::5"],
        "n3": ["::ffff:10.0.0.9"],
    }
    m = map_servers_to_nodes(services, nodes)
    assert m == {
        ("ipvs", "TCP 10.0.0.1:80", "10.0.0.2:80"): "n1",
        ("ipvs", "TCP 10.0.0.1:80", "10.0.0.3:80"): "n2",
        ("ipvs", "UDP [2001:db8::1]:53", "[2001:db8::5]:53"): "n2",
        ("haproxy", "web", "s1"): "n3",
    }
    assert map_servers_to_nodes(services, {}) == {}


def test_ratios_from_real_haproxy(haproxy: HAProxyLab) -> None:
    be = HAProxyBalancer(haproxy.admin_socket)
    be.set_weight("web6", "s1", 2)
    haproxy.hits("web6", 40)
    [vs] = [v for v in be.services() if v.key == "web6"]
    rs = {r.server: r for r in server_ratios(vs)}
    assert rs["s1"].weight_share == 0.5
    # new connections in HAProxy's last second follow the weights 2:1:1
    assert rs["s1"].rate_ratio == pytest.approx(1.0, abs=0.15)
    m = map_servers_to_nodes([vs], {"local": ["127.0.0.1"]})
    assert set(m.values()) == {"local"} and len(m) == 3
