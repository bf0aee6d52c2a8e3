"""ctop.lb.ipvs_parse against output captured from a real IPVS kernel (tests/fixtures/ipvs/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctop.lb.base import LBError, ServerState
from ctop.lb.ipvs_parse import (
    IPVSParseError,
    TrafficCounts,
    Tunnel,
    merge,
    parse_list,
    parse_number,
    parse_proc_ip_vs,
    parse_rates,
    parse_service_key,
    parse_stats,
    parse_thresholds,
    parse_tun_info,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ipvs"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def section(name: str, title: str) -> str:
    """One '===== title' section of a multi-capture fixture file."""
    parts = fixture(name).split("===== ")
    for part in parts:
        head, _, body = part.partition("\n")
        if head.strip() == title:
            return body
    raise KeyError(title)


def by_key(services):
    return {s.key: s for s in services}


# ---- one NAT service, two real servers ----


def test_list_one_nat_service() -> None:
    (svc,) = parse_list(fixture("ipvsadm_Ln.txt"))
    assert (svc.key, svc.protocol, svc.address, svc.port) == (
        "TCP 10.0.0.1:80",
        "TCP",
        "10.0.0.1",
        80,
    )
    assert (svc.balancer, svc.scheduler, svc.persistent_s, svc.fwmark) == (
        "ipvs", "wlc", None, None
    )
    a, b = svc.servers
    assert (a.key, a.forward, a.weight, a.active_conns, a.inactive_conns) == (
        "10.0.0.2:80", "masq", 3, 0, 7,
    )  # fmt: skip
    assert (b.key, b.weight, b.inactive_conns, b.state) == (
        "10.0.0.3:80",
        2,
        5,
        ServerState.SERVING,
    )


def test_proc_lists_newest_first_but_we_return_ipvsadm_order() -> None:
    (svc,) = parse_proc_ip_vs(fixture("proc_net_ip_vs.txt"), hz=250)
    assert [rs.key for rs in svc.servers] == ["10.0.0.2:80", "10.0.0.3:80"]
    assert svc == parse_list(fixture("ipvsadm_Ln.txt"))[0]  # same data, hex decoded


def test_proc_drained_server() -> None:
    (svc,) = parse_proc_ip_vs(fixture("proc_net_ip_vs_drained.txt"), hz=250)
    drained = by_key([svc])["TCP 10.0.0.1:80"].servers[1]
    assert (drained.key, drained.weight, drained.state) == ("10.0.0.3:80", 0, ServerState.DRAINED)


def test_stats_exact() -> None:
    stats = parse_stats(fixture("ipvsadm_Ln_stats_exact.txt"))
    assert stats[("TCP 10.0.0.1:80", None)] == TrafficCounts(12, 72, 72, 4704, 6240)
    assert stats[("TCP 10.0.0.1:80", "10.0.0.2:80")] == TrafficCounts(7, 42, 42, 2744, 3640)


def test_rates_exact() -> None:
    rates = parse_rates(fixture("ipvsadm_Ln_rate_exact.txt"))
    assert rates[("TCP 10.0.0.1:80", "10.0.0.2:80")] == TrafficCounts(1, 3, 3, 198, 262)
    assert rates[("TCP 10.0.0.1:80", "10.0.0.3:80")].out_bytes == 190


def test_stats_rate_prints_only_stats_so_it_is_refused_as_rates() -> None:
    with pytest.raises(IPVSParseError, match="not ipvsadm -Ln --rate output"):
        parse_rates(fixture("ipvsadm_Ln_stats_rate_exact.txt"))


def test_merge_fills_rates_totals_and_thresholds() -> None:
    merged = merge(
        parse_list(fixture("ipvsadm_Ln.txt")),
        stats=parse_stats(fixture("ipvsadm_Ln_stats_exact.txt")),
        rates=parse_rates(fixture("ipvsadm_Ln_rate_exact.txt")),
    )
    rs = merged[0].servers[0]
    assert (rs.total_conns, rs.conns_per_s, rs.bytes_in_per_s, rs.bytes_out_per_s) == (
        7, 1.0, 198.0, 262.0,
    )  # fmt: skip


# ---- rich: UDP + persistence, sched flags, DR, IPv6, fwmark, tunnel, thresholds ----


def test_rich_list() -> None:
    svcs = by_key(parse_list(section("ipvsadm_rich.txt", "ipvsadm -Ln")))
    assert list(svcs) == [
        "TCP 10.0.0.1:80", "TCP 10.0.0.1:443", "UDP 10.0.0.1:53", "TCP [2001:db8::1]:80", "FWM 42",
    ]  # fmt: skip
    udp = svcs["UDP 10.0.0.1:53"]
    assert (udp.protocol, udp.scheduler, udp.persistent_s) == ("UDP", "rr", 300)
    assert svcs["TCP 10.0.0.1:443"].scheduler == "sh"
    assert svcs["TCP 10.0.0.1:443"].servers[0].forward == "route"
    v6 = svcs["TCP [2001:db8::1]:80"]
    assert (v6.address, v6.port) == ("2001:db8::1", 80)
    assert (v6.servers[0].key, v6.servers[0].address, v6.servers[0].port) == (
        "[2001:db8::2]:8080", "2001:db8::2", 8080,
    )  # fmt: skip
    fwm = svcs["FWM 42"]
    assert (fwm.protocol, fwm.fwmark, fwm.address, fwm.port) == ("FWM", 42, "", 0)
    assert [(rs.key, rs.forward, rs.weight) for rs in fwm.servers] == [
        ("10.0.0.2:0", "route", 5), ("10.0.0.3:0", "tunnel", 1),
    ]  # fmt: skip


def test_rich_proc_matches_ipvsadm_with_persistence_from_ticks() -> None:
    proc = by_key(parse_proc_ip_vs(section("proc_rich.txt", "/proc/net/ip_vs"), hz=250))
    listed = by_key(parse_list(section("ipvsadm_rich.txt", "ipvsadm -Ln")))
    assert proc["UDP 10.0.0.1:53"].persistent_s == 300  # 75000 ticks at HZ=250
    assert proc["FWM 42"].fwmark == 42
    for key, svc in listed.items():
        assert proc[key].servers == tuple(s for s in svc.servers), (
            key
        )  # same servers, same order, addresses decoded from hex


def test_rich_thresholds() -> None:
    th = parse_thresholds(section("ipvsadm_rich.txt", "ipvsadm -Ln --thresholds"))
    assert th[("TCP 10.0.0.1:443", "10.0.0.2:443")] == (100, 50)
    assert th[("FWM 42", "10.0.0.3:0")] == (0, 0)
    merged = by_key(merge(parse_list(section("ipvsadm_rich.txt", "ipvsadm -Ln")), thresholds=th))
    rs = merged["TCP 10.0.0.1:443"].servers[0]
    assert (rs.upper_threshold, rs.lower_threshold) == (100, 50)


def test_rich_rates_and_stats() -> None:
    rates = parse_rates(section("ipvsadm_rich.txt", "ipvsadm -Ln --rate --exact"))
    assert rates[("TCP 10.0.0.1:80", "10.0.0.2:80")] == TrafficCounts(0, 8, 9, 455, 123350)
    assert rates[("TCP [2001:db8::1]:80", "[2001:db8::2]:8080")] == TrafficCounts(0, 0, 0, 0, 0)
    stats = parse_stats(section("ipvsadm_rich.txt", "ipvsadm -Ln --stats --exact"))
    assert stats[("TCP 10.0.0.1:80", None)].out_bytes == 3014780
    # a single-service listing has no version line; it parses the same
    one = parse_stats(section("ipvsadm_rich.txt", "ipvsadm -Ln -t 10.0.0.1:80 --stats --exact"))
    assert one[("TCP 10.0.0.1:80", "10.0.0.3:80")] == TrafficCounts(5, 96, 100, 5442, 1206528)


# ---- tunnels, IPv6 fwmark, flags (captured in the VM: tunnel_capture.txt) ----


def test_tun_info_types_ports_and_checksums() -> None:
    tun = parse_tun_info(section("tunnel_capture.txt", "ipvsadm -Ln --tun-info --exact"))
    svc = "UDP 10.0.0.1:80"
    assert tun[(svc, "10.0.0.2:80")] == Tunnel("ipip")
    assert tun[(svc, "10.0.0.3:80")] == Tunnel("gue", 6080, "csum")
    assert tun[(svc, "10.0.0.4:80")] == Tunnel("gue", 6081, "remcsum")
    assert tun[(svc, "10.0.0.7:80")] == Tunnel("gue", 6082, "nocsum")
    assert tun[(svc, "10.0.0.5:80")] == Tunnel("gre", None, "nocsum")
    assert tun[("FWM 7 IPv6", "[2001:db8::5]:0")] == Tunnel("gre", None, "csum")
    assert (svc, "10.0.0.8:80") not in tun  # Masq: n/a
    # the flags ctop repeats on an edit are exactly what ipvsadm -S saves
    saved = section("tunnel_capture.txt", "ipvsadm -Sn")
    assert " ".join(tun[(svc, "10.0.0.3:80")].ipvsadm_args()) in saved
    assert " ".join(tun[(svc, "10.0.0.7:80")].ipvsadm_args()) in saved


def test_tun_info_listing_also_parses_as_list() -> None:
    svcs = by_key(parse_list(section("tunnel_capture.txt", "ipvsadm -Ln --tun-info --exact")))
    assert [rs.weight for rs in svcs["UDP 10.0.0.1:80"].servers] == [1, 2, 3, 4, 5, 6, 7]
    assert svcs["FWM 7 IPv6"].servers[0].forward == "tunnel"


def test_proc_ipv6_fwmark_is_recognised_by_its_servers() -> None:
    proc = by_key(parse_proc_ip_vs(section("tunnel_capture.txt", "/proc/net/ip_vs"), hz=250))
    assert proc["FWM 7 IPv6"].servers[0].key == "[2001:db8::5]:0"
    assert [rs.weight for rs in proc["UDP 10.0.0.1:80"].servers] == [1, 2, 3, 4, 5, 6, 7]


def test_service_flags_persistence_mask_ops() -> None:
    text = (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "UDP  10.0.0.1:80 rr persistent 60 mask 255.255.255.0 ops\n"
        "  -> 10.0.0.9:80                  Tunnel  3      0          0         \n"
        "SCTP 10.0.0.1:90 rr\n"
        "  -> 127.0.0.1:90                 Masq    1      0          0         \n"
    )
    udp, sctp = parse_list(text)
    assert (udp.scheduler, udp.persistent_s) == ("rr", 60)
    assert (sctp.key, sctp.protocol) == ("SCTP 10.0.0.1:90", "SCTP")
    proc = (
        "UDP  0A000001:0050 rr ops  persistent 15000 FFFFFF00\n  -> 0A000009:0050  Tunnel 3 0 0\n"
    )
    assert parse_proc_ip_vs(proc, hz=250)[0].persistent_s == 60
    assert parse_proc_ip_vs(proc, hz=1000)[0].persistent_s == 15


# ---- edge cases from edge.log ----


def _edge_server_line(weight_line: str) -> str:
    return (
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.0.0.1:80 wlc\n" + weight_line + "\n"
    )


def test_largest_weight_breaks_alignment_but_parses() -> None:
    lines = [ln for ln in fixture("edge.log").splitlines() if "Masq    2147483647" in ln]
    assert lines
    (svc,) = parse_list(_edge_server_line(lines[0]))
    rs = svc.servers[0]
    assert (rs.weight, rs.active_conns, rs.inactive_conns) == (2147483647, 0, 0)


def test_proc_as_nobody_with_largest_weight() -> None:
    log = fixture("edge.log")
    start = log.index("--- as nobody")
    proc = log[log.index("IP Virtual Server version", start) : log.index("rc=0", start)]
    (svc,) = parse_proc_ip_vs(proc, hz=250)
    assert (svc.key, svc.servers[0].key, svc.servers[0].weight) == (
        "TCP 10.0.0.1:80", "10.0.0.2:80", 2147483647,
    )  # fmt: skip


def test_empty_table_when_module_just_loaded() -> None:
    log = fixture("edge.log")
    start = log.index("--- ipvsadm -Ln with module not loaded")
    assert parse_list(log[log.index("IP Virtual Server", start) : log.index("rc=0", start)]) == []


def test_abbreviated_numbers_without_exact() -> None:
    assert parse_number("99999999") == 99999999
    assert parse_number("123K") == 123_000
    assert parse_number("4M") == 4_000_000
    assert parse_number("5G") == 5 * 10**9
    assert parse_number("6T") == 6 * 10**12
    text = (
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
        "  -> RemoteAddress:Port\n"
        "TCP  10.0.0.1:80                        12       72       72  123456K    3401M\n"
        "  -> 10.0.0.2:80                         7       42       42  123456K    3401M\n"
    )
    assert parse_stats(text)[("TCP 10.0.0.1:80", "10.0.0.2:80")].out_bytes == 3_401_000_000


# ---- keys and errors ----


def test_service_keys_normalise_addresses() -> None:
    assert parse_service_key("TCP [2001:0db8::0001]:80").key == "TCP [2001:db8::1]:80"
    assert parse_service_key("udp 10.0.0.1:53").ipvsadm_args() == ["-u", "10.0.0.1:53"]
    assert parse_service_key("FWM 7").ipvsadm_args() == ["-f", "7"]
    assert parse_service_key("FWM 7 IPv6").ipvsadm_args() == ["-f", "7", "-6"]
    assert parse_service_key("SCTP 10.0.0.1:90").ipvsadm_args() == ["--sctp-service", "10.0.0.1:90"]
    for bad in ("TCP", "ICMP 10.0.0.1:80", "TCP 10.0.0.1", "FWM x", "TCP 10.0.0.300:80"):
        with pytest.raises(ValueError):
            parse_service_key(bad)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("TCP  10.0.0.1:80 wlc\n  -> 10.0.0.2:80   Masq  x  0  0\n", r"line 2: not a number: 'x'"),
        ("TCP  10.0.0.1:80 wlc\n  -> 10.0.0.2:80   Bogus 1 0 0\n", r"line 2: unknown forwarding"),
        ("  -> 10.0.0.2:80   Masq  1  0  0\n", r"line 1: server before any service"),
        ("TCP  10.0.0.1 wlc\n", r"line 1: bad service"),
        ("TCP  10.0.0.1:80\n", r"line 1: no scheduler"),
        ("hello\n", r"line 1: neither a service nor a server line: 'hello'"),
        ("TCP  10.0.0.1:80 wlc\n  -> 10.0.0.2:80   Masq  1  0\n", r"line 2: want Forward"),
    ],
)
def test_parse_errors_name_the_line(text: str, match: str) -> None:
    with pytest.raises(IPVSParseError, match=match) as info:
        parse_list(text)
    assert isinstance(info.value, LBError)  # callers catch one exception type
