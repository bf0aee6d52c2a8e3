"""Several receiver processes (`[receive] workers`, ctop/ingest/workers.py): real UDP from many
source ports, real worker processes, the real engine; real agentd processes where liveness
counts, a real `ctop serve` for the status."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time

import pytest
import pytest_asyncio

from ctop.cluster import Liveness
from tests.helpers.engine_helpers import make_engine, start_agent, until
from tests.helpers.serve_helpers import CTOP, Daemon, Sender


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _seqs(engine, node: str) -> list[int]:
    return list(engine.model.nodes[node].seqs)


def _read(engine) -> list[int]:
    return [w["datagrams"] for w in engine.workers.status()]


async def _settle(engine, quiet: float = 0.3) -> None:
    """Wait until nothing more is applied for `quiet` seconds (frames come every 50 ms)."""
    last = -1
    while last != engine.model.received:
        last = engine.model.received
        await asyncio.sleep(quiet)


@pytest_asyncio.fixture(loop_scope="function")
async def engine(tmp_path):
    e = make_engine(tmp_path, receive_workers=2)
    await e.start()
    yield e
    await e.stop()


async def test_distinct_nodes_from_many_ports_arrive_once_each_in_order(engine):
    """300 nodes, each from its own source port: the kernel spreads them over both workers;
    every join and report is applied once, each node's sequence complete and in order."""
    nodes = [(Sender(f"n{i:03d}"), _socket()) for i in range(300)]
    addr = ("127.0.0.1", engine.port)
    for sender, sock in nodes:
        sock.sendto(sender.join(), addr)
    for _ in range(5):
        for sender, sock in nodes:
            sock.sendto(sender.report(interval=1.0), addr)
    total = 300 * 6
    await until(lambda: engine.model.received >= total, timeout=20)
    await _settle(engine)
    assert engine.model.received == total
    assert engine.receiver.accepted == total
    assert not engine.receiver.drops
    for sender, _ in nodes:
        assert _seqs(engine, sender.node_id) == [1, 2, 3, 4, 5, 6]
    read = _read(engine)
    assert sum(read) == total and all(read), read  # both workers took a share
    for _, sock in nodes:
        sock.close()


async def _port_of_each_worker(engine) -> dict[int, socket.socket]:
    """A source socket the kernel hashes to each worker (found with throwaway nodes)."""
    found: dict[int, socket.socket] = {}
    addr = ("127.0.0.1", engine.port)
    for i in range(64):
        sock = _socket()
        before = _read(engine)
        sock.sendto(Sender(f"probe{i}").join(), addr)
        await until(lambda b=before: _read(engine) != b, timeout=5)
        worker = next(w for w, (a, b) in enumerate(zip(_read(engine), before, strict=True))
                      if a != b)
        if worker in found:
            sock.close()
        else:
            found[worker] = sock
        if len(found) == 2:
            return found
    raise AssertionError("64 source ports all reached one worker")


async def test_a_node_that_changes_source_port_moves_worker_and_loses_nothing(engine):
    """The node's reports go to worker 0, then (new source port) worker 1, then back: the
    worker that has not seen it accepts it, the one that has takes the later sequence; each
    report is applied once and nothing is refused."""
    sockets = await _port_of_each_worker(engine)
    await _settle(engine)
    base = engine.model.received
    addr = ("127.0.0.1", engine.port)
    node = Sender("mover")
    sent = 0
    for worker in (0, 1, 0):
        for data in [node.join()] if sent == 0 else []:
            sockets[worker].sendto(data, addr)
            sent += 1
        for _ in range(3):
            sockets[worker].sendto(node.report(interval=1.0), addr)
            sent += 1
        await until(lambda s=sent: engine.model.received - base >= s, timeout=5)
    await _settle(engine)
    assert engine.model.received - base == sent == 10
    assert _seqs(engine, "mover") == list(range(1, 11))
    assert not engine.receiver.drops


