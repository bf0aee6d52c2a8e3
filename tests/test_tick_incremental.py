"""The tick's O(changed) shortcuts must never serve a stale answer: liveness judged from a
deadline heap (only due nodes are looked at) still catches every silent node on time, and a
snapshot that reuses unchanged nodes' views rebuilds every node whose state changed."""

from __future__ import annotations

import random
import time

from agentd.beacon import Beacon
from agentd.protocol import Header, Leave, Report
from ctop.cluster import ClusterModel
from ctop.snapshot import Liveness


def report(node: str, seq: int, interval: float = 1.0, group: str = "g",
           cpu: float = 10.0, conns: int = 5) -> Report:
    return Report(Header(node, 1, seq, time.time()), interval, group,
                  {"cpu_percent": cpu, "tcp_established": conns}, ())


def test_a_node_whose_interval_shrinks_is_judged_on_the_new_one() -> None:
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("slow", 1, interval=10.0), t0)  # suspect after 25 s of silence
    model.tick(t0 + 1.0)
    model.apply(report("slow", 2, interval=1.0), t0 + 2.0)  # now suspect after 2.5 s
    assert model.tick(t0 + 3.0) == []
    events = model.tick(t0 + 4.6)
    assert [e.message for e in events] == ["slow alive → suspect (silent for 2.6 s)"]
    assert model.nodes["slow"].liveness is Liveness.SUSPECT


def test_a_node_silent_after_the_clock_stepped_back_is_judged_on_time() -> None:
    """The wall clock steps back 100 s (NTP) while a node reports; it then falls silent: it is
    suspect 2.5 s later by the new clock, not 100 s later (its entry was filed by the old
    clock, and its messages after the step never filed it earlier: found in review)."""
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("n", 1), t0)
    model.apply(report("n", 2), t0 + 1.0)
    model.tick(t0 + 1.0)
    back = t0 - 99.0  # the clock stepped back by 100 s
    model.apply(report("n", 3), back)
    assert model.tick(back) == []
    model.tick(back + 2.0)
    assert model.nodes["n"].liveness is Liveness.ALIVE
    events = model.tick(back + 2.6)
    assert [e.message for e in events] == ["n alive → suspect (silent for 2.6 s)"]


def test_a_replayed_beacon_does_not_keep_a_silent_node_alive() -> None:
    """A beacon whose sequence the node already sent (a replay that reached another receiver
    worker, whose own check has not seen it) changes nothing: the node goes suspect on time
    and its loss is not distorted (found in review)."""
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("n", 5), t0)
    assert model.beacon(Beacon("n", 1, 4, 0.25), t0 + 2.0) == []
    assert model.beacon(Beacon("n", 1, 5, 0.25), t0 + 2.2) == []
    model.tick(t0 + 2.6)
    assert model.nodes["n"].liveness is Liveness.SUSPECT
    assert list(model.nodes["n"].seqs) == [5]


def test_a_node_back_from_dead_is_watched_again() -> None:
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("n", 1), t0)
    model.tick(t0 + 6.0)
    assert model.nodes["n"].liveness is Liveness.DEAD
    model.apply(report("n", 2), t0 + 7.0)
    assert model.nodes["n"].liveness is Liveness.ALIVE
    model.tick(t0 + 9.0)
    assert model.nodes["n"].liveness is Liveness.ALIVE
    model.tick(t0 + 9.6)
    assert model.nodes["n"].liveness is Liveness.SUSPECT
    model.tick(t0 + 12.0)
    assert model.nodes["n"].liveness is Liveness.DEAD


def test_a_node_that_left_is_forgotten_once_and_can_rejoin() -> None:
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("n", 1), t0)
    model.apply(Leave(Header("n", 1, 2, t0), "SIGTERM"), t0 + 0.5)
    forget = model.liveness.forget_left_after
    assert model.tick(t0 + 0.5 + forget - 1) == []
    events = model.tick(t0 + 0.5 + forget)
    assert [e.kind for e in events] == ["forget"] and "n" not in model.nodes
    model.apply(report("n", 3), t0 + forget + 1)  # back as a new node, judged as one
    model.tick(t0 + forget + 4.0)
    assert model.nodes["n"].liveness is Liveness.SUSPECT


