"""Static facts about the node, announced in every join message."""

from __future__ import annotations

import ipaddress
import socket

import psutil


def addresses() -> tuple[str, ...]:
    """All IP addresses of the node, IPv4 first; link-local IPv6 and loopback are left out
    (loopback only when there is nothing else, so a director still gets one address)."""
    found: list[str] = []
    loopback: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = a.address.split("%", 1)[0]  # fe80::1%eth0 -> fe80::1
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback:
                loopback.append(text)
            elif not (ip.version == 6 and ip.is_link_local) and text not in found:
                found.append(text)
    found.sort(key=lambda t: (":" in t, t))
    return tuple(found or loopback)


def cores() -> int:
    return psutil.cpu_count(logical=True) or 1


def mem_total() -> int:
    return psutil.virtual_memory().total
