"""The one interface every balancer (load-balancer driver) implements, and the data it returns.

Backends are IPVS (ctop.lb.ipvs) and HAProxy (ctop.lb.haproxy). Everything above this layer
(actions, automation, advice, the engine and the UI) speaks only these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ServerState(StrEnum):
    SERVING = "serving"  # weight > 0 and up
    DRAINED = "drained"  # no new connections (IPVS weight 0, HAProxy state drain)
    QUIESCED = "quiesced"  # drained by automation (auto-quiesce), not by an operator
    MAINT = "maint"  # HAProxy maintenance: taken out entirely
    DOWN = "down"  # the balancer's own health check says down


@dataclass(frozen=True, slots=True)
class RealServer:
    """One real server (IPVS destination / HAProxy server) as the balancer reports it."""

    key: str  # stable id inside its service: "10.0.0.2:80" (IPVS) or the server name (HAProxy)
    address: str  # IP address (no brackets for IPv6)
    port: int
    weight: int
    state: ServerState
    active_conns: int = 0
    inactive_conns: int = 0
    conns_per_s: float = 0.0  # new connections per second
    total_conns: int = 0
    bytes_in_per_s: float = 0.0
    bytes_out_per_s: float = 0.0
    forward: str = ""  # IPVS: "masq" | "route" | "tunnel"; HAProxy: ""
    upper_threshold: int = 0  # IPVS -x (0 = none)
    lower_threshold: int = 0  # IPVS -y (0 = none)


@dataclass(frozen=True, slots=True)
class VirtualService:
    """One virtual service (IPVS service / HAProxy backend) with its real servers."""

    # stable id: "TCP 10.0.0.1:80", "FWM 7", "UDP [2001:db8::1]:53" or the HAProxy backend name
    key: str
    balancer: str  # the balancer's name: "ipvs", "haproxy" (ctop lb --balancer)
    protocol: str  # "TCP" | "UDP" | "SCTP" | "FWM" | "HTTP" ...
    address: str
    port: int
    scheduler: str = ""
    persistent_s: int | None = None
    fwmark: int | None = None
    servers: tuple[RealServer, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection (or IPVS persistence template) to a real server, for the `c` view and
    `drain --wait`."""

    client: str  # "172.16.0.2:41684"; a template's client port is 0
    virtual: str  # "10.0.0.1:80" (IPVS) or the frontend name (HAProxy)
    server: str  # the real server's key
    protocol: str = ""  # "TCP", "UDP", "IP" (a firewall-mark template)
    state: str = ""  # ESTABLISHED, TIME_WAIT, ... (IPVS); NONE/ASSURED for a template
    expires_s: float | None = None  # IPVS: seconds until the entry expires
    age_s: float | None = None  # HAProxy: seconds since the session started
    template: bool = False  # an IPVS persistence template: the client sticks to this server


class LBError(Exception):
    """A balancer command failed. `message` is the tool's own words, shown to the operator."""

    def __init__(self, message: str, *, command: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.command = command


class Balancer(Protocol):
    """What ctop needs from a load balancer."""

    name: str  # "ipvs" | "haproxy"
    max_weight: int  # IPVS 2**31-1, HAProxy 256
    # Why this balancer can't take a server into maintenance ("" = it can): the controller
    # refuses `maint` with these words before sending anything.
    no_maint: str

    def services(self) -> list[VirtualService]:
        """Read the current table. Raises LBError."""
        ...

    def set_weight(self, service_key: str, server_key: str, weight: int) -> None:
        """Set one real server's weight, keeping everything else about it. Raises LBError."""
        ...

    def drain(self, service_key: str, server_key: str) -> None:
        """Stop new connections to the server; existing ones finish. Raises LBError."""
        ...

    def maint(self, service_key: str, server_key: str) -> None:
        """Take the server out entirely: no traffic at all, not even sticky sessions (HAProxy
        `state maint`). Raises LBError; a balancer without such a state (`no_maint`) raises
        before changing anything."""
        ...

    def ready(self, service_key: str, server_key: str, weight: int) -> None:
        """Put a drained (or maintenance) server back in service at `weight`. Raises LBError."""
        ...
