"""Snapshots to plain data and back: for `ctop status --json` and the control socket."""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType
from typing import Any

from ctop.model import (
    Aggregate,
    AlertView,
    EventView,
    GroupView,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    ServiceView,
    Severity,
    Snapshot,
)

_NODE_FIELDS = NodeView._fields
_AGG_FIELDS = tuple(f.name for f in fields(Aggregate))


def _plain(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def to_plain(snap: Snapshot, *, metrics: bool = True) -> dict[str, Any]:
    """A JSON- and msgpack-ready dict. `metrics=False` leaves out each node's raw report."""
    nodes = []
    for n in snap.nodes:
        d = _plain(n, _NODE_FIELDS)
        d["liveness"] = str(n.liveness)
        d["services"] = [[s.name, s.status, s.latency_ms, s.detail] for s in n.services]
        d["addresses"] = list(n.addresses)
        d["cpu_history"] = list(n.cpu_history)
        d["metrics"] = dict(n.metrics) if metrics else {}
        nodes.append(d)
    return {
        "ts": snap.ts, "tick": snap.tick, "cluster": snap.cluster, "nodes": nodes,
        "groups": [{"name": g.name, "totals": _plain(g.totals, _AGG_FIELDS)}
                   for g in snap.groups],
        "totals": _plain(snap.totals, _AGG_FIELDS),
        "alerts": [{"key": a.key, "rule": a.rule, "node_id": a.node_id,
                    "severity": str(a.severity), "message": a.message, "since": a.since,
                    "value": a.value} for a in snap.alerts],
        "events": [[e.ts, e.kind, e.node_id, e.message] for e in snap.events],
        "lb": [{"key": s.key, "backend": s.backend, "protocol": s.protocol,
                "scheduler": s.scheduler, "imbalance": s.imbalance, "basis": s.basis,
                "servers": [_plain(r, tuple(f.name for f in fields(RealServerView)))
                            for r in s.servers]} for s in snap.lb],
        "lb_note": snap.lb_note, "lb_error": snap.lb_error, "imbalance": snap.imbalance,
        "drops": dict(snap.drops), "received": snap.received, "readonly": snap.readonly,
    }


def from_plain(d: dict[str, Any]) -> Snapshot:
    nodes = []
    for n in d["nodes"]:
        n = dict(n)
        n["liveness"] = Liveness(n["liveness"])
        n["services"] = tuple(ServiceView(*s) for s in n["services"])
        n["addresses"] = tuple(n["addresses"])
        n["cpu_history"] = tuple(n["cpu_history"])
        n["metrics"] = MappingProxyType(n.get("metrics") or {})
        nodes.append(NodeView(**{k: v for k, v in n.items() if k in _NODE_FIELDS}))
    views = tuple(nodes)
    return Snapshot(
        ts=d["ts"], tick=d["tick"], cluster=d["cluster"], nodes=views,
        groups=tuple(GroupView(g["name"], Aggregate(**g["totals"])) for g in d["groups"]),
        totals=Aggregate(**d["totals"]),
        alerts=tuple(AlertView(a["key"], a["rule"], a["node_id"], Severity(a["severity"]),
                               a["message"], a["since"], a["value"]) for a in d["alerts"]),
        events=tuple(EventView(*e) for e in d["events"]),
        lb=tuple(LBServiceView(s["key"], s["backend"], s["protocol"], s["scheduler"],
                               tuple(RealServerView(**r) for r in s["servers"]), s["imbalance"],
                               s.get("basis", "conns"))
                 for s in d["lb"]),
        lb_note=d["lb_note"], lb_error=d["lb_error"], imbalance=d["imbalance"],
        drops=MappingProxyType(d["drops"]), received=d["received"], readonly=d["readonly"],
        _index=Snapshot.index_of(views),
    )
