"""Snapshots to plain data and back: for `ctop status --json` and the control socket.

`to_plain` / `from_plain`: one dict per node, JSON-ready, for scripts. `pack_compact` /
`unpack_compact`: what an attached UI fetches every second. At 10,000 nodes the plain form is
11 MB and ~1.4 s of CPU to encode and decode; the compact one sends nodes as positional rows
(NodeView and ServiceView are tuples, which msgpack packs as arrays in C) and the raw metrics
of only the nodes the UI asks for (the node detail on screen).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import fields
from types import MappingProxyType
from typing import Any

import msgpack

from ctop.pair.view import PairView
from ctop.snapshot import (
    EMPTY,
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
_RS_FIELDS = tuple(f.name for f in fields(RealServerView))
_tuple_new = tuple.__new__


def _plain(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def to_plain(snap: Snapshot, *, metrics: bool = True, nodes: bool = True) -> dict[str, Any]:
    """A JSON- and msgpack-ready dict. `metrics=False` leaves out each node's raw report,
    `nodes=False` the nodes altogether."""
    return {
        "ts": snap.ts, "tick": snap.tick, "cluster": snap.cluster,
        "nodes": ([_plain_node(n, metrics, snap.load_share(n)) for n in snap.nodes]
                  if nodes else []),
        "groups": [{"name": g.name, "totals": _plain(g.totals, _AGG_FIELDS)}
                   for g in snap.groups],
        "totals": _plain(snap.totals, _AGG_FIELDS),
        "alerts": [{"key": a.key, "rule": a.rule, "node_id": a.node_id,
                    "severity": str(a.severity), "message": a.message, "since": a.since,
                    "value": a.value, "muted": a.muted, "muted_by": a.muted_by,
                    "muted_until": a.muted_until, "muted_note": a.muted_note}
                   for a in snap.alerts],
        "events": [[e.ts, e.kind, e.node_id, e.message] for e in snap.events],
        # the balancer's name keeps the key "backend": older attached UIs, `status --json`
        "lb": [{"key": s.key, "backend": s.balancer, "protocol": s.protocol,
                "scheduler": s.scheduler, "imbalance": s.imbalance, "basis": s.basis,
                "servers": [_plain(r, _RS_FIELDS) for r in s.servers],
                "share_history": {k: [list(p) for p in v] for k, v in s.share_history.items()}}
               for s in snap.lb],
        "lb_note": snap.lb_note, "lb_error": snap.lb_error, "imbalance": snap.imbalance,
        "drops": dict(snap.drops), "received": snap.received, "readonly": snap.readonly,
        "history_error": snap.history_error,
        "history_failing_since": snap.history_failing_since,
        "drop_sources": {k: [list(p) for p in v] for k, v in snap.drop_sources.items()},
        "pair": snap.pair.to_plain() if snap.pair is not None else None,
    }


def _plain_node(n: NodeView, metrics: bool, load_share: float) -> dict[str, Any]:
    d = _plain(n, _NODE_FIELDS)
    d["load_share"] = load_share  # the snapshot's (Snapshot.load_share), kept for scripts
    d["liveness"] = str(n.liveness)
    d["services"] = [list(s) for s in n.services]
    d["addresses"] = list(n.addresses)
    d["cpu_history"] = list(n.cpu_history)
    d["metrics"] = dict(n.metrics) if metrics else {}
    return d


def from_plain(d: dict[str, Any], views: tuple[NodeView, ...] | None = None) -> Snapshot:
    """The inverse of `to_plain`, and of `pack_compact` after msgpack (see unpack_compact).
    `views`: the nodes, decoded already (a delta applied: ctop.control.delta)."""
    if views is not None:
        pass
    elif "node_rows" in d:
        views = nodes_from_rows(d["node_fields"], d["node_rows"])
    else:
        views = tuple(_node_from(dict(n)) for n in d["nodes"])
    return Snapshot(
        ts=d["ts"], tick=d["tick"], cluster=d["cluster"], nodes=views,
        groups=tuple(GroupView(g["name"], Aggregate(**g["totals"])) for g in d["groups"]),
        totals=Aggregate(**d["totals"]),
        alerts=tuple(AlertView(a["key"], a["rule"], a["node_id"], Severity(a["severity"]),
                               a["message"], a["since"], a["value"], a.get("muted", ""),
                               a.get("muted_by", ""), a.get("muted_until", 0.0),
                               a.get("muted_note", "")) for a in d["alerts"]),
        events=tuple(EventView(*e) for e in d["events"]),
        lb=tuple(LBServiceView(s["key"], s["backend"], s["protocol"], s["scheduler"],
                               tuple(RealServerView(**r) for r in s["servers"]), s["imbalance"],
                               s.get("basis", "conns"), MappingProxyType({
                                   k: tuple(tuple(p) for p in v)
                                   for k, v in (s.get("share_history") or {}).items()}))
                 for s in d["lb"]),
        lb_note=d["lb_note"], lb_error=d["lb_error"], imbalance=d["imbalance"],
        drops=MappingProxyType(dict(d["drops"])), received=d["received"], readonly=d["readonly"],
        history_error=d.get("history_error", ""),
        history_failing_since=d.get("history_failing_since", 0.0),
        drop_sources=MappingProxyType({k: tuple((str(a), int(n)) for a, n in v)
                                       for k, v in d.get("drop_sources", {}).items()}),
        pair=PairView.from_plain(d.get("pair")),
        _index=Snapshot.index_of(views),
    )


def _node_from(n: dict[str, Any]) -> NodeView:
    """A NodeView from named fields; unknown ones (a newer daemon) are ignored."""
    n["liveness"] = Liveness(n["liveness"])
    n["services"] = tuple(ServiceView(*s) for s in n["services"])
    n["addresses"] = tuple(n["addresses"])
    n["cpu_history"] = tuple(n["cpu_history"])
    n["metrics"] = MappingProxyType(dict(n.get("metrics") or {}))
    return NodeView(**{k: v for k, v in n.items() if k in _NODE_FIELDS})


# -- compact form for an attached UI ----------------------------------------------------------

_LIVENESS = {str(s): s for s in Liveness}
_SERVICES_AT, _METRICS_AT = _NODE_FIELDS.index("services"), _NODE_FIELDS.index("metrics")
_LIVENESS_AT = _NODE_FIELDS.index("liveness")
_PROBES_AT = _NODE_FIELDS.index("probes")
if not _SERVICES_AT < _METRICS_AT < _PROBES_AT:
    raise ImportError("ctop.snapshot.NodeView: pack_compact expects services, metrics, probes")


def compact_rows(nodes: Sequence[NodeView], metrics_of: Collection[str] = ()
                 ) -> list[tuple[Any, ...]]:
    """Each node as the row an attached UI decodes (pack_compact, ctop.control.delta)."""
    # NodeViews are tuples: msgpack packs each row as an array, in C. Metrics are left out
    # (None) except for the nodes asked for. What only the daemon's load-balancer service
    # reads is left out always: the probes a join announced, and each result's number (with
    # it every node's results would differ, and the UI could no longer share equal ones).
    cut, rest, svc, probes = _METRICS_AT, _METRICS_AT + 1, _SERVICES_AT, _PROBES_AT
    wanted = set(metrics_of)

    def results(views: tuple[ServiceView, ...]) -> tuple[tuple[Any, ...], ...]:
        # a slice each: 3-4x cheaper than sharing equal ones through a dict (bench/tick.py)
        return tuple([v[:4] for v in views])

    return [
        (*n[:svc], results(n.services), *n[svc + 1:probes], (), *n[probes + 1:])
        if n.node_id in wanted else
        (*n[:svc], results(n.services), *n[svc + 1:cut], None, *n[rest:probes], (),
         *n[probes + 1:])
        for n in nodes
    ]


def pack_default(obj: Any) -> Any:
    """msgpack's fallback: a metrics mapping the engine made read-only."""
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    raise TypeError(f"cannot pack {type(obj).__name__}")


