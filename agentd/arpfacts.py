"""The node's addresses per interface and its ARP sysctls: what an LVS real server in DR or TUN
mode must get right (seed 003, "the ARP problem").

Behind an IPVS service that forwards by direct routing or tunnelling, a real server receives
packets addressed to the virtual IP: it must hold the VIP on an interface that never answers
ARP for it (lo, or a tunnel), and its ARP-answering interfaces must neither answer for the VIP
(`arp_ignore` >= 1) nor announce it as a source (`arp_announce` = 2). The kernel applies the
larger of conf/all and conf/<iface>. The director checks these facts against its IPVS table
(ctop/arpcheck.py); the agent only reports them, as a slow fact (sent on change).

One entry per interface holding an address other than loopback's own (127/8, ::1) or IPv6
link-local, and one for "all": (name, flags, arp_ignore, arp_announce, addresses).
"""

from __future__ import annotations

import ipaddress
import socket

import psutil

LOOPBACK = 1  # flags: the interface is a loopback (IFF_LOOPBACK)
NOARP = 2  # flags: the interface does not do ARP (IFF_NOARP: tunnels)
IFF_LOOPBACK, IFF_NOARP = 0x8, 0x80
MAX_IFACES = 16  # the datagram stays small on hosts with many interfaces
MAX_IFACE_ADDRS = 8
ALL = "all"

# (interface, LOOPBACK|NOARP flags, arp_ignore, arp_announce, addresses)
ArpEntry = tuple[str, int, int, int, list[str]]


def _read_int(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip(), 0)
    except (OSError, ValueError):
        return -1  # unknown (no IPv4 conf for it, or not Linux)


def _flags(iface: str) -> int:
    raw = _read_int(f"/sys/class/net/{iface}/flags")
    if raw < 0:
        return 0
    return (LOOPBACK if raw & IFF_LOOPBACK else 0) | (NOARP if raw & IFF_NOARP else 0)


def _sysctl(iface: str, name: str) -> int:
    return _read_int(f"/proc/sys/net/ipv4/conf/{iface}/{name}")


def _kept(address: str) -> str | None:
    text = address.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.is_loopback or (ip.version == 6 and ip.is_link_local):
        return None
    return text


def read() -> list[ArpEntry]:
    """The node's ARP facts now (cheap: one getifaddrs and a few small /proc and /sys files)."""
    out: list[ArpEntry] = [
        (ALL, 0, _sysctl(ALL, "arp_ignore"), _sysctl(ALL, "arp_announce"), [])]
    for iface, addrs in sorted(psutil.net_if_addrs().items()):
        kept = [a for a in (_kept(x.address) for x in addrs
                            if x.family in (socket.AF_INET, socket.AF_INET6)) if a]
        if not kept:
            continue
        out.append((iface, _flags(iface), _sysctl(iface, "arp_ignore"),
                    _sysctl(iface, "arp_announce"), kept[:MAX_IFACE_ADDRS]))
        if len(out) > MAX_IFACES:
            break
    return out
