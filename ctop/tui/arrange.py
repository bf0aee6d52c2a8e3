"""Filter, sort and group the snapshot's nodes once per tick (never per rendered line).

Pure data code: the table and the grid both draw from one `Arrangement`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ctop.model import Liveness, NodeView, RealServerView, Snapshot

SORTS = ("name", "cpu", "mem", "conns", "ratio", "state")
_STATE_ORDER = {Liveness.DEAD: 0, Liveness.SUSPECT: 1, Liveness.ALIVE: 2, Liveness.LEFT: 3}


@dataclass(frozen=True, slots=True)
class Arrangement:
    """The nodes to show, in order, with group boundaries and a node_id -> position index."""

    nodes: tuple[NodeView, ...]
    groups: tuple[tuple[str, int, int], ...]  # (group, start, end) into `nodes`; () if ungrouped
    index: dict[str, int] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)  # node_id -> worst LB ratio
    servers: dict[str, tuple[tuple[str, str, RealServerView], ...]] = field(default_factory=dict)


def node_servers(snap: Snapshot) -> dict[str, tuple[tuple[str, str, RealServerView], ...]]:
    """node_id -> its real-server entries as (backend, service, server view)."""
    out: dict[str, list[tuple[str, str, RealServerView]]] = {}
    for svc in snap.lb:
        for rs in svc.servers:
            if rs.node_id:
                out.setdefault(rs.node_id, []).append((svc.backend, svc.key, rs))
    return {k: tuple(v) for k, v in out.items()}


def worst_ratio(entries: tuple[tuple[str, str, RealServerView], ...]) -> float | None:
    """The entry furthest from balanced (1.0): what the ratio column and sort show."""
    ratios = [rs.ratio for _, _, rs in entries if rs.ratio is not None]
    return max(ratios, key=lambda r: abs(r - 1.0)) if ratios else None


def matcher(text: str) -> Callable[[NodeView], bool] | None:
    """Every whitespace-separated term must occur in the name, id, group, state or an address."""
    terms = text.lower().split()
    if not terms:
        return None

    def match(n: NodeView) -> bool:
        hay = " ".join((n.hostname, n.node_id, n.group, n.liveness, *n.addresses)).lower()
        return all(t in hay for t in terms)

    return match


def _sort_key(sort: str, ratios: dict[str, float]) -> Callable[[NodeView], object] | None:
    if sort == "cpu":
        return lambda n: (-n.cpu, n.node_id)
    if sort == "mem":
        return lambda n: (-n.mem, n.node_id)
    if sort == "conns":
        return lambda n: (-n.conns, n.node_id)
    if sort == "ratio":
        return lambda n: (-abs(ratios.get(n.node_id, 1.0) - 1.0), n.node_id)
    if sort == "state":
        return lambda n: (_STATE_ORDER.get(n.liveness, 9), n.node_id)
    return None  # name: the snapshot's own (group, node_id) order, or hostname when ungrouped


def arrange(
    snap: Snapshot, *, filter_text: str = "", sort: str = "name", grouped: bool = True
) -> Arrangement:
    servers = node_servers(snap) if snap.lb else {}
    ratios = {k: r for k, v in servers.items() if (r := worst_ratio(v)) is not None}
    nodes: list[NodeView] | tuple[NodeView, ...] = snap.nodes
    match = matcher(filter_text)
    if match is not None:
        nodes = [n for n in nodes if match(n)]
    key = _sort_key(sort, ratios)
    if key is None and not grouped:
        key = lambda n: n.node_id  # noqa: E731
    if key is not None:
        nodes = sorted(nodes, key=(lambda n: (n.group, key(n))) if grouped else key)
    elif grouped and not isinstance(nodes, tuple):
        pass  # already in the snapshot's (group, node_id) order
    nodes = tuple(nodes)
    groups: list[tuple[str, int, int]] = []
    if grouped:
        start = 0
        for i in range(1, len(nodes) + 1):
            if i == len(nodes) or nodes[i].group != nodes[start].group:
                groups.append((nodes[start].group, start, i))
                start = i
    index = {n.node_id: i for i, n in enumerate(nodes)}
    return Arrangement(nodes, tuple(groups), index, ratios, servers)
