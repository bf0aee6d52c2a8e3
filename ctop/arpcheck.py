"""DR and TUN sanity: is each real server of a direct-routing or tunnelling IPVS service set up
so that it accepts the virtual IP's packets without answering ARP for it? (seed 003)

A real server behind a `route` (DR) or `tunnel` (TUN) service must:
- hold the VIP on an interface that does not do ARP: lo, or a tunnel (IFF_NOARP);
- not hold it on an ARP interface (it would answer ARP for the VIP and steal its traffic);
- on every ARP interface, arp_ignore >= 1 and arp_announce = 2, where the kernel applies the
  larger of conf/all and conf/<iface>.
The facts come from the node's agent (agentd/arpfacts.py, metric "arp"); the forwarding
method and the VIP from the director's IPVS table. `findings` is pure: the alert rule kind
`arp_check` (ctop.alerts) raises one alert per misconfigured real server, naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agentd.arpfacts import ALL, LOOPBACK, NOARP
from ctop.lb.ipvs_parse import parse_service_key
from ctop.snapshot import LBServiceView, NodeView

CHECKED = ("route", "tunnel")  # forwarding methods that deliver the VIP itself to the server
NEEDS_IGNORE, NEEDS_ANNOUNCE = 1, 2


@dataclass(frozen=True, slots=True)
class Finding:
    node_id: str
    address: str  # the real server's address in the IPVS table
    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        return f"{self.node_id} ({self.address}): {'; '.join(self.problems)}"


def _vip(service_key: str) -> str | None:
    try:
        return parse_service_key(service_key).address or None
    except ValueError:
        return None  # not an IPVS key (a HAProxy backend)


def problems(arp: Sequence[Sequence[Any]], vips: Iterable[str]) -> list[str]:
    """What is wrong on a node with these ARP facts for these VIPs ([] = nothing)."""
    entries = {e[0]: e for e in arp}
    every = entries.get(ALL)
    ifaces = [e for name, e in entries.items() if name != ALL]
    silent = {e[0] for e in ifaces if e[1] & (LOOPBACK | NOARP)}
    out: list[str] = []
    for vip in vips:
        held = [e[0] for e in ifaces if vip in e[4]]
        loud = [name for name in held if name not in silent]
        if loud:
            out.append(f"VIP {vip} on {', '.join(loud)} (answers ARP for it)")
        elif not held:
            out.append(f"VIP {vip} not on lo or a tunnel")
    for e in ifaces:
        if e[0] in silent:
            continue
        ignore = max(e[2], every[2] if every else -1)
        announce = max(e[3], every[3] if every else -1)
        if ignore < 0 or announce < 0:
            out.append(f"ARP sysctls of {e[0]} unreadable")
            continue
        if ignore < NEEDS_IGNORE:
            out.append(f"arp_ignore={ignore} on {e[0]} (needs {NEEDS_IGNORE})")
        if announce < NEEDS_ANNOUNCE:
            out.append(f"arp_announce={announce} on {e[0]} (needs {NEEDS_ANNOUNCE})")
    return out


def findings(nodes: Iterable[NodeView], lb: Iterable[LBServiceView]) -> list[Finding]:
    """One finding per real server of a DR/TUN service whose node's facts are wrong. Nodes that
    report no ARP facts (an older agent, not Linux) are not judged."""
    return findings_in({n.node_id: n for n in nodes}.get, lb)


def findings_in(
    node_of: Callable[[str], NodeView | None], lb: Iterable[LBServiceView]
) -> list[Finding]:
    """findings() with the nodes looked up by id (the alert engine's views: no pass over
    every node), only those of the real servers of DR/TUN services."""
    vips: dict[tuple[str, str], list[str]] = {}  # (node, real server address) -> VIPs
    for svc in lb:
        vip = _vip(svc.key)
        if vip is None:
            continue  # fwmark services name no VIP
        for rs in svc.servers:
            if rs.forward in CHECKED and rs.node_id:
                wanted = vips.setdefault((rs.node_id, rs.address), [])
                if vip not in wanted:
                    wanted.append(vip)
    if not vips:
        return []
    out = []
    for (node_id, address), wanted in vips.items():
        node = node_of(node_id)
        arp = node.metrics.get("arp") if node is not None else None
        if not arp:
            continue
        found = problems(arp, wanted)
        if found:
            out.append(Finding(node_id, address, tuple(found)))
    return out
