"""The pair's alerts: no director MASTER of a VRRP instance, or both (split brain).

Judged on each tick's PairView, per instance; a condition must hold `HOLD` seconds (a clean
failover passes through both in under a second: the old MASTER sends priority 0 and the
BACKUP takes over at once). FAULT, STOP and unknown count as not MASTER. Firing and resolving
are events and notifications for the hooks, as the rules' alerts are (ctop.alerts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctop.alerts import Notification
from ctop.pair.view import MASTER, UNKNOWN, PairView
from ctop.snapshot import AlertView, EventView, Severity

HOLD = 2.0  # seconds a condition lasts before it alerts
RULE = "vrrp_pair"


def _breaches(view: PairView) -> dict[str, str]:
    """alert key -> message."""
    out = {}
    peer = dict(view.peer_instances)
    names = [i.name for i in view.instances] + sorted(set(peer) - {
        i.name for i in view.instances})
    mine = {i.name: i.state for i in view.instances}
    for name in names:
        here, there = mine.get(name, view.role), peer.get(name, UNKNOWN)
        if here == MASTER and there == MASTER:
            out[f"{RULE}:{name}:both"] = (f"VRRP {name}: both directors are MASTER "
                                          f"(split brain; peer from {view.peer_source})")
        elif here != MASTER and there != MASTER:
            out[f"{RULE}:{name}:none"] = (f"VRRP {name}: no director is MASTER (this "
                                          f"director {here}, peer {there})")
    if not names and view.error:  # keepalived not running here and nothing from the peer
        out[f"{RULE}:*:none"] = f"VRRP: no director known to be MASTER ({view.error})"
    return out


@dataclass
class PairAlerts:
    cluster: str = "cluster"
    _pending: dict[str, float] = field(default_factory=dict)
    _active: dict[str, AlertView] = field(default_factory=dict)

    def evaluate(self, view: PairView, now: float
                 ) -> tuple[list[EventView], list[Notification]]:
        breaches = _breaches(view)
        events: list[EventView] = []
        notes: list[Notification] = []
        for key in [k for k in self._pending if k not in breaches]:
            del self._pending[key]
        for key, text in breaches.items():
            if now - self._pending.setdefault(key, now) < HOLD:
                continue
            active = self._active.get(key)
            alert = AlertView(key, RULE, "", Severity.CRIT, text,
                              active.since if active else now)
            self._active[key] = alert
            if active is None:
                events.append(EventView(now, "alert", "", f"[crit] {text}"))
                notes.append(Notification("firing", alert, self.cluster, now))
        for key in [k for k in self._active if k not in breaches]:
            gone = self._active.pop(key)
            events.append(EventView(now, "resolved", "", f"resolved: {gone.message}"))
            notes.append(Notification("resolved", gone, self.cluster, now))
        return events, notes

    def firing(self) -> tuple[AlertView, ...]:
        return tuple(sorted(self._active.values(), key=lambda a: (a.since, a.key)))
