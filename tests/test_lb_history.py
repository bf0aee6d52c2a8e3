"""The load-balancer view in the history database: each round, minute and hour rollups, the node
metrics' retention, and the LB view at a past moment from whichever level still holds it. Real
SQLite through the real Store; time is synthetic (rounds carry their own time)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ctop.lb_history import LBRecorder, metric_name, round_of, servers_at
from ctop.snapshot import LBServiceView, RealServerView
from ctop.store import Store

T0 = 1_800_000_000.0  # an hour boundary
HOUR = 3600


def service(s2_weight: int, s2_active: int) -> tuple[LBServiceView, ...]:
    total_w = 1 + s2_weight
    total_a = 10 + s2_active
    servers = tuple(
        RealServerView(key, f"10.0.0.{n}", 80, w, "serving" if w else "drained", a, 1, a / 2,
                       f"node{n}", a / total_a, w / total_w, None)
        for n, (key, w, a) in enumerate((("s1", 1, 10), ("s2", s2_weight, s2_active)), 1))
    return (LBServiceView("web", "haproxy", "http", "roundrobin", servers, 0.25),)


def drive(store: Store, start: float, stop: float, step: float, views) -> None:
    t, i = start, 0
    while t < stop:
        store.record_lb(round_of(t, views(t)))
        i += 1
        if i % 50 == 0:
            store.flush()
        t += step
    store.flush()
    assert store.dropped_batches == 0


def rows(store: Store, query: str) -> list[tuple]:
    with sqlite3.connect(store.path) as db:
        return db.execute(query).fetchall()


def test_rounds_roll_up_into_minutes_and_hours_with_the_last_weight_and_state(tmp_path: Path):
    store = Store(str(tmp_path / "h.db"))
    # the first half hour s2 serves (weight 1, 30 active), then it is drained (weight 0, 0)
    drive(store, T0, T0 + 2 * HOUR + 120, 10,
          lambda t: service(1, 30) if t < T0 + 1800 else service(0, 0))
    minutes = rows(store, "SELECT minute, n, weight, state, active_avg, active_max, share_avg "
                          "FROM lb_minutes JOIN lb_servers ON id = rs WHERE server = 's2' "
                          "ORDER BY minute")
    assert minutes[0] == (int(T0 // 60), 6, 1, "serving", 30, 30, 7500)
    assert minutes[30] == (int(T0 // 60) + 30, 6, 0, "drained", 0, 0, 0)
    hours = rows(store, "SELECT hour, n, weight, state, active_avg, active_max, share_avg "
                        "FROM lb_hours JOIN lb_servers ON id = rs WHERE server = 's2' "
                        "ORDER BY hour")
    # the first hour: half serving, half drained, ending drained; averages over its rounds
    assert hours[0] == (int(T0 // HOUR), 360, 0, "drained", 15, 30, 3750)
    assert hours[1][1:4] == (360, 0, "drained")
    store.close()


def test_the_past_lb_view_comes_from_minutes_once_raw_rounds_expired(tmp_path: Path):
    store = Store(str(tmp_path / "h.db"), raw_retention=HOUR)
    drive(store, T0, T0 + 3 * HOUR, 10,
          lambda t: service(1, 30) if t < T0 + 1800 else service(0, 0))
    store.record_tick(T0 + 3 * HOUR, [], ())  # a tick after PRUNE_EVERY: retention runs
    store.flush()
    assert rows(store, "SELECT min(ts) FROM lb_samples")[0][0] >= (T0 + 2 * HOUR) * 1000
    with sqlite3.connect(store.path) as db:
        early, _ = servers_at(db, T0 + 600)  # raw rounds gone: the minute's row tells it
        late, _ = servers_at(db, T0 + 2.5 * HOUR)  # raw
        never, _ = servers_at(db, T0 - HOUR)  # before any round
    s2 = {s.key: s for s in early[0].servers}["s2"]
    assert (s2.state, s2.weight, s2.active_conns, s2.node_id) == ("serving", 1, 30, "node2")
    assert s2.conn_share == pytest.approx(0.75) and early[0].share_history["s2"] == ()
    s2 = {s.key: s for s in late[0].servers}["s2"]
    assert (s2.state, s2.weight) == ("drained", 0) and len(late[0].share_history["s2"]) > 5
    assert never == ()
    store.close()


def test_a_servers_share_series_for_the_node_detail(tmp_path: Path):
    store = Store(str(tmp_path / "h.db"))
    drive(store, T0, T0 + 600, 10, lambda t: service(1, 30) if t < T0 + 300 else service(0, 0))
    name = metric_name("haproxy", "web", "s2")
    points = store.history("node2", [name], 600, now=T0 + 600)[name]
    assert points[0] == (T0, 75.0) and points[-1] == (T0 + 590, 0.0)
    store.close()


def test_the_recorder_gives_each_server_its_recent_shares_and_forgets_gone_ones():
    rec = LBRecorder()
    for k in range(40):
        views, stored = rec.observe(T0 + k, service(1, 30 if k < 35 else 0))
        assert stored is not None
    s2 = views[0].share_history["s2"]
    assert len(s2) == 30 and s2[-1] == (0.0, 0.5)
    views, _ = rec.observe(T0 + 41, (LBServiceView("web", "haproxy", "http", "rr", (), 0.0),))
    views, _ = rec.observe(T0 + 42, service(1, 30))
    assert len(views[0].share_history["s2"]) == 1  # it was gone: a new history


def test_the_sparkline_reaches_an_attached_ui_and_status_json():
    import json

    from ctop.codec import from_plain, pack_compact, to_plain, unpack_compact
    from tests.helpers.sample import sample_snapshot

    snap = sample_snapshot(12)
    history = {svc.key: dict(svc.share_history) for svc in snap.lb}
    assert any(history.values())
    attached = unpack_compact(pack_compact(snap))
    scripted = from_plain(json.loads(json.dumps(to_plain(snap))))
    for other in (attached, scripted):
        assert {svc.key: dict(svc.share_history) for svc in other.lb} == history
