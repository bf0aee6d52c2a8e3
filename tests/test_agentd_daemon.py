"""A real agentd subprocess sending to a real UDP socket: join, reports, leave, signatures."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agentd import __version__
from agentd.beacon import Beacon, is_beacon
from agentd.metrics import METRICS
from agentd.protocol import Join, Leave, Message, Reason, Rejected, Report
from ctop.ingest.beacons import BeaconVerifier
from ctop.ingest.verifier import Verifier
from tests.helpers.agent_helpers import (
    AGENTD,
    KEY,
    Receiver,
    start_agent,
    stop_agent,
    verified,
    write_key,
)

INTERVAL = 0.2


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key(tmp_path / "cluster.key")


def agent_args(receiver: Receiver, key_file: Path, *extra: str) -> list[str]:
    return [
        "--config",
        "/dev/null",  # an empty TOML file: flags only, never the machine's /etc/ctop
        "--director",
        receiver.address,
        "--key-file",
        str(key_file),
        "--interval",
        str(INTERVAL),
        *extra,
    ]


def test_join_reports_and_leave(receiver: Receiver, key_file: Path) -> None:
    proc = start_agent(*agent_args(receiver, key_file, "--node-id", "web1", "--group", "web"))
    try:
        data = receiver.collect(9, timeout=8)
    finally:
        code, err = stop_agent(proc, signal.SIGTERM)
    tail = receiver.collect(1, timeout=2)
    assert code == 0, err
    assert len(data) == 9, err
    verifier = Verifier(KEY)
    msgs = [verified(verifier, d) for d in data]

    join = msgs[0]
    assert isinstance(join, Join)
    assert join.header.node == "web1" and join.group == "web"
    assert join.hostname == socket.gethostname()
    assert join.cores == psutil.cpu_count()
    assert join.mem_total == psutil.virtual_memory().total
    assert join.version == __version__ and join.interval == INTERVAL
    assert join.addresses and all(not a.startswith("fe80") for a in join.addresses)

    reports = msgs[1:]
    assert all(isinstance(m, Report) for m in reports)
    seqs = [m.header.seq for m in msgs]
    assert seqs == sorted(set(seqs))  # strictly increasing within the boot
    assert {m.header.boot for m in msgs} == {join.header.boot}

    # At the interval: arrival gaps and the senders' timestamps both step by about 0.2 s.
    arrivals = [t for t, _ in receiver.datagrams[1:9]]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert 0.15 <= statistics.median(gaps) <= 0.25, gaps
    stamps = [m.header.ts for m in reports]
    assert (stamps[-1] - stamps[0]) / (len(stamps) - 1) == pytest.approx(INTERVAL, rel=0.1)

    for metric in METRICS:  # the first report carries every metric...
        assert metric.name in reports[0].metrics, metric.name
    m: dict = {}  # ...later ones leave out slow facts while unchanged: the director keeps them
    for r in reports:
        m.update(r.metrics)
    assert 0 <= m["cpu_percent"] <= 100
    assert len(m["cpu_cores"]) == psutil.cpu_count()
    assert all(0 <= c <= 100 for c in m["cpu_cores"])
    assert len(m["load"]) == 3
    assert m["mem_total"] == psutil.virtual_memory().total
    assert 0 < m["mem_used"] <= m["mem_total"] and 0 < m["mem_percent"] <= 100
    assert m["procs"] == pytest.approx(len(psutil.pids()), rel=0.25)
    assert m["threads"] >= m["procs"] * 0.9
    assert m["procs_rss"] > 10 * 2**20  # at least this agent and pytest are resident
    assert m["uptime"] == pytest.approx(time.time() - psutil.boot_time(), abs=5)
    assert m["net_rx_bytes"] >= 0 and "lo" not in m["net_ifaces"]
    assert 0 < m["disk_root_percent"] <= 100
    assert m["tcp_established"] == m["tcp_states"].get("established", [0])[0]

    assert len(tail) == 1, err
    leave = verified(verifier, tail[0])
    assert isinstance(leave, Leave) and leave.reason == "SIGTERM"
    assert leave.header.seq > seqs[-1]

    # A flipped byte breaks the signature; the same datagram twice is a replay.
    tampered = bytearray(data[-1])
    tampered[10] ^= 0x01
    fresh = Verifier(KEY)
    assert fresh.verify(bytes(tampered)).reason == Reason.BAD_TAG
    assert isinstance(fresh.verify(data[-1]), Report)
    rejected = fresh.verify(data[-1])
    assert isinstance(rejected, Rejected) and rejected.reason == Reason.REPLAY
    assert verifier.verify(data[3]).reason == Reason.REPLAY  # older than the leave


def test_several_agents_on_one_machine(receiver: Receiver, key_file: Path) -> None:
    nodes = ["node-a", "node-b", "node-c"]
    procs = [start_agent(*agent_args(receiver, key_file, "--node-id", n)) for n in nodes]
    try:
        data = receiver.collect(24, timeout=10)
    finally:
        results = [stop_agent(p, signal.SIGINT) for p in procs]
    data += receiver.collect(1000, timeout=1.0)  # everything sent until each agent left
    assert [code for code, _ in results] == [0, 0, 0], results
    verifier = Verifier(KEY)
    msgs = [verified(verifier, d) for d in data]  # one verifier for the whole cluster
    by_node: dict[str, list[Message]] = {n: [] for n in nodes}
    for msg in msgs:
        by_node[msg.header.node].append(msg)
    for node, seen in by_node.items():
        assert isinstance(seen[0], Join), node
        assert any(isinstance(m, Report) for m in seen), node
        assert isinstance(seen[-1], Leave) and seen[-1].reason == "SIGINT", node
    assert len({m.header.boot for m in msgs}) == 3


def test_keeps_running_without_a_director(receiver: Receiver, key_file: Path) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there now: every send draws an ICMP port unreachable
    proc = start_agent(*agent_args(receiver, key_file, "--director", dead))
    try:
        data = receiver.collect(12, timeout=8)  # the live director keeps getting everything
        assert proc.poll() is None
    finally:
        code, err = stop_agent(proc)
    assert code == 0, err
    assert len(data) == 12
    verifier = Verifier(KEY)
    assert [type(verified(verifier, d)).__name__ for d in data[:2]] == ["Join", "Report"]
    refused = [line for line in err.splitlines() if "refused" in line.lower()]
    assert len(refused) == 1, err  # logged once, not once per report


def test_alone_with_a_dead_director_stays_up(tmp_path: Path, key_file: Path) -> None:
    proc = start_agent(
        "--config", "/dev/null", "--director", "127.0.0.1:9", "--key-file", str(key_file),
        "--interval", "0.1", "--join-interval", "0.3",
    )  # fmt: skip
    time.sleep(1.5)
    alive = proc.poll() is None
    code, err = stop_agent(proc)
    assert alive and code == 0, err


def test_key_file_missing_or_open(tmp_path: Path, receiver: Receiver) -> None:
    missing = tmp_path / "nope.key"
    run = subprocess.run(
        [str(AGENTD), *agent_args(receiver, missing)], capture_output=True, text=True, timeout=10
    )
    assert run.returncode == 2
    assert f"{missing} does not exist" in run.stderr
    assert "Traceback" not in run.stderr

    open_key = write_key(tmp_path / "open.key", mode=0o644)
    run = subprocess.run(
        [str(AGENTD), *agent_args(receiver, open_key)], capture_output=True, text=True, timeout=10
    )
    assert run.returncode == 2
    assert "readable by others" in run.stderr and "chmod 600" in run.stderr


def test_bad_config_names_file_line_and_key(tmp_path: Path, key_file: Path) -> None:
    conf = tmp_path / "agentd.toml"
    conf.write_text(f'director = "127.0.0.1:7117"\nkey_file = "{key_file}"\n\ninterval = "fast"\n')
    run = subprocess.run(
        [str(AGENTD), "--config", str(conf)], capture_output=True, text=True, timeout=10
    )
    assert run.returncode == 2
    assert f"{conf}:4: key 'interval'" in run.stderr
    assert '"fast"' in run.stderr

    run = subprocess.run(
        [str(AGENTD), "--config", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert run.returncode == 2 and "missing.toml: config file does not exist" in run.stderr


def test_once_json_prints_a_report() -> None:
    run = subprocess.run(
        [str(AGENTD), "--config", "/dev/null", "--once", "--json", "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["kind"] == "report" and report["interval"] == 0.2
    assert set(report["metrics"]) == {m.name for m in METRICS}
    assert 0 <= report["metrics"]["cpu_percent"] <= 100


def test_agent_stays_light() -> None:
    """agentd never imports the UI, and probes/ (with httpx) only when probes are configured."""
    code = (
        "import sys, agentd.main, agentd.daemon\n"
        "bad = ('textual', 'ctop', 'httpx', 'probes')\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in bad]\n"
        "print(heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_beacons_between_reports_and_a_leave_sent_three_times(
    receiver: Receiver, key_file: Path
) -> None:
    # Default beacons (every 0.25 s) between 1 s reports: 4 datagrams a second, one sequence.
    proc = start_agent("--config", "/dev/null", "--director", receiver.address,
                       "--key-file", str(key_file), "--node-id", "web1")
    try:
        data = receiver.collect(14, timeout=8)
    finally:
        code, err = stop_agent(proc, signal.SIGTERM)
    tail = receiver.collect(10, timeout=1.0)
    assert code == 0, err
    messages = Verifier(KEY)
    beacons = BeaconVerifier(KEY)
    kinds, seqs = [], []
    for d in data + tail:
        if is_beacon(d):
            b = beacons.verify(d, time.time())
            assert isinstance(b, Beacon) and b.node == "web1" and b.gap == 0.25, b
            kinds.append("beacon")
            seqs.append(b.seq)
        else:
            m = verified(messages, d)
            beacons.note(m.header, time.time())
            kinds.append(type(m).__name__)
            seqs.append(m.header.seq)
    assert seqs == sorted(set(seqs))  # one strictly increasing sequence over both kinds
    first = kinds.index("Report")
    assert kinds[first:first + 8] == ["Report", "beacon", "beacon", "beacon"] * 2, kinds
    arrivals = [t for t, _ in receiver.datagrams[first:first + 8]]
    assert 0.2 <= statistics.median(b - a for a, b in itertools.pairwise(arrivals)) <= 0.3
    # A clean stop says so more than once: one lost leave must not look like a death.
    assert kinds[-3:] == ["Leave"] * 3 and "Leave" not in kinds[:-3], kinds