async def test_bad_datagrams_are_counted_once_by_reason_and_source(engine):
    addr = ("127.0.0.1", engine.port)
    sock = _socket()
    sock.sendto(b"not ctop at all", addr)  # malformed
    sock.sendto(Sender("forger", key=b"k" * 32).report(), addr)  # bad_tag
    good = Sender("good")
    sock.sendto(good.join(), addr)
    replayed = good.report()
    sock.sendto(replayed, addr)
    sock.sendto(replayed, addr)  # replay: refused by the worker that saw the first
    await until(lambda: sum(engine.receiver.drops.values()) >= 3, timeout=5)
    await _settle(engine, quiet=0.5)
    assert dict(engine.receiver.drops) == {"malformed": 1, "bad_tag": 1, "replay": 1}
    assert engine.receiver.top_sources()["malformed"] == (("127.0.0.1", 1),)
    await until(lambda: engine.snapshot().drops == {"malformed": 1, "bad_tag": 1,
                                                    "replay": 1}, timeout=5)
    assert engine.model.received == 2
    sock.close()


async def test_a_replay_through_another_worker_is_refused_by_the_engine(engine):
    """A captured report replayed from a source port that hashes to the other worker passes
    that worker (it never saw the node) and is refused by the engine's order check: counted
    once, as a replay, and not applied twice."""
    sockets = await _port_of_each_worker(engine)
    await _settle(engine)
    base = engine.model.received
    addr = ("127.0.0.1", engine.port)
    node = Sender("victim")
    sockets[0].sendto(node.join(), addr)
    captured = node.report(interval=1.0)
    sockets[0].sendto(captured, addr)
    await until(lambda: engine.model.received - base >= 2, timeout=5)
    sockets[1].sendto(captured, addr)
    await until(lambda: engine.receiver.drops.get("replay"), timeout=5)
    await _settle(engine)
    assert engine.model.received - base == 2
    assert dict(engine.receiver.drops) == {"replay": 1}
    assert _seqs(engine, "victim") == [1, 2]


async def test_a_killed_worker_is_restarted_and_its_nodes_stay_alive(tmp_path):
    """kill -9 of the worker that reads real agents (1 s reports, 0.25 s beacons: suspect
    after ~1.9 s of silence): it is back within RESTART_BOUND, the death is an event, the
    datagrams that waited in its socket are read by its successor, and no node turns
    suspect or dead."""
    (tmp_path / "none.toml").write_text("")  # the agents' (empty) config
    engine = make_engine(tmp_path, receive_workers=2)
    await engine.start()
    agents = [start_agent(tmp_path, engine.port, f"a{i}", "--interval", "1")
              for i in range(6)]
    try:
        names = [f"a{i}" for i in range(6)]
        await until(lambda: all(n in engine.model.nodes for n in names), timeout=30)
        await asyncio.sleep(1.5)  # beacons flowing for every node
        busy = max(engine.workers.status(), key=lambda w: w["datagrams"])
        seen_before = {n: engine.model.nodes[n].seqs[-1] for n in names}
        events_before = len(engine.events)
        read_at_kill = busy["datagrams"]
        killed = time.monotonic()
        os.kill(busy["pid"], signal.SIGKILL)

        def reading_again() -> bool:  # a new process, and it has handed over datagrams
            w = engine.workers.status()[busy["worker"]]
            return w["pid"] not in (0, busy["pid"]) and w["datagrams"] > read_at_kill

        await until(reading_again, timeout=10, step=0.01)
        took = time.monotonic() - killed
        print(f"worker restart: {took:.2f} s from the kill to datagrams read again")
        assert took < RESTART_BOUND, f"restart took {took:.2f} s"
        await asyncio.sleep(3.0)  # past the beacon suspect time (1.9 s)
        new = list(engine.events)[events_before:]
        died = [e for e in new if e.kind == "receiver"]
        assert len(died) == 1 and f"pid {busy['pid']}" in died[0].message
        assert "signal 9" in died[0].message
        assert [e for e in new if e.kind == "state"] == []
        for n in names:
            node = engine.model.nodes[n]
            assert node.liveness is Liveness.ALIVE
            assert node.seqs[-1] > seen_before[n]
        assert engine.workers.status()[busy["worker"]]["restarts"] == 1
        assert "unknown_boot" not in engine.receiver.drops  # beacons taken at once
    finally:
        for a in agents:
            a.terminate()
        for a in agents:
            a.wait()
        await engine.stop()


# A worker is a fresh `python -m ctop.ingest.worker`: ~0.2 s on an idle machine, more on a
# busy 2-core one. Below the 1.9 s after which a beaconing node turns suspect.
RESTART_BOUND = 1.5


