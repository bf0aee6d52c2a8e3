"""Probe results that are news travel by position in the join's probe list (`sx`), without the
probe names (often URLs, most of a service list's bytes); the director names them from the
node's join and shows the same services as before. docs/protocol.md."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from agentd.encoder import encode
from agentd.protocol import (
    HEADER_BYTES,
    TAG_BYTES,
    TARGET_REPORT_BYTES,
    UNSENT,
    Header,
    IndexedServices,
    Join,
    ProbeInfo,
    Report,
    ServiceStatus,
    probe_digest,
)
from agentd.slowfacts import SlowFacts
from ctop.cluster import ClusterModel
from ctop.ingest.verifier import Verifier
from tests.helpers.agent_helpers import KEY, Receiver, start_agent, stop_agent, write_key
from tests.test_wire import big_node_metrics

URLS = tuple(f"http://10.20.30.{i}:8080/health/check-{i}" for i in range(7))


def statuses(seq: int, status: str = "ok") -> tuple[ServiceStatus, ...]:
    return tuple(ServiceStatus(u, status, 12.5 + i, "", seq) for i, u in enumerate(URLS))


def test_services_go_by_position_and_by_name_every_3_refresh_periods() -> None:
    slow = SlowFacts(refresh=10.0)

    def thin(seq: int, t: float, names: tuple[str, ...] = URLS) -> Report:
        services = tuple(s._replace(name=n) for s, n in zip(statuses(seq), names, strict=True))
        return slow.thin_report(Report(Header("n", 1, t, t), 1.0, "", {}, services), t)

    first = thin(1, 0.0)  # the join sent just before names the probes
    assert first.services is UNSENT and first.indexed == IndexedServices(
        probe_digest(URLS), statuses(1))
    news = thin(2, 1.0)
    assert news.services is UNSENT and news.indexed == IndexedServices(
        probe_digest(URLS), statuses(2))
    assert thin(2, 2.0).indexed is not None  # the repeat
    assert thin(2, 3.0).services is UNSENT and thin(2, 4.0).indexed is None  # nothing new
    assert thin(2, 12.0).indexed is not None  # the refresh: by position (the join names)
    assert thin(2, 31.0).services == statuses(2)  # every 3 refresh periods: by name
    other = (*URLS[:6], "tcp:25")
    assert thin(3, 32.0, other).services[6].name == "tcp:25"  # another probe list: names


def test_the_director_names_indexed_services_from_the_join_and_keeps_them_otherwise() -> None:
    verifier = Verifier(KEY)
    model = ClusterModel("t")
    now = time.time()
    seq = iter(range(1, 100))

    def send(msg_of) -> None:  # type: ignore[no-untyped-def]
        model.apply(verifier.verify(encode(KEY, msg_of(Header("web1", 1, next(seq), now)))), now)

    def report(services=UNSENT, indexed=None) -> None:  # type: ignore[no-untyped-def]
        send(lambda h: Report(h, 1.0, "", {"cpu_percent": 1.0}, services, indexed))

    report(services=statuses(1))
    report(indexed=IndexedServices(probe_digest(URLS), statuses(2, "fail")))
    node = model.nodes["web1"]
    assert node.services == statuses(1)  # no join yet: the names are unknown, keep the last
    probes = tuple(ProbeInfo(u, "http", 8080, 10.0, "/") for u in URLS)
    send(lambda h: Join(h, "web1", ("10.0.0.1",), 4, 1 << 30, "t", 1.0, "", probes))
    report(indexed=IndexedServices(probe_digest(URLS), statuses(3, "fail")))
    assert node.services == statuses(3, "fail")  # names, statuses, latencies, results
    assert "web1" in model.failures
    stale = IndexedServices(probe_digest(("a", *URLS[1:])), statuses(4))
    report(indexed=stale)  # after a probe reload, before the next join: keep the last
    assert node.services == statuses(3, "fail")


def test_a_busy_report_with_7_url_probes_by_position_fits_600_bytes() -> None:
    services = statuses(99)
    metrics = big_node_metrics()
    named = encode(KEY, Report(Header("web-0001.dc1.example.com", 7, 1, time.time()), 1.0,
                               "rack-17", metrics, services))
    indexed = encode(KEY, Report(Header("web-0001.dc1.example.com", 7, 1, time.time()), 1.0,
                                 "rack-17", metrics, UNSENT,
                                 IndexedServices(probe_digest(URLS), services)))
    assert len(indexed) <= TARGET_REPORT_BYTES, len(indexed)
    assert len(named) - len(indexed) >= sum(len(u) for u in URLS)  # the names stay home
    body = msgpack.unpackb(indexed[HEADER_BYTES:-TAG_BYTES])
    assert "s" not in body  # an older director keeps the services it has (docs/protocol.md)


def test_bad_indexed_services_are_a_bad_field() -> None:
    verifier = Verifier(KEY)
    good = encode(KEY, Report(Header("web1", 1, 1, time.time()), 1.0, "", {}, UNSENT,
                              IndexedServices(1, statuses(1))))
    body = msgpack.unpackb(good[HEADER_BYTES:-TAG_BYTES])
    from agentd.protocol import seal

    for bad in ([1], [-1, []], [1, [[1]]], [1, ["x"]], [1, [[9, None]] * 17], "x",
                [1, [[0, [1]]]], [1, [[0, None, {"a": 1}]]], [1, [[0, "fast"]]]):
        got = verifier.verify(seal(KEY, {**body, "q": 2, "sx": bad}))
        assert str(getattr(got, "reason", "")) == "bad_field", (bad, got)


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


def test_a_real_agent_shows_the_director_the_same_services_with_fewer_bytes(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    """A real agentd with probes whose results change at every report: the director's view of
    the node's services (names, statuses, latencies, result numbers) follows the agent's, with
    most of the news sent by position."""
    receiver = Receiver()
    key = write_key(tmp_path / "k")
    ports = [s.getsockname()[1] for s in listeners]
    probes = "".join(
        f'[[probes]]\nname = "tcp://127.0.0.1:{p}/a-long-probe-name-like-a-url"\ntype = "tcp"\n'
        f'host = "127.0.0.1"\nport = {p}\ninterval = 0.2\ntimeout = 1.0\n\n' for p in ports)
    conf = tmp_path / "agentd.toml"
    conf.write_text(f'director = "{receiver.address}"\nkey_file = "{key}"\nnode_id = "n1"\n'
                    f"interval = 0.2\njoin_interval = 2.0\nbeacon_interval = 0\n\n{probes}")
    proc = start_agent("--config", str(conf))
    verifier, model = Verifier(KEY), ClusterModel("t")
    indexed = named = 0
    results: set[int] = set()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (indexed < 5 or named < 1):
            data = receiver.receive(deadline - time.monotonic())
            if data is None:
                break
            msg = verifier.verify(data)
            model.apply(msg, time.time())
            if isinstance(msg, Report):
                assert len(data) <= TARGET_REPORT_BYTES
                body = msgpack.unpackb(data[HEADER_BYTES:-TAG_BYTES])
                indexed += "sx" in body
                named += "s" in body
                node = model.nodes["n1"]
                if node.probes and node.services:
                    assert [s.name for s in node.services] == [p.name for p in node.probes]
                    results.update(s.seq for s in node.services if s.seq is not None)
    finally:
        stop_agent(proc)
        receiver.close()
    node = model.nodes["n1"]
    assert indexed >= 5 and named >= 1, (indexed, named)
    assert [s.name for s in node.services] == [
        f"tcp://127.0.0.1:{p}/a-long-probe-name-like-a-url" for p in ports]
    assert all(s.status == "ok" and s.latency_ms is not None for s in node.services)
    assert len(results) >= 5  # the indexed results reached the view, not only the refreshes


def test_an_older_agents_report_with_named_services_still_decodes() -> None:
    """An agent from before `sx` sends every list by name, with the names' bytes: the director
    takes it as before (the same body the older encoder built, written out by hand)."""
    from agentd.metrics import SCALARS
    from agentd.protocol import seal

    body = {"k": "r", "n": "old1", "b": 5, "q": 1, "t": time.time(), "i": 1,
            "m": {"v": [0] * len(SCALARS), "tp": [["nginx", 10, 250, 1024]]},
            "s": [[URLS[0], 0, 125, 7], [URLS[1], 2, None, "connection refused", 8]]}
    model = ClusterModel("t")
    model.apply(Verifier(KEY).verify(seal(KEY, body)), time.time())
    node = model.nodes["old1"]
    assert node.services == (ServiceStatus(URLS[0], "ok", 12.5, "", 7),
                             ServiceStatus(URLS[1], "fail", None, "connection refused", 8))
    assert node.metrics["top_procs"] == [("nginx", 10, 25.0, 1 << 20)]


def test_agentd_once_json_keeps_its_keys() -> None:
    """`agentd --once --json` prints the same keys as before `sx` (no "indexed")."""
    from agentd.encoder import to_plain

    plain = to_plain(Report(Header("n", 1, 1, 1.0), 1.0, "", {}, statuses(1)))
    assert set(plain) == {"kind", "node", "boot", "seq", "ts", "interval", "group", "metrics",
                          "services"}
    assert [s["name"] for s in plain["services"]] == list(URLS)
