"""dns: one real query with dnspython over UDP (or TCP); NOERROR with an answer is ok."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from probes.checks.base import Attempt, ProbeFailure, describe, where
from probes.result import ProbeResult, fail, ok
from probes.spec import ProbeSpec


async def _address(host: str) -> str:
    """dnspython wants an IP; a server given by name is resolved once here."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ProbeFailure(f"cannot resolve server {host!r}: {describe(exc)}") from None
    return str(infos[0][4][0])


async def check_dns(spec: ProbeSpec, attempt: Attempt) -> ProbeResult:
    server = await _address(spec.host)
    qtype = dns.rdatatype.from_text(spec.qtype)
    query = dns.message.make_query(spec.query, qtype)
    proto = "TCP" if spec.tcp else "UDP"
    attempt.phase = f"waiting for DNS reply over {proto} from {where(spec)}"
    send = dns.asyncquery.tcp if spec.tcp else dns.asyncquery.udp
    try:
        reply = await send(query, server, timeout=attempt.remaining(), port=spec.port)
    except dns.exception.Timeout:
        raise ProbeFailure(f"timeout: no DNS reply over {proto} from {where(spec)}") from None
    except OSError as exc:
        raise ProbeFailure(f"DNS over {proto} to {where(spec)}: {describe(exc)}") from None
    except dns.exception.DNSException as exc:
        raise ProbeFailure(f"malformed DNS reply ({type(exc).__name__}): {exc}") from None

    latency = attempt.elapsed_ms()
    asked = f"{spec.query} {spec.qtype}"
    rcode = dns.rcode.to_text(reply.rcode())
    if reply.rcode() != dns.rcode.NOERROR:
        return fail(f"{rcode} for {asked}", latency)
    records = [rd.to_text() for rrset in reply.answer if rrset.rdtype == qtype for rd in rrset]
    if not records:
        return fail(f"NOERROR but no {spec.qtype} answer for {spec.query}", latency)
    shown = ", ".join(records[:3]) + (f" (+{len(records) - 3})" if len(records) > 3 else "")
    return ok(f"NOERROR {asked}: {shown}", latency)
