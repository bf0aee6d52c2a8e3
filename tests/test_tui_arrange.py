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


def every_arrangement(*filters: str) -> pytest.MarkDecorator:
    """Each sort, grouped and not, under each of `filters`: (filter_text, sort, grouped)."""
    return pytest.mark.parametrize(("filter_text", "sort", "grouped"), [
        (f, s, g) for f in filters for s in SORTS for g in (True, False)])


@every_arrangement("", "web", "10.0")
def test_every_sort_orders_as_documented_with_group_runs_and_index(
    snap, sort, grouped, filter_text
) -> None:
    arr = Arranger().arrange(snap, filter_text=filter_text, sort=sort, grouped=grouped)
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


def _ticked(snap, change):
    """The next tick: every node a new object (as an attached UI decodes them), `change`
    applied to some."""
    nodes = tuple(change(i, n._replace()) for i, n in enumerate(snap.nodes))
    return replace(snap, nodes=nodes, _index=type(snap).index_of(nodes))


@every_arrangement("", "web", "dead")
def test_a_kept_arrangement_follows_every_tick_as_a_fresh_one_would(
    snap, sort, grouped, filter_text
) -> None:
    """Ticks that change nothing the filter or sort reads, then ones that change a sort value,
    a node's state (what `dead` matches), a ratio, and the set of nodes: each shows exactly
    what arranging that tick from scratch shows."""
    def moved(i, n):
        return n._replace(cpu=99.0 - n.cpu, mem=n.mem / 2, conns=n.conns + i % 5) if i % 3 else n

    def died(i, n):
        return n._replace(liveness=Liveness.DEAD) if i % 11 == 0 else n

    ticks = [_ticked(snap, lambda i, n: n) for _ in range(2)]
    ticks.append(_ticked(ticks[-1], moved))
    ticks.append(_ticked(ticks[-1], died))
    lb = ticks[-1].lb
    server = replace(lb[0].servers[0], conn_share=0.9, ratio=3.0)
    ticks.append(replace(ticks[-1], lb=(replace(lb[0], servers=(server, *lb[0].servers[1:])),
                                        *lb[1:])))
    # the last node of the first group moves to the next group: the node ids keep their
    # order, the group ranges do not (a kept order reused them: found in review)
    first = ticks[-1].nodes[0].group
    last_of_first = max(i for i, n in enumerate(ticks[-1].nodes) if n.group == first)
    second = ticks[-1].nodes[last_of_first + 1].group
    ticks.append(_ticked(ticks[-1], lambda i, n: n._replace(group=second)
                         if i == last_of_first else n))
    fewer = ticks[-1].nodes[:-7]
    ticks.append(replace(ticks[-1], nodes=fewer, _index=type(snap).index_of(fewer)))
    ticks.append(_ticked(ticks[-1], lambda i, n: n))
    kept = Arranger()
    how = {"filter_text": filter_text, "sort": sort, "grouped": grouped}
    for t in ticks:
        got, fresh = kept.arrange(t, **how), Arranger().arrange(t, **how)
        assert [n.node_id for n in got.nodes] == [n.node_id for n in fresh.nodes]
        assert all(a is b for a, b in zip(got.nodes, fresh.nodes, strict=True))  # this tick's
        assert got.groups == fresh.groups and got.index == fresh.index
        assert got.ratios == fresh.ratios


def test_ticks_that_change_nothing_it_reads_are_not_filtered_or_sorted_again(
    snap, monkeypatch
) -> None:
    """At 10,000 nodes a filter and a sort cost tens of ms each tick: an idle cluster's ticks
    (new objects, same values) keep the order found once."""
    from ctop.tui import arrange as module

    calls = {"sort": 0, "search": 0}
    sort, search = module.sort_nodes, module.search_text

    def counted_sort(*a, **kw):
        calls["sort"] += 1
        return sort(*a, **kw)

    def counted_search(n):
        calls["search"] += 1
        return search(n)

    monkeypatch.setattr(module, "sort_nodes", counted_sort)
    monkeypatch.setattr(module, "search_text", counted_search)
    arranger = Arranger()
    for t in [_ticked(snap, lambda i, n: n) for _ in range(4)]:
        arranger.arrange(t, filter_text="web", sort="cpu", grouped=True)
    assert calls["sort"] == 1 and calls["search"] == len(snap.nodes)
    arranger.arrange(_ticked(snap, lambda i, n: n._replace(cpu=n.cpu + 1) if i == 3 else n),
                     filter_text="web", sort="cpu", grouped=True)
    assert calls["sort"] == 2  # a value the sort reads changed
