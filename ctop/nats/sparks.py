"""The table's CPU sparkline over NATS without sending it: a collector publishes its rows
without `cpu_history` (60 floats, ~540 of a busy row's ~700 bytes, and new every report, so
it made every row of a busy node "changed"), and the view rebuilds it from the CPU of each
row it receives (one point per collector tick in which the node reported).

A view that just joined starts each sparkline empty; it fills within a minute."""

from __future__ import annotations

from dataclasses import replace

from ctop.cluster import CPU_HISTORY
from ctop.snapshot import NodeView, Snapshot


def without_history(snap: Snapshot) -> Snapshot:
    """The snapshot a collector publishes: every row without its CPU history."""
    nodes = tuple(n._replace(cpu_history=()) if n.cpu_history else n for n in snap.nodes)
    return replace(snap, nodes=nodes, _index=Snapshot.index_of(nodes))


class CpuHistories:
    """The view's side, per group: each node as received -> the same with its history."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], dict[str, tuple[NodeView, NodeView]]] = {}

    def apply(self, cluster: str, group: str, snap: Snapshot) -> Snapshot:
        held = self._held.get((cluster, group), {})
        now: dict[str, tuple[NodeView, NodeView]] = {}
        out = []
        for n in snap.nodes:
            h = held.get(n.node_id)
            if h is not None and h[0] is n:  # a row the delta left as it was: nothing new
                shown = h[1]
            else:
                if h is None:
                    history: tuple[float, ...] = (n.cpu,)
                elif n.last_seen != h[0].last_seen:  # a new report: its CPU is a new point
                    history = (*h[1].cpu_history[1 - CPU_HISTORY:], n.cpu)
                else:
                    history = h[1].cpu_history
                shown = n._replace(cpu_history=history)
            now[n.node_id] = (n, shown)
            out.append(shown)
        self._held[(cluster, group)] = now  # nodes gone from the group are forgotten
        nodes = tuple(out)
        return replace(snap, nodes=nodes, _index=Snapshot.index_of(nodes))
