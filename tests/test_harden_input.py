"""Input that must not silence the director (issue 10, points 1-4), with real `ctop serve`
processes, real UDP datagrams signed with the cluster key, and a real SQLite database."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from agentd.encoder import encode
from agentd.metrics import SCALARS
from agentd.protocol import MAX_VALUE, Rejected, Report, seal
from ctop.ingest.verifier import Verifier
from ctop.snapshot import Liveness, NodeView
from ctop.store import Store
from tests.helpers.agent_helpers import start_agent, stop_agent, write_key
from tests.helpers.serve_helpers import Daemon, Sender, fill, free_udp_port, node, samples, tmpfs


def hostile_report(sender: Sender, **overrides: object) -> bytes:
    """A correctly signed report whose scalars say 2^64-1 TCP connections."""
    h = sender.header()
    scalars = [0] * len(SCALARS)
    scalars[[m.name for m in SCALARS].index("tcp_established")] = 2**64 - 1
    body = {"k": "r", "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3), "i": 1.0,
            "m": {"v": scalars}, "s": []}
    body.update(overrides)
    return sender.raw(body)


def hostile_join(sender: Sender) -> bytes:
    h = sender.header()
    return sender.raw({"k": "j", "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3),
                       "h": "evil", "a": [], "cr": 2**64 - 1, "mt": 2**64 - 1, "v": "x",
                       "i": 1.0, "g": ""})


def test_a_report_with_a_huge_integer_is_refused_and_history_goes_on(tmp_path):
    d = Daemon(tmp_path).start()
    good, evil = Sender("good"), Sender("evil")
    try:
        d.send(good.join())
        d.send(good.report())
        d.wait_for(lambda s: samples(d.db, "good") > 0, what="first samples")
        for _ in range(3):
            d.send(hostile_report(evil))
            d.send(hostile_join(Sender("evil2")))
            time.sleep(0.3)
        before = samples(d.db, "good")
        deadline = time.monotonic() + 10
        while samples(d.db, "good") <= before + 2 and time.monotonic() < deadline:
            d.send(good.report())
            time.sleep(0.3)
        # history goes on for every other node, and the bad reports are counted as bad_field
        assert samples(d.db, "good") > before + 2
        status = d.status()
        assert status["drops"].get("bad_field", 0) >= 4, status["drops"]
        assert node(status, "evil2") is None
        assert status["history_error"] == ""
        text = d.status_text()
        assert "bad_field" in text and "127.0.0.1" in text
    finally:
        _, err = d.stop()
    assert "Traceback" not in err


def _view(node_id: str, conns: int, ts: float) -> NodeView:
    return NodeView(node_id, node_id, "", Liveness.ALIVE, ts, 1, 1.0, conns=conns,
                    metrics={"cpu_percent": 1.0})


def test_the_store_writer_survives_a_row_sqlite_refuses(tmp_path, caplog):
    """The decoder bounds every value; the writer must still never die of one bad row."""
    store = Store(str(tmp_path / "h.db"))
    try:
        now = time.time()
        store.record_tick(now, [_view("ok", 5, now), _view("bad", 2**64 - 1, now)], [])
        store.flush()
        assert store._writer.is_alive()
        assert "node bad" in store.health.text() and "history failing since" in \
            store.health.text()
        later = now + 2
        store.record_tick(later, [_view("ok", 6, later), _view("bad", 7, later)], [])
        store.flush()
        assert store.health.text() == ""  # a batch that commits again clears it
        points = store.history("ok", ["tcp_established"], 60, now=later + 1)
        assert [v for _, v in points["tcp_established"]] == [5, 6]  # nothing lost but the bad row
    finally:
        store.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """An 8 MiB tmpfs: a real full disk for the database."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with tmpfs(tmp_path / "disk") as where:
        yield where


@pytest.mark.root
def test_a_full_disk_is_reported_not_logged_every_second(tmp_path, tiny_disk):
    prom = free_udp_port()
    d = Daemon(tmp_path, f'[prometheus]\nlisten = "127.0.0.1:{prom}"',
               db=tiny_disk / "ctop.db").start()
    senders = [Sender(f"n{i}") for i in range(20)]
    try:
        for s in senders:
            d.send(s.report())
        d.wait_for(lambda s: samples(d.db, "n0") > 0, what="first samples")
        filler = fill(tiny_disk)
        status = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for s in senders:
                d.send(s.report())
            status = d.status()
            if status["history_error"]:
                break
            time.sleep(0.2)
        assert status["history_error"].startswith("history failing since "), status
        assert "full" in status["history_error"]
        assert "history failing since" in d.status_text()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read()
        assert b'ctop_history_failing{cluster="t",reason="history failing since' in metrics
        assert b"ctop_history_failing_since_seconds" in metrics
        for _ in range(10):  # keep failing for a few more ticks
            for s in senders:
                d.send(s.report())
            time.sleep(0.3)
        filler.unlink()  # room again: history comes back and says so
        d.wait_for(lambda s: not s["history_error"], timeout=15, what="recovery")
    finally:
        _, err = d.stop()
    assert "Traceback" not in err
    assert err.count("history write failing") == 1, err  # at most once a minute