def pack_compact(snap: Snapshot, metrics_of: Collection[str] = ()) -> bytes:
    """The snapshot as msgpack bytes with nodes as rows; raw metrics only for `metrics_of`."""
    d = to_plain(snap, metrics=False, nodes=False)
    d["node_fields"] = list(_NODE_FIELDS)
    d["node_rows"] = compact_rows(snap.nodes, metrics_of)
    return msgpack.packb(d, default=pack_default)


def peek_version(data: bytes) -> tuple[float, int] | None:
    """(ts, tick) of packed snapshot bytes without decoding the nodes (None if not found
    first): an attached UI polls twice a tick and need not decode the same snapshot again."""
    unpacker = msgpack.Unpacker(use_list=False, strict_map_key=False)
    unpacker.feed(data)
    try:
        found: dict[str, Any] = {}
        for _ in range(min(unpacker.read_map_header(), 2)):
            key = unpacker.unpack()
            found[key] = unpacker.unpack()
        return float(found["ts"]), int(found["tick"])
    except (KeyError, TypeError, ValueError, msgpack.OutOfData, msgpack.UnpackException):
        return None


def unpack_compact(data: bytes) -> Snapshot:
    # Arrays as tuples: the node rows become NodeViews without copying their fields.
    return from_plain(msgpack.unpackb(data, use_list=False, strict_map_key=False))


def nodes_from_rows(names: Sequence[str], rows: Sequence[Sequence[Any]],
                    services: dict[Any, ServiceView] | None = None) -> tuple[NodeView, ...]:
    """NodeViews from compact rows; `services`: equal results seen before, shared."""
    if tuple(names) != _NODE_FIELDS:  # a daemon of another version: by name, slower
        return tuple(_node_from(dict(zip(names, row, strict=False))) for row in rows)
    if services is None:  # a cluster repeats a few thousand distinct results
        services = {}
    out = []
    for row in rows:
        fields_ = list(row)
        fields_[_LIVENESS_AT] = _LIVENESS[row[_LIVENESS_AT]]
        svcs = []
        for s in row[_SERVICES_AT]:
            view = services.get(s)
            if view is None:
                view = services[s] = ServiceView(*s)  # a daemon leaves out `seq`
            svcs.append(view)
        fields_[_SERVICES_AT] = tuple(svcs)
        metrics = row[_METRICS_AT]
        fields_[_METRICS_AT] = MappingProxyType(dict(metrics)) if metrics else EMPTY
        out.append(_tuple_new(NodeView, fields_))
    return tuple(out)
