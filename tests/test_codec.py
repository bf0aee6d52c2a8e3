"""Snapshots over the control socket: the plain form for scripts and the compact form an
attached UI polls carry the same cluster."""

from __future__ import annotations

import json

import msgpack

from ctop.codec import from_plain, pack_compact, to_plain, unpack_compact
from ctop.snapshot import EMPTY, Liveness, NodeView, ServiceView
from tests.helpers.sample import sample_snapshot


def _without_metrics(n: NodeView) -> NodeView:
    return n._replace(metrics=EMPTY)


def test_compact_form_carries_every_node_and_only_the_watched_metrics() -> None:
    snap = sample_snapshot(300, tick=7)
    watched = snap.nodes[5].node_id
    back = unpack_compact(pack_compact(snap, [watched]))
    assert [_without_metrics(n) for n in back.nodes] == [
        _without_metrics(n) for n in snap.nodes
    ]
    assert all(type(n.liveness) is Liveness for n in back.nodes)
    assert all(type(s) is ServiceView for n in back.nodes for s in n.services)
    assert back.node(watched).metrics["top_procs"]  # the node on screen: its raw metrics
    assert back.node(watched).metrics["cpu_percent"] == snap.node(watched).metrics["cpu_percent"]
    assert all(not n.metrics for n in back.nodes if n.node_id != watched)
    assert back.lb == snap.lb and back.totals == snap.totals and back.groups == snap.groups
    assert back.alerts == snap.alerts and back.events == snap.events
    assert back.tick == 7 and back.node(snap.nodes[-1].node_id) is not None  # index rebuilt


def test_compact_form_is_much_smaller_than_the_plain_one() -> None:
    snap = sample_snapshot(2_000)
    plain = msgpack.packb(to_plain(snap))
    compact = pack_compact(snap)
    assert len(compact) < len(plain) * 0.8


def test_plain_form_is_json_and_round_trips() -> None:
    snap = sample_snapshot(50)
    text = json.dumps(to_plain(snap))
    back = from_plain(json.loads(text))
    assert [n.node_id for n in back.nodes] == [n.node_id for n in snap.nodes]
    assert back.nodes[3].services == snap.nodes[3].services
    assert back.lb == snap.lb


def test_a_daemon_with_other_node_fields_is_read_by_name() -> None:
    # A newer daemon adds a field and sends its rows in its own order.
    snap = sample_snapshot(20)
    d = msgpack.unpackb(pack_compact(snap), use_list=False, strict_map_key=False)
    names = (*d["node_fields"], "future_field")
    d["node_fields"] = names
    d["node_rows"] = [(*row, 42) for row in d["node_rows"]]
    back = from_plain(d)
    assert [n.cpu for n in back.nodes] == [n.cpu for n in snap.nodes]
