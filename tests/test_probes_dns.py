"""dns against dnsmasq: an existing name, NXDOMAIN, REFUSED, TCP, and broken peers."""

from __future__ import annotations

from probes import check, from_url
from tests.helpers.peers import DNS_ADDRESS, DNS_MISSING, DNS_NAME, DNS_TXT_ONLY, Peer


async def test_existing_name_udp(dns_server: Peer) -> None:
    result = await check(from_url(dns_server.url("dns", f"/{DNS_NAME}?type=A")))
    assert result.status == "ok"
    assert result.detail == f"NOERROR {DNS_NAME} A: {DNS_ADDRESS}"
    assert result.latency_ms is not None


async def test_existing_name_tcp(dns_server: Peer) -> None:
    result = await check(from_url(dns_server.url("dns", f"/{DNS_NAME}?tcp=1")))
    assert result.ok, result


async def test_nxdomain(dns_server: Peer) -> None:
    result = await check(from_url(dns_server.url("dns", f"/{DNS_MISSING}")))
    assert result.status == "fail"
    assert result.detail == f"NXDOMAIN for {DNS_MISSING} A"


async def test_refused_outside_local_zone(dns_server: Peer) -> None:
    # dnsmasq has no upstream, so it refuses what it is not authoritative for
    result = await check(from_url(dns_server.url("dns", "/www.example.org")))
    assert result.status == "fail" and result.detail.startswith("REFUSED")


async def test_name_without_that_record_type(dns_server: Peer) -> None:
    result = await check(from_url(dns_server.url("dns", f"/{DNS_TXT_ONLY}?type=A")))
    assert result.status == "fail"
    assert result.detail == f"NOERROR but no A answer for {DNS_TXT_ONLY}"
    assert (await check(from_url(dns_server.url("dns", f"/{DNS_TXT_ONLY}?type=TXT")))).ok


async def test_udp_silent_times_out(udp_silent: Peer) -> None:
    result = await check(from_url(udp_silent.url("dns", "/www.example.test?timeout=0.5")))
    assert result.status == "fail" and "timeout" in result.detail


async def test_tcp_silent_times_out(silent_server: Peer) -> None:
    result = await check(from_url(silent_server.url("dns", "/www.example.test?tcp=1&timeout=0.5")))
    assert result.status == "fail" and "timeout" in result.detail


async def test_tcp_closed_port(closed_port: int) -> None:
    result = await check(from_url(f"dns://127.0.0.1:{closed_port}/x.example.test?tcp=1"))
    assert result.status == "fail" and result.detail.endswith("connection refused")


async def test_wrong_protocol_udp(udp_junk: Peer) -> None:
    result = await check(from_url(udp_junk.url("dns", "/www.example.test?timeout=1")))
    assert result.status == "fail"
    assert result.detail.startswith("malformed DNS reply")


async def test_wrong_protocol_tcp(smtp_server: Peer) -> None:
    # "22" of the SMTP greeting reads as a 12850-byte length prefix: the rest never comes
    result = await check(from_url(smtp_server.url("dns", "/www.example.test?tcp=1&timeout=0.5")))
    assert result.status == "fail"
    assert result.detail.startswith("timeout after 0.5s waiting for DNS reply over TCP")