def test_a_captured_leave_of_an_earlier_boot_is_refused_after_a_director_restart(tmp_path):
    d = Daemon(tmp_path).start()
    first = Sender("n1")
    d.send(first.join())
    d.send(first.report())
    captured = first.leave()  # what an attacker on the path records
    d.send(captured)
    d.wait_for(lambda s: (n := node(s, "n1")) is not None and n["liveness"] == "left",
               what="left")
    second = Sender("n1")  # the agent restarts: a new boot
    d.send(second.report())
    d.wait_for(lambda s: node(s, "n1")["liveness"] == "alive", what="alive again")
    time.sleep(1.5)  # a tick: the new boot's mark is saved
    d.stop(signal.SIGKILL)  # a crash, not even a clean stop
    d = d.again()
    try:
        d.send(captured)  # replayed at once, within max_age of its capture
        d.send(second.report())
        status = d.wait_for(lambda s: node(s, "n1") is not None, what="n1 after the restart")
        assert status["drops"].get("replay") == 1
        assert node(status, "n1")["liveness"] == "alive"
        assert [e for e in status["events"] if e[1] == "leave"] == []  # no false `left`
    finally:
        d.stop()


def test_a_forged_sequence_jump_cannot_silence_a_node(tmp_path):
    d = Daemon(tmp_path).start()
    real = Sender("n1")
    try:
        d.send(real.report())
        d.wait_for(lambda s: node(s, "n1") is not None, what="n1")
        forged = Sender("n1", boot=real.boot)  # holds the cluster key, not the node
        forged.seq = 2**63 - 2
        d.send(forged.report(cpu_percent=1.0))
        for _ in range(3):
            time.sleep(0.3)
            d.send(real.report(cpu_percent=77.0))
        status = d.wait_for(lambda s: node(s, "n1")["cpu"] == 77.0, what="the real reports")
        assert status["drops"].get("seq_jump") == 1
        d.send(real.report(cpu_percent=77.0))
        assert node(d.status(), "n1")["liveness"] == "alive"
    finally:
        d.stop()


def test_per_node_keys_let_a_node_speak_only_for_itself(tmp_path):
    master = write_key(tmp_path / "master.key", key=os.urandom(32).hex().encode())
    d = Daemon(tmp_path, f'master_key_file = "{master}"')
    issued = d.ctop("keys", "issue", "n1")
    assert issued.returncode == 0, issued.stderr
    n1_key = write_key(tmp_path / "n1.key", key=issued.stdout.strip().encode())
    (tmp_path / "agent.toml").write_text("")
    d.start()
    agents = [start_agent("--config", str(tmp_path / "agent.toml"), "--director",
                          f"127.0.0.1:{d.port}", "--key-file", str(key), "--node-id", node_id,
                          "--interval", "0.2")
              for node_id, key in (("n1", n1_key), ("n2", n1_key), ("n3", d.key_file))]
    try:
        status = d.wait_for(lambda s: node(s, "n1") is not None
                            and s["drops"].get("bad_tag", 0) >= 4, what="n1 and rejects")
        time.sleep(1)
        status = d.status()
        assert [n["node_id"] for n in status["nodes"]] == ["n1"]  # n1's key is n1's alone
        assert node(status, "n1")["liveness"] == "alive"
        # an operator sees which host sends what it may not
        assert status["drop_sources"]["bad_tag"][0][0] == "127.0.0.1"
    finally:
        for agent in agents:
            stop_agent(agent)
        d.stop()


def _rollup(db: Path, node_id: str, minute: int) -> tuple[int, int] | None:
    """(samples in the minute, cpu average x10) of one node's rollup row, or None."""
    import sqlite3

    with sqlite3.connect(db) as c:
        return c.execute("SELECT r.n, r.cpu_avg FROM rollups AS r JOIN nodes ON nodes.id = r.node "
                         "WHERE nodes.node_id = ? AND r.minute = ?", (node_id, minute)).fetchone()


