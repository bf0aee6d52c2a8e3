"""The Prometheus exposition as a whole, read by prometheus_client's own parser: what a
Prometheus server scraping `ctop serve` gets (the HTTP round trip is in test_engine.py)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from prometheus_client.parser import text_string_to_metric_families

from ctop.prometheus import exposition
from ctop.snapshot import Liveness
from tests.helpers.sample import sample_snapshot


def families(text: str) -> dict[str, object]:
    parsed = list(text_string_to_metric_families(text))
    names = [f.name for f in parsed]
    # one group of lines per metric: a second group is a second family of the same name,
    # which the parser reads as untyped and Prometheus' OpenMetrics parser refuses
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"metrics split into several groups: {repeated}"
    return {f.name: f for f in parsed}


def samples(fam: object) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples}  # type: ignore[attr-defined]


def test_every_metric_is_one_typed_and_described_family():
    fams = families(exposition(sample_snapshot(40)))
    untyped = sorted(n for n, f in fams.items() if f.type == "unknown")  # type: ignore[attr-defined]
    assert not untyped, f"no TYPE line: {untyped}"
    bare = sorted(n for n, f in fams.items() if not f.documentation)  # type: ignore[attr-defined]
    assert not bare, f"no HELP line: {bare}"
    for expected in ("ctop_nodes", "ctop_node_cpu_percent", "ctop_service_up",
                     "ctop_lb_weight", "ctop_receiver_drops"):
        assert expected in fams


def test_the_values_are_the_snapshots():
    snap = sample_snapshot(40)
    fams = families(exposition(snap))
    by_state = {dict(k)["state"]: v for k, v in samples(fams["ctop_nodes"]).items()}
    assert sum(by_state.values()) == len(snap.nodes)
    assert by_state["dead"] == sum(n.liveness is Liveness.DEAD for n in snap.nodes)

    shown = [n for n in snap.nodes if n.liveness in (Liveness.ALIVE, Liveness.SUSPECT)]
    cpu = {dict(k)["node"]: v for k, v in samples(fams["ctop_node_cpu_percent"]).items()}
    assert cpu == {n.node_id: n.cpu for n in shown}

    up = {(dict(k)["node"], dict(k)["service"]): v
          for k, v in samples(fams["ctop_service_up"]).items()}
    assert up == {(n.node_id, s.name): (1.0 if s.status == "ok" else 0.0)
                  for n in snap.nodes for s in n.services}

    weights = {(dict(k)["service"], dict(k)["server"]): v
               for k, v in samples(fams["ctop_lb_weight"]).items()}
    assert weights == {(svc.key, rs.key): rs.weight for svc in snap.lb for rs in svc.servers}

    drops = {dict(k)["reason"]: v for k, v in samples(fams["ctop_receiver_drops"]).items()}
    assert drops == dict(snap.drops)


def test_hostile_names_survive_as_label_values():
    snap = sample_snapshot(3, lb=False)
    odd = 'we"ird\\node\nx'
    nodes = tuple(n._replace(node_id=odd if i == 0 else n.node_id, liveness=Liveness.ALIVE)
                  for i, n in enumerate(snap.nodes))
    snap = replace(snap, nodes=nodes, cluster='c"1', _index=MappingProxyType({}),
                   drop_sources=MappingProxyType({"bad_tag": (("10.0.0.9:1\n", 4),)}))
    fams = families(exposition(snap))
    nodes_seen = {dict(k)["node"] for k in samples(fams["ctop_node_cpu_percent"])}
    assert odd in nodes_seen
    assert {dict(k)["cluster"] for k in samples(fams["ctop_nodes"])} == {'c"1'}
    sources = samples(fams["ctop_receiver_drops_by_source"])
    assert [dict(k)["source"] for k in sources] == ["10.0.0.9:1\n"]
