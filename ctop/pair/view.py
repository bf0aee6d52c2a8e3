"""What the snapshot carries about the director pair: plain, immutable, no I/O.

ctop.snapshot imports this module, so it imports nothing of ctop (the UI, `ctop status` and the
codec only read these views; ctop.pair.monitor makes them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MASTER, BACKUP, FAULT = "MASTER", "BACKUP", "FAULT"
UNKNOWN = "unknown"  # nothing heard: keepalived not running, no peer information


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One VRRP instance of this director's keepalived."""

    name: str  # keepalived's iname, e.g. "VI_1"
    state: str  # MASTER | BACKUP | FAULT | INIT | STOP | unknown
    priority: int = 0  # effective priority
    base_priority: int = 0
    master_priority: int = 0  # the priority in the master's adverts, as this keepalived saw it
    vrid: int = 0
    vips: tuple[str, ...] = ()  # the instance's virtual IPs ("10.0.0.100/24")
    vips_held: tuple[str, ...] = ()  # those keepalived has set on the interface now
    last_transition: float = 0.0  # Unix seconds (keepalived's clock)
    adverts_received: int = 0


@dataclass(frozen=True, slots=True)
class SyncDaemonView:
    """One IPVS connection-sync daemon (`ipvsadm --list --daemon`)."""

    role: str  # master | backup
    mcast_interface: str
    syncid: int
    maxlen: int = 0
    group: str = ""
    port: int = 0
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class PairView:
    """This director's VRRP role and its peer's, as `ctop serve` last read them."""

    role: str = UNKNOWN  # this director's role over all its instances (see summary_role)
    peer_role: str = UNKNOWN
    peer_source: str = ""  # where peer_role comes from: "vrrp adverts", "peer ctop …"
    peer_seen: float = 0.0  # when peer_role was last confirmed (Unix seconds)
    instances: tuple[InstanceView, ...] = ()
    peer_instances: tuple[tuple[str, str], ...] = ()  # (instance, role) of the peer, if known
    sync_daemons: tuple[SyncDaemonView, ...] = ()
    sync_error: str = ""  # why the sync daemon's state could not be read
    error: str = ""  # why keepalived's state could not be read ("" = it was)
    read_at: float = 0.0  # when keepalived's state was last read

    def to_plain(self) -> dict[str, Any]:
        d = asdict(self)
        d["instances"] = [asdict(i) | {"vips": list(i.vips), "vips_held": list(i.vips_held)}
                          for i in self.instances]
        d["peer_instances"] = [list(p) for p in self.peer_instances]
        d["sync_daemons"] = [asdict(s) for s in self.sync_daemons]
        return d

    @classmethod
    def from_plain(cls, d: dict[str, Any] | None) -> PairView | None:
        if not d:
            return None
        known = {k: v for k, v in d.items() if k in cls.__slots__}  # a newer daemon's extras
        known["instances"] = tuple(
            InstanceView(**{**i, "vips": tuple(i.get("vips", ())),
                            "vips_held": tuple(i.get("vips_held", ()))})
            for i in d.get("instances", ()))
        known["peer_instances"] = tuple((str(a), str(b)) for a, b in d.get("peer_instances", ()))
        known["sync_daemons"] = tuple(SyncDaemonView(**s) for s in d.get("sync_daemons", ()))
        return cls(**known)

    def text(self) -> str:
        """One line for `ctop status`: 'VRRP this MASTER (VI_1 MASTER prio 150), peer BACKUP'."""
        inst = ", ".join(f"{i.name} {i.state} prio {i.priority}" for i in self.instances)
        line = f"pair: this director {self.role}" + (f" ({inst})" if inst else "")
        line += f", peer {self.peer_role}" + (f" ({self.peer_source})" if self.peer_source else "")
        if self.error:
            line += f"; keepalived: {self.error}"
        return line


def summary_role(states: list[str]) -> str:
    """A director's role over its instances: MASTER or BACKUP if all agree, FAULT if any is
    in fault, MIXED when some are MASTER and some BACKUP (an operator's split by design or
    a half-failover), unknown with none."""
    if not states:
        return UNKNOWN
    if FAULT in states:
        return FAULT
    distinct = set(states)
    if len(distinct) == 1:
        return states[0]
    return "MIXED" if {MASTER, BACKUP} <= distinct else sorted(distinct)[0]
