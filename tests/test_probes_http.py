"""http and https against Python's http.server (plain and TLS with a runtime self-signed cert)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from probes import check, from_table, from_url
from probes.checks import x509
from tests.helpers.peers import TLS_CERT_DAYS, Peer, TlsCert


async def test_healthy_http(http_server: Peer) -> None:
    result = await check(from_url(http_server.url("http", "/health?receive=healthy")))
    assert result.status == "ok"
    assert result.detail == "HTTP 200 OK"
    assert result.latency_ms is not None


async def test_redirect_counts_as_up_by_default(http_server: Peer) -> None:
    result = await check(from_url(http_server.url("http", "/redirect")))
    assert result.status == "ok" and result.detail == "HTTP 302 Found"


async def test_wrong_status(http_server: Peer) -> None:
    result = await check(from_url(http_server.url("http", "/missing")))
    assert result.status == "fail"
    assert result.detail == "HTTP 404 Not Found (expected 2xx/3xx)"
    assert result.latency_ms is not None  # the server did answer


async def test_explicit_expected_status(http_server: Peer) -> None:
    assert (await check(from_url(http_server.url("http", "/missing?expect=404")))).ok
    result = await check(from_url(http_server.url("http", "/redirect?expect=200")))
    assert result.status == "fail" and result.detail == "HTTP 302 Found (expected 200)"


async def test_missing_body_string(http_server: Peer) -> None:
    result = await check(from_url(http_server.url("http", "/health?receive=database%20up")))
    assert result.status == "fail"
    assert result.detail == "HTTP 200 OK, body lacks 'database up'"


async def test_host_header(http_server: Peer) -> None:
    spec = from_table(
        {
            "url": http_server.url("http", "/vhost"),
            "virtualhost": "www.example.test",
            "receive": "vhost=www.example.test",
        }
    )
    assert (await check(spec)).ok


async def test_closed_port(closed_port: int) -> None:
    for scheme in ("http", "https"):
        result = await check(from_url(f"{scheme}://127.0.0.1:{closed_port}/?timeout=2"))
        assert result.status == "fail"
        assert result.detail == f"connect to 127.0.0.1:{closed_port} failed: connection refused"


async def test_silent_server(silent_server: Peer) -> None:
    result = await check(from_url(silent_server.url("http", "/?timeout=0.5")))
    assert result.status == "fail"
    assert result.detail.startswith("timeout after 0.5s waiting for HTTP response")


async def test_connect_timeout(blackhole_server: Peer) -> None:
    result = await check(from_url(blackhole_server.url("http", "/?timeout=2&connect_timeout=0.3")))
    assert result.status == "fail" and result.detail.startswith("connect timeout after 0.3s")


async def test_wrong_protocol(smtp_server: Peer) -> None:
    result = await check(from_url(smtp_server.url("http", "/?timeout=2")))
    assert result.status == "fail"
    assert result.detail.startswith("not HTTP:")


async def test_https_reports_certificate_days(https_server: Peer) -> None:
    result = await check(from_url(https_server.url("https", "/health?cert_warn_days=5")))
    assert result.status == "ok"
    assert result.detail == f"HTTP 200 OK, certificate {TLS_CERT_DAYS - 1}d left"


async def test_https_warns_before_expiry(https_server: Peer) -> None:
    result = await check(from_url(https_server.url("https", "/health")))  # default: warn < 14d
    assert result.status == "warn"
    assert result.detail == f"HTTP 200 OK, certificate expires in {TLS_CERT_DAYS - 1}d (< 14d)"


async def test_https_verify_rejects_self_signed(https_server: Peer) -> None:
    result = await check(from_url(https_server.url("https", "/health?verify=1&timeout=2")))
    assert result.status == "fail"
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail


async def test_https_against_plain_http(http_server: Peer) -> None:
    result = await check(from_url(http_server.url("https", "/?timeout=2")))
    assert result.status == "fail"
    assert result.detail.startswith(f"TLS handshake with 127.0.0.1:{http_server.port} failed")


async def test_https_wrong_status_still_fails(https_server: Peer) -> None:
    result = await check(from_url(https_server.url("https", "/missing?cert_warn_days=1")))
    assert result.status == "fail" and result.detail.startswith("HTTP 404")


def test_x509_reads_not_after(tls_cert: TlsCert) -> None:
    import ssl

    der = ssl.PEM_cert_to_DER_cert(tls_cert.cert.read_text())
    days = (x509.not_after(der) - datetime.now(UTC)).total_seconds() / 86400
    assert TLS_CERT_DAYS - 1 < days <= TLS_CERT_DAYS
    with pytest.raises(ValueError):
        x509.not_after(b"\x30\x03\x02\x01\x01")