def _report_for(d: Daemon, sender: Sender, seconds: float) -> int:
    """Reports every 0.2 s inside one minute (waits for a fresh minute if too close to its
    end); returns that minute."""
    if time.time() % 60 > 60 - seconds - 3:
        time.sleep(60 - time.time() % 60 + 0.5)
    minute = int(time.time() // 60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        d.send(sender.report(interval=0.2, cpu_percent=40.0))
        time.sleep(0.2)
    return minute


def test_a_clean_stop_keeps_the_minute_in_progress(tmp_path):
    d = Daemon(tmp_path).start()
    minute = _report_for(d, Sender("n1"), 2.5)
    code, err = d.stop()
    assert code == 0, err
    row = _rollup(d.db, "n1", minute)
    assert row is not None and row[0] >= 2 and row[1] == 400


def test_a_killed_daemon_s_minute_is_rebuilt_from_raw_samples(tmp_path):
    d = Daemon(tmp_path).start()
    sender = Sender("n1")
    minute = _report_for(d, sender, 2.5)
    time.sleep(1.2)  # a tick commits the raw samples
    stored = samples(d.db, "n1")
    d.stop(signal.SIGKILL)
    assert _rollup(d.db, "n1", minute) is None
    d = d.again()
    try:
        row = _rollup(d.db, "n1", minute)
        assert row == (stored, 400)
    finally:
        d.stop()


def test_a_minute_split_by_a_restart_is_one_rollup_of_both_parts(tmp_path):
    path = str(tmp_path / "h.db")
    t0 = (time.time() // 60) * 60 - 120  # a whole minute in the past
    store = Store(path)
    for i in range(10):
        store.record_tick(t0 + i, [_view("n", 10, t0 + i)._replace(cpu=20.0)], [])
    store.close()  # the clean stop writes the first 10 seconds
    store = Store(path)
    for i in range(10, 40):
        store.record_tick(t0 + i, [_view("n", 10, t0 + i)._replace(cpu=60.0)], [])
    store.record_tick(t0 + 61, [], [])  # the minute ends
    store.close()
    assert _rollup(Path(path), "n", int(t0 // 60)) == (40, 500)  # (10 x 20 + 30 x 60) / 40


def _body(**over: object) -> dict:
    h = Sender("n").header()
    scalars = [0] * len(SCALARS)
    body = {"k": "r", "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3), "i": 1.0,
            "m": {"v": scalars, "cc": [10, 20]}, "s": [["web", 0, 15]]}
    body.update(over)
    return body


def _scalar(name: str, value: int) -> dict:
    scalars = [0] * len(SCALARS)
    scalars[[m.name for m in SCALARS].index(name)] = value
    return {"v": scalars}


@pytest.mark.parametrize("what, body", [
    ("connections past 2^53", _body(m=_scalar("tcp_established", 2**64 - 1))),
    ("cpu above 100 %", _body(m=_scalar("cpu_percent", 1001))),
    ("a core above 100 %", _body(m={"v": [0] * len(SCALARS), "cc": [50, 101]})),
    ("an interface rate past 2^53", _body(m={"ni": {"eth0": [2**60, 0, 0, 0]}})),
    ("a latency past 2^53", _body(s=[["web", 0, 2**60]])),
    ("a status code past 255", _body(s=[["web", 2**40, 15]])),
    ("a boot id past signed 64 bits", _body(b=2**64 - 1)),
    ("a sequence past 2^63-1", _body(q=2**63)),
    ("a group of 1,000 characters", _body(g="g" * 1000)),
    ("a 2^64-1 process id", _body(m={"tp": [["x", 2**64 - 1, 0, 0]]})),
])
def test_every_field_out_of_its_bounds_is_bad_field(what, body):
    verifier = Verifier(KEY_FOR_BOUNDS)
    got = verifier.verify(seal(KEY_FOR_BOUNDS, body))
    assert isinstance(got, Rejected) and got.reason == "bad_field", (what, got)


def test_a_join_with_absurd_cores_or_memory_is_bad_field():
    verifier = Verifier(KEY_FOR_BOUNDS)
    for over in ({"cr": 2**64 - 1}, {"mt": 2**64 - 1}, {"cr": 0}, {"a": ["x" * 300]}):
        h = Sender("n").header()
        body = {"k": "j", "n": h.node, "b": h.boot, "q": h.seq, "t": round(h.ts, 3), "h": "n",
                "a": [], "cr": 4, "mt": 1 << 30, "v": "1", "i": 1.0, "g": "", **over}
        got = verifier.verify(seal(KEY_FOR_BOUNDS, body))
        assert isinstance(got, Rejected) and got.reason == "bad_field", (over, got)


def test_the_agent_clamps_to_the_bounds_so_a_glitch_never_mutes_a_node():
    sent = Report(Sender("n").header(), 1.0, "", {"cpu_percent": 100.4,
                                                       "tcp_established": 2**70})
    got = Verifier(KEY_FOR_BOUNDS).verify(encode(KEY_FOR_BOUNDS, sent))
    assert isinstance(got, Report)
    assert got.metrics["cpu_percent"] == 100 and got.metrics["tcp_established"] == MAX_VALUE


KEY_FOR_BOUNDS = b"0123456789abcdef0123456789abcdef"