def test_ctop_status_shows_the_receiver_processes(tmp_path):
    daemon = Daemon(tmp_path, "[receive]\nworkers = 2").start()
    try:
        sender = Sender("s1")
        daemon.send(sender.join())
        daemon.send(sender.report())
        status = daemon.wait_for(lambda s: s.get("receivers") and sum(
            w["datagrams"] for w in s["receivers"]) == 2, what="2 datagrams read")
        pids = [w["pid"] for w in status["receivers"]]
        assert len(pids) == 2 and all(pids)
        for pid in pids:  # real processes, children of the daemon
            with open(f"/proc/{pid}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[1]) == daemon.proc.pid
        text = daemon.status_text()
        assert "receivers: 2 worker processes" in text
        assert f"worker 0: pid {pids[0]}" in text
    finally:
        code, err = daemon.stop()
    assert code == 0, err
    for pid in pids:  # the workers end with the daemon
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_gives_every_worker_the_rotated_key(tmp_path, workers):
    """The key file is rotated and `ctop serve` gets SIGHUP: the engine (workers = 1) or both
    workers take the new key (a node on each worker is accepted with it) and refuse the old
    one; a key file readable by others is refused, the running key stays, and both say so as
    events."""
    daemon = Daemon(tmp_path, f"[receive]\nworkers = {workers}").start()
    try:
        # a node known before the rotation: its boot's beacon check must take the new key too
        # (an AttributeError in the reload once a boot was known, found in review)
        daemon.udp.sendto(Sender("before").join(), ("127.0.0.1", daemon.port))
        daemon.wait_for(lambda s: any(n["node_id"] == "before" for n in s["nodes"]),
                        what="a node on the old key")
        new_key = b"fedcba9876543210fedcba9876543210"
        daemon.key_file.write_bytes(new_key)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda s: any("keys reloaded" in e[3] for e in s["events"]),
                        what="the reload event")
        senders = [(Sender(f"rot{i}", key=new_key), _socket()) for i in range(16)]
        for sender, sock in senders:  # 16 source ports: both workers see the new key
            sock.sendto(sender.join(), ("127.0.0.1", daemon.port))
        daemon.udp.sendto(Sender("stale").join(), ("127.0.0.1", daemon.port))  # old key
        status = daemon.wait_for(
            lambda s: len(s["nodes"]) == 17 and s["drops"].get("bad_tag") == 1,
            what="16 nodes on the new key, the old key refused")
        if workers > 1:
            assert all(w["datagrams"] for w in status["receivers"]), status["receivers"]
        daemon.key_file.chmod(0o644)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda s: any("keys not reloaded" in e[3] and "readable by others"
                                      in e[3] for e in s["events"]), what="the refusal")
        daemon.key_file.chmod(0o600)
        late = Sender("late", key=new_key)
        daemon.send(late.join())
        daemon.wait_for(lambda s: any(n["node_id"] == "late" for n in s["nodes"]),
                        what="the new key still in use")
        for _, sock in senders:
            sock.close()
    finally:
        code, err = daemon.stop()
    assert code == 0, err


async def test_a_stuck_worker_is_killed_and_replaced(engine):
    """A worker that stops reading (SIGSTOP here; a loop on some input alike) while datagrams
    wait for it is killed after HUNG_AFTER and replaced; what waited is then applied."""
    from ctop.ingest.workers import HUNG_AFTER

    sockets = await _port_of_each_worker(engine)
    await _settle(engine)
    stuck = engine.workers.status()[0]
    os.kill(stuck["pid"], signal.SIGSTOP)
    node = Sender("patient")
    sockets[0].sendto(node.join(), ("127.0.0.1", engine.port))
    stopped = time.monotonic()
    await until(lambda: "patient" in engine.model.nodes, timeout=HUNG_AFTER + 10)
    assert time.monotonic() - stopped >= HUNG_AFTER - 1.5  # not killed for a short pause
    died = [e for e in engine.events if e.kind == "receiver"]
    assert len(died) == 1 and "stuck" in died[0].message
    assert f"pid {stuck['pid']}" in died[0].message
    assert engine.workers.status()[0]["pid"] not in (0, stuck["pid"])


