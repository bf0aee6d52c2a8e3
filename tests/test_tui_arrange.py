"""The arrangement (filter, sort, group) the table and grid draw: the order the sort keys
promise, whatever way `Arranger` computes it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctop.snapshot import Liveness
from ctop.tui.arrange import SORTS, Arranger
from tests.helpers.sample import sample_snapshot

STATE_ORDER = [Liveness.DEAD, Liveness.SUSPECT, Liveness.ALIVE, Liveness.LEFT]


def expected_order(nodes, sort, ratios, grouped):
    """The documented order: most first for numbers, worst state first, then node_id."""
    def key(n):
        value = {
            "name": (),
            "cpu": (-n.cpu,),
            "mem": (-n.mem,),
            "conns": (-n.conns,),
            "ratio": (-abs(ratios.get(n.node_id, 1.0) - 1.0),),
            "state": (STATE_ORDER.index(n.liveness),),
        }[sort]
        return ((n.group,) if grouped else ()) + value + (n.node_id,)
    return [n.node_id for n in sorted(nodes, key=key)]


@pytest.fixture(scope="module")
def snap():
    s = sample_snapshot(600)
    # ties on every sort key: equal values must fall back to node_id
    nodes = tuple(n._replace(cpu=float(i % 7), mem=50.0, conns=i % 3) if i % 2 else n
                  for i, n in enumerate(s.nodes))
    return replace(s, nodes=nodes, _index=type(s).index_of(nodes))


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("filter_text", ["", "web", "10.0"])
def test_every_sort_orders_as_documented_with_group_runs_and_index(
    snap, sort, grouped, filter_text
) -> None:
    arranger = Arranger()
    arr = arranger.arrange(snap, filter_text=filter_text, sort=sort, grouped=grouped)
    shown = [n for n in snap.nodes if not filter_text or filter_text in (
        " ".join((n.hostname, n.node_id, n.group, n.liveness, *n.addresses)).lower())]
    assert shown, "the filter should match something"
    assert [n.node_id for n in arr.nodes] == expected_order(shown, sort, arr.ratios, grouped)
    assert arr.index == {n.node_id: i for i, n in enumerate(arr.nodes)}
    if grouped:
        assert [g for g, _, _ in arr.groups] == sorted({n.group for n in shown})
        for g, start, end in arr.groups:
            assert {n.group for n in arr.nodes[start:end]} == {g}
        assert arr.groups[0][1] == 0 and arr.groups[-1][2] == len(arr.nodes)
    else:
        assert arr.groups == ()
