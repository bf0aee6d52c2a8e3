"""Slow facts (probe results, top processes, TCP states) travel only when they change; the
director keeps the last value while reports leave them out."""

from __future__ import annotations

import time

from agentd.encoder import encode
from agentd.protocol import UNSENT, Header, Report, ServiceStatus
from agentd.slowfacts import SlowFacts
from ctop.cluster import ClusterModel
from ctop.ingest.verifier import Verifier

KEY = b"k" * 32
HTTP_OK = (ServiceStatus("http", "ok", 1.5),)
TOP = [("nginx", 10, 25.0, 1 << 20)]
STATES = {"ESTABLISHED": [3]}


def test_a_change_goes_out_twice_then_not_until_the_refresh() -> None:
    slow = SlowFacts(refresh=10.0)
    sent = []
    for t in range(13):
        metrics, services = slow.thin({"cpu_percent": 1.0, "tcp_states": STATES}, HTTP_OK,
                                      float(t))
        sent.append(("tcp_states" in metrics, services is not UNSENT))
        assert metrics["cpu_percent"] == 1.0  # fast metrics always travel
    assert sent[:3] == [(True, True), (True, True), (False, False)]
    assert sent[3:11] == [(False, False)] * 8
    # 10 s after they last went out; one refresh a report, so they come one after the other
    assert sent[11:] == [(True, False), (False, True)]
    metrics, services = slow.thin({"tcp_states": {"LISTEN": [1]}}, (), 13.0)
    assert "tcp_states" in metrics and services == ()  # both changed: no probes is news too


def test_the_director_keeps_what_a_report_leaves_out() -> None:
    verifier = Verifier(KEY)
    model = ClusterModel("t")
    now = time.time()

    def send(seq: int, metrics: dict, services: tuple) -> None:
        data = encode(KEY, Report(Header("web1", 1, seq, now), 1.0, "", metrics, services))
        model.apply(verifier.verify(data), now)

    full = {"cpu_percent": 5.0, "top_procs": TOP, "tcp_states": {"established": [3]}}
    send(1, full, HTTP_OK)
    send(2, {"cpu_percent": 7.0}, UNSENT)  # slow facts unchanged: left out
    node = model.nodes["web1"]
    assert node.metrics["cpu_percent"] == 7.0
    assert node.metrics["top_procs"] == TOP and node.metrics["tcp_states"] == {
        "established": [3]}
    assert node.services == HTTP_OK
    send(3, {"cpu_percent": 7.0}, ())  # "s": [] — the probes were removed
    assert node.services == ()


def test_beacon_slots_between_reports() -> None:
    from agentd.daemon import beacon_slots

    assert beacon_slots(1.0, 0.25) == ((0.25, 0.5, 0.75), 0.25)
    assert beacon_slots(1.0, 0.3) == ((0.3, 0.6), 0.4)  # none closer than 0.15 s to a report
    assert beacon_slots(0.3, 0.25) == ((), 0.3)  # no room: reports only
    assert beacon_slots(1.0, 0) == ((), 1.0)  # beacons off
    assert beacon_slots(0.2, 0.25) == ((), 0.2)  # reports more often than beacons


def test_a_watched_process_count_or_restart_is_news_its_cpu_is_not() -> None:
    """Count and restarts go out at once; CPU and RSS changes wait for the (longer) refresh,
    so watching busy processes costs the byte budget next to nothing (docs/protocol.md)."""
    slow = SlowFacts(refresh=10.0)

    def row(count: int, restarts: int, cpu: float) -> list:
        return [("nginx", count, 1, None, restarts, cpu, 1 << 20, 4, 30)]

    def sent(value: list, t: float) -> bool:
        return "watched" in slow.thin({"watched": value}, (), t)[0]

    assert [sent(row(2, 0, 1.0), t) for t in (0, 1, 2)] == [True, True, False]
    assert [sent(row(2, 0, 9.0 + t), t) for t in range(3, 29)] == [False] * 26  # CPU only
    assert sent(row(1, 0, 5.0), 29)  # a process less: news
    assert sent(row(2, 1, 5.0), 30)  # a restart: news
    assert [sent(row(2, 1, 7.0), t) for t in (31, 32, 59)] == [True, False, False]
    assert sent(row(2, 1, 7.0), 62)  # the refresh, 3 periods after it last went out


def test_top_processes_are_news_when_their_set_changes_not_their_shares_or_order() -> None:
    """A busy node's shares change at every process scan; sending the list then cost ~40 B/s
    of the byte budget. A new process on the list goes out at once; the shares and order (which
    flip between processes of similar shares at every scan on a busy machine) every 3 refresh
    periods."""
    slow = SlowFacts(refresh=10.0)

    def sent(top: list, t: float) -> bool:
        return "top_procs" in slow.thin({"top_procs": top}, (), t)[0]

    a, b = ("nginx", 10, 25.0, 1 << 20), ("java", 11, 20.0, 1 << 30)
    assert [sent([a, b], t) for t in (0, 1, 2)] == [True, False, False]  # once: not vital
    assert [sent([(a[0], a[1], 9.0 + t, a[3]), b], t)
            for t in range(3, 29)] == [False] * 26  # shares only
    assert not sent([b, a], 29)  # another order of the same processes: not news
    assert sent([a, ("sshd", 12, 30.0, 1)], 40)  # another process: news
    assert [sent([a, ("sshd", 12, 1.0, 1)], t) for t in (41, 42, 69)] == [False] * 3
    assert sent([a, ("sshd", 12, 2.0, 1)], 70)  # the refresh, 30 s after it last went out
