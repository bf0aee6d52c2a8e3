"""The engine publishes a change of liveness between ticks by patching the last snapshot:
the patched snapshot must say what a full snapshot would say about states and counts."""

from __future__ import annotations

import time
from pathlib import Path

from agentd.beacon import Beacon
from agentd.protocol import Header, Leave, Report
from ctop.cluster import ClusterModel
from ctop.config import DirectorConfig, StoreConfig
from ctop.engine import Engine
from ctop.snapshot import Liveness
from tests.helpers.agent_helpers import write_key


def report(node: str, group: str, boot: int = 1, seq: int = 1) -> Report:
    return Report(Header(node, boot, seq, time.time()), 1.0, group,
                  {"cpu_percent": 10.0, "tcp_established": 5}, ())


def test_a_patched_snapshot_counts_states_as_a_full_one() -> None:
    model = ClusterModel("t")
    t0 = 1000.0
    for i, group in enumerate(["a", "a", "b", "b"]):
        model.apply(report(f"n{i}", group, boot=i + 1), t0)
    model.beacon(Beacon("n1", 2, 2, 0.25), t0)  # n1 announces 0.25 s gaps: dead after 2.6 s
    model.apply(Leave(Header("n3", 4, 2, t0), "SIGTERM"), t0)
    snap = model.snapshot(t0, 1)
    # 3 s later n1 (beacons) is dead, n0 and n2 (reports only) suspect, n3 still left.
    events = model.tick(t0 + 3.0)
    changed = {e.node_id for e in events}
    assert changed == {"n0", "n1", "n2"}
    patched = model.patched(snap, changed, t0 + 3.0)
    full = model.snapshot(t0 + 3.0, 2)
    assert [v.liveness for v in patched.nodes] == [v.liveness for v in full.nodes] == [
        Liveness.SUSPECT, Liveness.DEAD, Liveness.SUSPECT, Liveness.LEFT]
    count = ("nodes", "alive", "suspect", "dead", "left")
    assert [getattr(patched.totals, c) for c in count] == [getattr(full.totals, c) for c in count]
    for p, f in zip(patched.groups, full.groups, strict=True):
        assert [getattr(p.totals, c) for c in count] == [getattr(f.totals, c) for c in count]
    assert patched.node("n1").liveness is Liveness.DEAD  # the index still finds nodes


def test_a_leave_is_in_the_published_snapshot_before_the_next_tick(tmp_path: Path) -> None:
    cfg = DirectorConfig(cluster="t", listen=("127.0.0.1", 0),
                         key_file=str(write_key(tmp_path / "k")),
                         store=StoreConfig(path=str(tmp_path / "db")))
    engine = Engine(cfg)
    now = time.time()
    engine._on_message(report("n0", "a"), "10.0.0.1", now)
    engine.tick(now)  # the 1 s tick publishes the node
    assert engine.snapshot().node("n0").liveness is Liveness.ALIVE
    engine._on_message(Leave(Header("n0", 1, 2, now), "SIGTERM"), "10.0.0.1", now + 0.05)
    engine.check_liveness(now + 0.1)  # the 0.1 s liveness check, not the tick
    snap = engine.snapshot()
    assert snap.node("n0").liveness is Liveness.LEFT
    assert snap.totals.left == 1 and snap.totals.alive == 0
    assert "n0 alive → left (SIGTERM)" in [e.message for e in snap.events]
