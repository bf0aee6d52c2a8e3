"""http and https: one GET with httpx, status and optional body string, TLS certificate expiry."""

from __future__ import annotations

import functools
import ssl
from datetime import UTC, datetime

import httpx

from probes.checks import x509
from probes.checks.base import Attempt, ProbeFailure, describe, where
from probes.result import ProbeResult, fail, ok, warn
from probes.spec import ProbeSpec

BODY_LIMIT = 1 << 20  # the receive string must appear in the first MiB
USER_AGENT = "ctop-probe/1"


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    """Loading the CA store costs tens of ms of CPU: do it once, not per check."""
    return ssl.create_default_context()


def _expected(spec: ProbeSpec, code: int) -> tuple[bool, str]:
    if spec.expect:
        return code in spec.expect, "/".join(map(str, spec.expect))
    return 200 <= code < 400, "2xx/3xx"


def _cause(exc: BaseException) -> BaseException:
    """httpx wraps the socket or TLS error; the innermost one reads best."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _cert_days(response: httpx.Response) -> float | None:
    stream = response.extensions.get("network_stream")
    tls = stream.get_extra_info("ssl_object") if stream is not None else None
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        return None
    expires = x509.not_after(der)
    return (expires - datetime.now(UTC)).total_seconds() / 86400.0


async def _body_has(response: httpx.Response, needle: bytes) -> bool:
    seen = b""
    async for chunk in response.aiter_bytes():
        # keep only a tail long enough to catch a needle split across chunks
        seen = seen[-len(needle) :] + chunk
        if needle in seen:
            return True
        if response.num_bytes_downloaded >= BODY_LIMIT:
            return False
    return False


async def check_http(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    https = spec.type == "https"
    url = f"{spec.type}://{where(spec)}{spec.path}"
    headers = {"User-Agent": USER_AGENT, "Connection": "close"}
    extensions: dict[str, str] = {}
    if spec.virtualhost:
        headers["Host"] = spec.virtualhost
        if https:
            extensions["sni_hostname"] = spec.virtualhost
    verify: ssl.SSLContext | bool = _verifying_context() if spec.verify else False
    timeout = httpx.Timeout(spec.timeout, connect=spec.connect_limit)
    attempt.phase = f"waiting for HTTP response from {where(spec)}"
    cert_days: float | None = None
    try:
        async with httpx.AsyncClient(
            verify=verify, timeout=timeout, trust_env=False, follow_redirects=False
        ) as client:
            request = client.build_request("GET", url, headers=headers, extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                if https:
                    cert_days = _cert_days(response)
                attempt.phase = "reading HTTP body"
                found = True
                if spec.receive is not None:
                    found = await _body_has(response, spec.receive.encode())
            finally:
                await response.aclose()
    except httpx.ConnectTimeout:
        raise ProbeFailure(
            f"connect timeout after {spec.connect_limit:g}s to {where(spec)}"
        ) from None
    except httpx.TimeoutException:
        raise ProbeFailure(f"timeout after {spec.timeout:g}s {attempt.phase}") from None
    except httpx.ConnectError as exc:
        cause = _cause(exc)
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or cause
            raise ProbeFailure(f"TLS handshake with {where(spec)} failed: {reason}") from None
        raise ProbeFailure(f"connect to {where(spec)} failed: {describe(cause)}") from None
    except httpx.RemoteProtocolError as exc:
        raise ProbeFailure(f"not HTTP: {exc}") from None
    except httpx.HTTPError as exc:
        raise ProbeFailure(f"HTTP error: {describe(_cause(exc))}") from None
    except ValueError as exc:  # certificate we could not read
        raise ProbeFailure(f"bad TLS certificate: {exc}") from None

    latency = attempt.elapsed_ms()
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    good, wanted = _expected(spec, response.status_code)
    if not good:
        return fail(f"{status} (expected {wanted})", latency)
    if not found:
        return fail(f"{status}, body lacks {spec.receive!r}", latency)
    if cert_days is None:
        return ok(status, latency) if not https else warn(f"{status}, no certificate", latency)
    days = int(cert_days // 1)
    if cert_days < 0:
        return fail(f"{status}, certificate expired {-days}d ago", latency)
    if cert_days < spec.cert_warn_days:
        return warn(f"{status}, certificate expires in {days}d (< {spec.cert_warn_days}d)", latency)
    return ok(f"{status}, certificate {days}d left", latency)
