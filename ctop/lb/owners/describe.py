"""One line saying who else owns each table and how ctop keeps its changes there, for the LB
pane's note and `ctop status` ("owners: ipvs TCP 10.1.0.1:80 by keepalived (pid 812,
/etc/keepalived/keepalived.conf): 1 virtual server; haproxy keeps state in
/var/lib/haproxy/server-state")."""

from __future__ import annotations

from collections.abc import Callable

from ctop.lb.owners.detect import TableOwner, detect
from ctop.lb.owners.haproxy_state import HAProxyStateFile


def owners_line(ipvs: bool, state_files: list[HAProxyStateFile],
                find: Callable[[], list[TableOwner]] = detect) -> str:
    parts = []
    if ipvs:
        try:
            owners = find()
        except (OSError, ValueError) as exc:  # never stops a round: the note says so
            return f"owners: ipvs unknown ({exc})"
        parts += [f"ipvs by {o.text()}" for o in owners]
        if not owners:
            parts.append("ipvs: no keepalived or ldirectord owns it")
    parts += [f"{k.balancer.name} keeps state in {k.describe()}" for k in state_files]
    return "owners: " + "; ".join(parts) if parts else ""