async def test_a_second_director_on_the_same_port_fails_loudly(engine, tmp_path):
    """SO_REUSEPORT lets sockets of one user share a port: a second director with workers
    must still be refused the port, not quietly take a share of the agents."""
    from dataclasses import replace

    from ctop.engine import Engine
    from ctop.startup import StartError

    (tmp_path / "other").mkdir()
    config = make_engine(tmp_path / "other", receive_workers=2).config
    other = Engine(replace(config, listen=("127.0.0.1", engine.port)))
    with pytest.raises(StartError, match=f"cannot listen on udp 127.0.0.1:{engine.port}"):
        await other.start()
    await other.stop()


def test_receivers_flag_overrides_the_config_and_refuses_nonsense(tmp_path):
    daemon = Daemon(tmp_path, "[receive]\nworkers = 1")
    bad = daemon.ctop("serve", "--receivers", "lots")
    assert bad.returncode != 0
    assert '--receivers: expected a number of processes 1..256 or "auto"' in bad.stderr
    daemon.proc = subprocess.Popen([str(CTOP), "serve", "--config", str(daemon.config),
                                    "--receivers", "2"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # up: the control socket answers
            assert daemon.proc.poll() is None, daemon.proc.communicate()[1]
            try:
                daemon.status()
                break
            except RuntimeError:
                time.sleep(0.05)
        status = daemon.wait_for(lambda s: len(s.get("receivers", ())) == 2,
                                 what="2 receivers from the flag")
        assert all(w["pid"] for w in status["receivers"])
    finally:
        code, err = daemon.stop()
    assert code == 0, err


async def test_a_full_report_reaches_the_model_as_the_engine_would_decode_it(engine):
    """Real metrics of this machine (per-core lists, maps, top processes) and services: the
    model holds exactly what the engine's own verifier makes of the newest report (values and
    their types: tuples stay tuples), every sequence counted; top_procs left out of a later
    report (unchanged: the agent leaves it out) is carried from the one before."""
    from agentd.collect import Collector
    from agentd.encoder import encode
    from agentd.protocol import Report, ServiceStatus
    from ctop.ingest.verifier import Verifier
    from tests.helpers.agent_helpers import KEY

    collector = Collector(interval=0.2)
    collector.sample()
    await asyncio.sleep(0.2)
    samples = [collector.sample() for _ in range(3)]
    assert samples[0]["top_procs"] and samples[0]["cpu_cores"]
    samples[1]["top_procs"] = samples[0]["top_procs"]
    del samples[2]["top_procs"]
    node = Sender("full")
    sock = _socket()
    addr = ("127.0.0.1", engine.port)
    join = node.join()
    sent = []
    for i, metrics in enumerate(samples):
        services = (ServiceStatus("http", "ok", 1.5, "", i),
                    ServiceStatus("db", "fail", None, "refused", i))
        sent.append(encode(KEY, Report(node.header(), 1.0, "web", metrics, services)))
    verifier = Verifier(KEY)
    expected = [verifier.verify(data) for data in sent]
    sock.sendto(join, addr)
    sock.sendto(sent[0], addr)
    await until(lambda: engine.model.received >= 2, timeout=10)
    sock.sendto(sent[1], addr)  # two quickly: the newest is the one shown
    sock.sendto(sent[2], addr)
    await until(lambda: engine.model.received >= 4, timeout=10)
    engine.model.fold()
    state = engine.model.nodes["full"]
    want = dict(expected[2].metrics, top_procs=expected[0].metrics["top_procs"])
    assert state.metrics == want
    for name, value in want.items():
        assert type(state.metrics[name]) is type(value), name
    assert [type(p) for p in state.metrics["top_procs"]] == [tuple] * len(want["top_procs"])
    assert state.services == expected[2].services
    assert [type(s) for s in state.services] == [ServiceStatus, ServiceStatus]
    assert state.group == "web"
    assert list(state.seqs) == [1, 2, 3, 4]
    assert list(state.cpu_history)[-1] == want["cpu_percent"]
    assert not engine.receiver.drops
    sock.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_forgotten_nodes_beacons_are_refused_as_an_unknown_nodes(tmp_path, workers):
    """A node that left is dropped after forget_left_after; a beacon of its boot after that
    is refused as `unknown_boot`, with or without receiver workers (the engine's own receiver
    forgot it; so must every worker, and a worker started after the drop)."""
    from agentd.beacon import encode_beacon
    from ctop.config import LivenessConfig
    from tests.helpers.agent_helpers import KEY

    engine = make_engine(tmp_path, receive_workers=workers, liveness=LivenessConfig(
        suspect_after=2.5, dead_after=5.0, forget_left_after=0.3))
    await engine.start()
    sock = _socket()  # one source port: one worker sees all of it
    addr = ("127.0.0.1", engine.port)
    try:
        node = Sender("gone")
        sock.sendto(node.join(), addr)
        sock.sendto(node.report(), addr)
        sock.sendto(encode_beacon(KEY, node.boot, node.seq + 1, 0.25), addr)
        node.seq += 1
        await until(lambda: engine.receiver.beacons == 1, timeout=10)
        sock.sendto(node.leave(), addr)
        await until(lambda: "gone" not in engine.model.nodes
                    and any(e.kind == "forget" for e in engine.events), timeout=10)
        sock.sendto(encode_beacon(KEY, node.boot, node.seq + 1, 0.25), addr)
        node.seq += 1
        await until(lambda: engine.receiver.drops.get("unknown_boot") == 1, timeout=5)
        if workers > 1:  # a worker started now is not told of the dropped node either
            reader = max(engine.workers.status(), key=lambda w: w["datagrams"])
            os.kill(reader["pid"], signal.SIGKILL)
            await until(lambda: engine.workers.status()[reader["worker"]]["pid"]
                        not in (0, reader["pid"]), timeout=10)
            sock.sendto(encode_beacon(KEY, node.boot, node.seq + 1, 0.25), addr)
            await until(lambda: engine.receiver.drops.get("unknown_boot") == 2, timeout=5)
        await asyncio.sleep(0.3)
        assert engine.receiver.beacons == 1
        assert set(engine.receiver.drops) == {"unknown_boot"}
        assert "gone" not in engine.model.nodes
    finally:
        sock.close()
        await engine.stop()


async def test_a_crashing_workers_traceback_goes_to_the_log_not_the_terminal(
        tmp_path, capfd, caplog):
    """A worker that crashes (here: a control frame it cannot read) writes its traceback to
    the engine's log, not to the terminal an embedded UI owns; the death event names the
    exception."""
    import logging

    from ctop.ingest import handoff

    caplog.set_level(logging.INFO, logger="ctop.ingest.worker")
    engine = make_engine(tmp_path, receive_workers=2)
    await engine.start()
    try:
        for sock in (await _port_of_each_worker(engine)).values():  # both at work
            sock.close()
        slot = engine.workers.slots[0]
        pid = slot.process.pid
        engine.workers._send(slot, handoff.LENGTH.pack(5) + b"junk!")
        await until(lambda: any(e.kind == "receiver" for e in engine.events), timeout=20)
        died = [e for e in engine.events if e.kind == "receiver"]
        await until(lambda: engine.workers.status()[0]["pid"] not in (0, pid), timeout=10)
    finally:
        await engine.stop()
    terminal = capfd.readouterr()
    assert "Traceback" not in terminal.err and "UnpicklingError" not in terminal.err
    assert "Traceback" not in terminal.out
    assert len(died) == 1 and f"pid {pid}" in died[0].message
    assert "exit status 1: _pickle.UnpicklingError" in died[0].message, died[0].message
    logged = [r.getMessage() for r in caplog.records if r.name == "ctop.ingest.worker"]
    assert any("receiver worker 0 wrote:\nTraceback" in m and "UnpicklingError" in m
               for m in logged), logged


async def test_a_key_rotation_while_the_workers_start_is_not_lost(tmp_path):
    """SIGHUP's reload right after the start (the workers still importing): each worker
    reads its settings and the new keys in one read, and must take both (the keys were
    dropped with the rest of that read before)."""
    engine = make_engine(tmp_path, receive_workers=2)
    await engine.start()
    try:
        new_key = b"fedcba9876543210fedcba9876543210"
        with open(engine.config.key_file, "wb") as f:
            f.write(new_key)
        assert engine.reload_keys()
        senders = [(Sender(f"rot{i}", key=new_key), _socket()) for i in range(16)]
        for sender, sock in senders:  # 16 source ports: both workers
            sock.sendto(sender.join(), ("127.0.0.1", engine.port))
        await until(lambda: len(engine.model.nodes) == 16 or engine.receiver.drops,
                    timeout=20)
        await _settle(engine)
        assert not engine.receiver.drops
        assert len(engine.model.nodes) == 16
        assert all(_read(engine)), _read(engine)
        for _, sock in senders:
            sock.close()
    finally:
        await engine.stop()