def test_random_traffic_never_leaves_a_silent_node_alive() -> None:
    """Every tick, every node's state is what judging all nodes would make it: alive while
    its silence is under its limit, never alive past it (reports, beacons with changing gaps,
    changing intervals, leaves, ticks at random moments)."""
    rng = random.Random(15)
    model = ClusterModel("t")
    now = 1000.0
    seqs: dict[str, int] = {}
    for _ in range(4000):
        now += rng.uniform(0.0, 0.4)
        node = f"n{rng.randrange(30)}"
        seq = seqs[node] = seqs.get(node, 0) + 1
        what = rng.random()
        if what < 0.5:
            model.apply(report(node, seq, interval=rng.choice((0.5, 1.0, 2.0))), now)
        elif what < 0.7 and node in model.nodes:
            model.beacon(Beacon(node, 1, seq, rng.choice((0.1, 0.25, 1.0))), now)
        elif what < 0.72:
            model.apply(Leave(Header(node, 1, seq, now), "bye"), now)
        else:
            model.tick(now)
            for n in model.nodes.values():
                silent = now - n.last_seen
                if n.liveness is Liveness.LEFT:
                    continue
                expected = (Liveness.ALIVE if silent < n.suspect_s else
                            Liveness.SUSPECT if silent < n.dead_s else Liveness.DEAD)
                assert n.liveness is expected, (n.node_id, silent, n.suspect_s, n.liveness)


def test_a_snapshot_reuses_unchanged_views_and_rebuilds_changed_ones() -> None:
    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("quiet", 1, interval=60.0), t0)  # suspect only after 150 s
    model.apply(report("busy", 1), t0)
    model.apply(report("fading", 1), t0)
    first = model.snapshot(t0, 1)
    model.apply(report("busy", 2, cpu=55.0), t0 + 2.0)
    model.tick(t0 + 3.0)  # "fading" is silent for 3 s: suspect
    second = model.snapshot(t0 + 3.0, 2)
    assert second.node("quiet") is first.node("quiet")  # nothing about it changed
    assert second.node("busy").cpu == 55.0
    assert second.node("fading").liveness is Liveness.SUSPECT
    assert second.totals.suspect == 1 and second.totals.alive == 2
    model.set_config("quiet", "v2 current")  # a change only the view shows
    third = model.snapshot(t0 + 3.5, 3)
    assert third.node("quiet").config == "v2 current"


def test_the_totals_are_the_whole_cluster_counted_once() -> None:
    from ctop.cluster import aggregate

    model = ClusterModel("t")
    t0 = 1000.0
    for i in range(12):
        model.apply(report(f"n{i:02d}", 1, group="abc"[i % 3], cpu=5.0 * i), t0 + i % 4)
    model.apply(Leave(Header("n05", 1, 2, t0), "bye"), t0 + 3)
    model.tick(t0 + 5.0)  # those that reported at t0 are dead, at t0 + 1 and 2 suspect
    snap = model.snapshot(t0 + 5.0, 1)
    whole = aggregate(snap.nodes)
    assert (snap.totals.alive, snap.totals.suspect, snap.totals.dead, snap.totals.left) == (
        whole.alive, whole.suspect, whole.dead, whole.left) == (3, 5, 3, 1)
    assert snap.totals.cpu_avg == whole.cpu_avg and snap.totals.cpu_max == whole.cpu_max == 55.0
    assert snap.totals.conns == sum(g.totals.conns for g in snap.groups) == 40


def test_a_silent_node_keeps_its_view_while_the_cluster_load_share_moves() -> None:
    """A node that did not report keeps the very same view object (what reads snapshots
    skips it by identity) while another node's report moves the cluster's connections, and
    the share each node is shown is still its share of the snapshot's connections."""
    from ctop.codec import to_plain

    model = ClusterModel("t")
    t0 = 1000.0
    model.apply(report("quiet", 1, interval=60.0, conns=100), t0)
    model.apply(report("busy", 1, conns=100), t0)
    first = model.snapshot(t0, 1)
    assert first.load_share(first.node("quiet")) == 0.5
    model.apply(report("busy", 2, conns=300), t0 + 1.0)
    second = model.snapshot(t0 + 1.0, 2)
    quiet = second.node("quiet")
    assert quiet is first.node("quiet")
    assert second.load_share(quiet) == 0.25 and second.load_share(second.node("busy")) == 0.75
    shown = {n["node_id"]: n["load_share"] for n in to_plain(second)["nodes"]}
    assert shown == {"quiet": 0.25, "busy": 0.75}  # `ctop status --json` as before
    model.tick(t0 + 7.0)  # busy: silent for 6 s, dead; its connections count no more
    third = model.snapshot(t0 + 7.0, 3)
    assert third.node("quiet") is quiet
    assert third.load_share(third.node("busy")) == 0.0 and third.load_share(quiet) == 1.0
