"""agentd runs the node's probes in the background: SIGHUP changes them, hangs never delay."""

from __future__ import annotations

import itertools
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.protocol import Join, Report
from ctop.cluster import ClusterModel
from ctop.ingest.verifier import Verifier
from tests.helpers.agent_helpers import KEY, Receiver, start_agent, stop_agent, write_key


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Two listening TCP sockets: a TCP check connects (the kernel completes the handshake)."""
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def probe(name: str, port: int, kind: str = "tcp", timeout: float = 1.0) -> str:
    return (
        f'[[probes]]\nname = "{name}"\ntype = "{kind}"\nhost = "127.0.0.1"\nport = {port}\n'
        f"interval = 0.2\ntimeout = {timeout}\n"
    )


def write_config(path: Path, receiver: Receiver, key: Path, probes: str) -> None:
    path.write_text(
        f'director = "{receiver.address}"\nkey_file = "{key}"\nnode_id = "svc"\n'
        f"interval = 0.2\n\n{probes}"
    )


def services_until(
    receiver: Receiver, verifier: Verifier, model: ClusterModel, want: dict[str, str],
    timeout: float,
) -> dict[str, str]:
    """Read messages until the director's view of the node's services is exactly `want`
    (name -> status); the last seen. Reports leave out unchanged results and send changed
    ones by position in the join's probe list: the model keeps and names them."""
    node = model.nodes.get("svc")
    seen = {s.name: s.status for s in node.services} if node is not None else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = receiver.receive(deadline - time.monotonic())
        if data is None:
            break
        model.apply(verifier.verify(data), time.time())
        node = model.nodes.get("svc")
        if node is not None:  # the director's view: reports leave out unchanged results
            seen = {s.name: s.status for s in node.services}
            if seen == want:
                break
    return seen


def test_sighup_changes_the_probe_list(
    tmp_path: Path, receiver: Receiver, listeners: list[socket.socket]
) -> None:
    key = write_key(tmp_path / "cluster.key")
    conf = tmp_path / "agentd.toml"
    port_a, port_b = (s.getsockname()[1] for s in listeners)
    write_config(conf, receiver, key, probe("svc-a", port_a))
    proc = start_agent("--config", str(conf))
    verifier, model = Verifier(KEY), ClusterModel("t")
    try:
        assert services_until(receiver, verifier, model, {"svc-a": "ok"}, 5) == {"svc-a": "ok"}

        # svc-a removed, svc-b added (listening), svc-c added (nothing listens: fail).
        write_config(
            conf, receiver, key, probe("svc-b", port_b) + "\n" + probe("svc-c", closed_port())
        )
        proc.send_signal(signal.SIGHUP)
        want = {"svc-b": "ok", "svc-c": "fail"}
        assert services_until(receiver, verifier, model, want, 5) == want

        # A broken config on reload keeps the running probes.
        conf.write_text(conf.read_text() + "\n[[probes]]\ntype = 'tcp'\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.6)
        assert services_until(receiver, verifier, model, want, 2) == want
        assert proc.poll() is None
    finally:
        code, err = stop_agent(proc)
    assert code == 0, err
    assert "SIGHUP: probes reloaded: added svc-b, svc-c; removed svc-a" in err
    assert f"SIGHUP: config not reloaded, keeping the running one: {conf}:" in err
    assert "probe 3: tcp probe needs a host" in err


def test_a_hanging_service_never_delays_a_report(
    tmp_path: Path, receiver: Receiver, listeners: list[socket.socket]
) -> None:
    # The listener accepts connections (kernel backlog) but never answers an HTTP request.
    silent = listeners[0].getsockname()[1]
    key = write_key(tmp_path / "cluster.key")
    conf = tmp_path / "agentd.toml"
    write_config(conf, receiver, key, probe("stuck", silent, kind="http", timeout=1.0))
    proc = start_agent("--config", str(conf))
    verifier = Verifier(KEY)
    try:
        data = receiver.collect(10, timeout=6)
        messages = [verifier.verify(d) for d in data]
        reports = [m for m in messages if isinstance(m, Report)]
        model = ClusterModel("t")
        first: tuple = ()  # the director's view after the first report
        for m in messages:
            model.apply(m, time.time())
            if isinstance(m, Report) and not first:
                first = model.nodes["svc"].services
        later = services_until(receiver, verifier, model, {"stuck": "fail"}, 4)
    finally:
        code, err = stop_agent(proc)
    assert code == 0, err
    assert len(reports) >= 8
    assert first[0].status == "unknown"  # first result not in yet, report not held
    arrivals = [t for t, _ in receiver.datagrams[1:10]]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.35, gaps
    assert later == {"stuck": "fail"}  # the check's own timeout, seen in a later report


def test_sighup_with_new_addresses_says_a_restart_applies_them(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Joins keep announcing the boot's addresses; the log tells the operator to restart."""
    key = write_key(tmp_path / "cluster.key")
    conf = tmp_path / "agentd.toml"

    def configure(address: str) -> None:
        write_config(conf, receiver, key, "")
        conf.write_text(conf.read_text() + f'join_interval = 0.3\naddresses = ["{address}"]\n')

    def joins(count: int) -> list[tuple[str, ...]]:
        seen: list[tuple[str, ...]] = []
        deadline = time.monotonic() + 5
        while len(seen) < count and time.monotonic() < deadline:
            data = receiver.receive(deadline - time.monotonic())
            msg = verifier.verify(data) if data is not None else None
            if isinstance(msg, Join):
                seen.append(msg.addresses)
        return seen

    configure("10.0.0.2")
    proc = start_agent("--config", str(conf))
    verifier = Verifier(KEY)
    try:
        assert joins(1) == [("10.0.0.2",)]
        configure("10.0.0.3")
        proc.send_signal(signal.SIGHUP)
        assert joins(3) == [("10.0.0.2",)] * 3
    finally:
        code, err = stop_agent(proc)
    assert code == 0, err
    assert "SIGHUP: addresses changed; restart agentd to apply" in err
