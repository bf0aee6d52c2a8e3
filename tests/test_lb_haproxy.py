"""HAProxy backend and LBController against a real HAProxy with real HTTP servers."""

from __future__ import annotations

import time

import pytest

from ctop.lb.actions import LBController
from ctop.lb.base import LBError, ServerState
from ctop.lb.haproxy import HAProxyBackend, map_status, parse_endpoint
from ctop.lb.journal import Journal
from tests.haproxy_peer import SERVERS, HAProxyLab


@pytest.fixture
def backend(haproxy: HAProxyLab) -> HAProxyBackend:
    return HAProxyBackend(haproxy.admin_socket)


@pytest.fixture
def journal(tmp_path) -> Journal:
    j = Journal(tmp_path / "ctop.db")
    yield j
    j.close()


@pytest.fixture
def ctl(backend: HAProxyBackend, journal: Journal) -> LBController:
    return LBController({"haproxy": backend}, journal)


def servers(backend: HAProxyBackend, service: str) -> dict[str, object]:
    vs = next(v for v in backend.services() if v.key == service)
    return {rs.key: rs for rs in vs.servers}


# -- backend ---------------------------------------------------------------------------------


def test_list_shows_backends_and_servers(backend: HAProxyBackend, haproxy: HAProxyLab) -> None:
    table = {vs.key: vs for vs in backend.services()}
    vs = table["web1"]
    assert vs.backend == "haproxy" and vs.protocol == "HTTP" and vs.scheduler == "roundrobin"
    assert [rs.key for rs in vs.servers] == list(SERVERS)
    for rs in vs.servers:
        assert rs.weight == 1 and rs.state == ServerState.SERVING
        assert rs.address == "127.0.0.1" and rs.port == haproxy.servers[rs.key].port
    assert table["chk"].protocol == "TCP"


def test_counters_and_byte_rates(backend: HAProxyBackend, haproxy: HAProxyLab) -> None:
    before = servers(backend, "web2")
    haproxy.hits("web2", 30)
    time.sleep(0.05)
    after = servers(backend, "web2")
    assert sum(after[s].total_conns - before[s].total_conns for s in SERVERS) == 30
    assert all(after[s].conns_per_s > 0 for s in SERVERS)  # HAProxy's per-second rate
    assert sum(after[s].bytes_out_per_s for s in SERVERS) > 0  # from two reads


def test_health_check_down_maps_to_down(backend: HAProxyBackend) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chk = servers(backend, "chk")
        if chk["s2"].state == ServerState.DOWN:
            break
        time.sleep(0.1)
    assert chk["s1"].state == ServerState.SERVING
    assert chk["s2"].state == ServerState.DOWN


def test_draining_a_server_that_is_down_reads_back_drained(
    ctl: LBController, backend: HAProxyBackend, haproxy: HAProxyLab
) -> None:
    # HAProxy's status column keeps saying DOWN for a drained server whose check fails;
    # the drain must still read back (automation drains exactly such servers).
    deadline = time.monotonic() + 5
    while servers(backend, "chk")["s2"].state != ServerState.DOWN:
        assert time.monotonic() < deadline, "s2 never went DOWN"
        time.sleep(0.1)
    res = ctl.drain("haproxy", "chk", "s2", origin="auto")
    assert res.ok, res.message
    table = {rs.key: rs for vs in ctl.services() if vs.key == "chk" for rs in vs.servers}
    assert table["s2"].state == ServerState.QUIESCED
    assert servers(backend, "chk")["s2"].state == ServerState.DRAINED
    res = ctl.restore("haproxy", "chk", "s2", origin="auto")
    assert res.ok, res.message
    assert servers(backend, "chk")["s2"].state == ServerState.DOWN  # still failing its check


def test_tcp_stats_socket(haproxy: HAProxyLab) -> None:
    be = HAProxyBackend(haproxy.tcp_socket)
    assert any(vs.key == "web1" for vs in be.services())
    be.set_weight("web8", "s1", 7)
    assert be.get_weight("web8", "s1") == (7, 1)


def test_haproxy_errors_are_its_own_words(backend: HAProxyBackend) -> None:
    with pytest.raises(LBError, match=r"^No such server\.$"):
        backend.set_weight("web1", "nope", 1)
    with pytest.raises(LBError, match=r"^No such backend\.$"):
        backend.drain("nobackend", "s1")
    with pytest.raises(LBError, match=r"0\.\.256"):
        backend.set_weight("web1", "s1", 257)
    user = HAProxyBackend(backend.endpoint.replace("admin.sock", "user.sock"))
    with pytest.raises(LBError, match=r"^Permission denied \(.*level admin"):
        user.set_weight("web1", "s1", 2)
    with pytest.raises(LBError, match="No such file"):
        HAProxyBackend("/nonexistent/admin.sock").services()


def test_status_mapping_and_endpoints() -> None:
    assert map_status("UP", 1) == ServerState.SERVING
    assert map_status("UP 1/3", 1) == ServerState.SERVING
    assert map_status("no check", 0) == ServerState.DRAINED
    assert map_status("DRAIN", 3) == ServerState.DRAINED
    assert map_status("MAINT(via)", 1) == ServerState.MAINT
    assert map_status("DOWN 1/2", 1) == ServerState.DOWN
    assert map_status("NOLB", 1) == ServerState.DOWN
    assert map_status("DOWN", 1, admin=0x08) == ServerState.DRAINED  # drained while down
    assert map_status("DOWN", 1, admin=0x01) == ServerState.MAINT
    assert parse_endpoint("/run/haproxy/admin.sock")[1] == "/run/haproxy/admin.sock"
    assert parse_endpoint("127.0.0.1:9999")[1] == ("127.0.0.1", 9999)
    assert parse_endpoint("[::1]:9999")[1] == ("::1", 9999)


# -- controller: drain, weights, restore with real traffic ------------------------------------


def test_drained_server_gets_no_requests(ctl: LBController, haproxy: HAProxyLab) -> None:
    assert set(haproxy.hits("web1", 30)) == set(SERVERS)
    res = ctl.drain("haproxy", "web1", "s2")
    assert res.ok, res.message
    assert (res.before, res.after, res.state_after) == (1, 0, ServerState.DRAINED)
    counts = haproxy.hits("web1", 60)
    assert counts["s2"] == 0 and counts["s1"] == 30 and counts["s3"] == 30
    row = ctl.journal.actions()[0]
    assert (row.action, row.origin, row.weight_before, row.weight_after, row.result) == (
        "drain",
        "operator",
        1,
        0,
        "ok",
    )
    assert row.user


def test_weights_2_1_1_give_2_1_1(ctl: LBController, haproxy: HAProxyLab) -> None:
    res = ctl.set_weight("haproxy", "web2", "s1", 2)
    assert res.ok and res.after == 2, res.message
    counts = haproxy.hits("web2", 400)
    assert abs(counts["s1"] - 200) <= 8, counts
    assert abs(counts["s2"] - 100) <= 8 and abs(counts["s3"] - 100) <= 8, counts


def test_step_weight_and_noop(ctl: LBController) -> None:
    assert ctl.step_weight("haproxy", "web3", "s1", +2).after == 3
    assert ctl.step_weight("haproxy", "web3", "s1", -1).after == 2
    res = ctl.set_weight("haproxy", "web3", "s1", 2)
    assert res.ok and res.noop and not res.applied and "already" in res.message
    big = ctl.step_weight("haproxy", "web3", "s1", 1000)  # clamped to the top of the range
    assert big.ok and big.after == 256


def test_restore_brings_back_exact_weight_across_restart(
    backend: HAProxyBackend, haproxy: HAProxyLab, tmp_path
) -> None:
    db = tmp_path / "ctop.db"
    j1 = Journal(db)
    ctl1 = LBController({"haproxy": backend}, j1)
    assert ctl1.set_weight("haproxy", "web3", "s3", 5).ok
    assert ctl1.set_weight("haproxy", "web3", "s3", 0).ok  # weight 0 = drain, remembers 5
    assert servers(backend, "web3")["s3"].weight == 0
    j1.close()
    # a new process: new backend object, new journal on the same database file
    ctl2 = LBController({"haproxy": HAProxyBackend(haproxy.admin_socket)}, Journal(db))
    res = ctl2.restore("haproxy", "web3", "s3")
    assert res.ok and res.before == 0 and res.after == 5, res.message
    assert servers(backend, "web3")["s3"].state == ServerState.SERVING
    counts = haproxy.hits("web3", 70)
    assert counts["s3"] == 50 and counts["s1"] == 10, counts  # 5:1:1
    again = ctl2.restore("haproxy", "web3", "s3")
    assert again.ok and again.noop


def test_drain_restore_keeps_weight(ctl: LBController, haproxy: HAProxyLab) -> None:
    assert ctl.set_weight("haproxy", "web4", "s2", 3).ok
    assert ctl.drain("haproxy", "web4", "s2").ok
    assert haproxy.hits("web4", 20)["s2"] == 0
    # a weight on a drained server puts it back in rotation at that weight
    res = ctl.restore("haproxy", "web4", "s2")
    assert res.ok and res.after == 3
    assert haproxy.hits("web4", 50)["s2"] == 30


def test_invalid_server_changes_nothing_and_is_journaled(
    ctl: LBController, backend: HAProxyBackend
) -> None:
    before = backend.show_stat()
    res = ctl.drain("haproxy", "web1", "s9")
    assert not res.ok and not res.applied and "s9" in res.message and "s1, s2, s3" in res.message
    assert [r["status"] for r in backend.show_stat()] == [r["status"] for r in before]
    row = ctl.journal.actions()[0]
    assert row.server == "s9" and row.result == res.message


def test_haproxy_error_reported_with_its_message(haproxy: HAProxyLab, journal: Journal) -> None:
    ctl = LBController({"haproxy": HAProxyBackend(haproxy.user_socket)}, journal)
    res = ctl.set_weight("haproxy", "web1", "s1", 4)
    assert not res.ok and res.applied and res.message.startswith("Permission denied")
    assert journal.actions()[0].result == res.message
    assert HAProxyBackend(haproxy.admin_socket).get_weight("web1", "s1") == (1, 1)


def test_readonly_refuses(backend: HAProxyBackend, journal: Journal) -> None:
    ctl = LBController({"haproxy": backend}, journal, readonly=True)
    res = ctl.drain("haproxy", "web1", "s1")
    assert not res.ok and not res.applied and "read-only" in res.message
    assert servers(backend, "web1")["s1"].state == ServerState.SERVING


def test_weight_out_of_range_refused_before_haproxy(
    backend: HAProxyBackend, journal: Journal
) -> None:
    sent: list[str] = []

    class Spy(HAProxyBackend):
        def _write(self, line: str) -> None:
            sent.append(line)
            super()._write(line)

    ctl = LBController({"haproxy": Spy(backend.endpoint)}, journal)
    for w in (257, -1):
        res = ctl.set_weight("haproxy", "web1", "s1", w)
        assert not res.ok and "out of range 0..256" in res.message
    assert sent == []


def test_half_done_ready_is_put_back(backend: HAProxyBackend, journal: Journal) -> None:
    class Flaky(HAProxyBackend):
        def ready(self, service_key: str, server_key: str, weight: int) -> None:
            self._write(f"set server {service_key}/{server_key} state ready")  # step 1 works
            raise LBError("injected failure after 'state ready'")

    ctl = LBController({"haproxy": Flaky(backend.endpoint)}, journal)
    assert ctl.set_weight("haproxy", "web5", "s1", 4).ok
    assert ctl.drain("haproxy", "web5", "s1").ok
    res = ctl.restore("haproxy", "web5", "s1")
    assert not res.ok and "injected failure" in res.message and "put back" in res.message
    s1 = servers(backend, "web5")["s1"]
    assert s1.state == ServerState.DRAINED and s1.weight == 4


def test_describe_shows_before_after_without_applying(
    ctl: LBController, backend: HAProxyBackend
) -> None:
    plan = ctl.describe("weight", "haproxy", "web6", "s1", 9)
    assert (plan.before, plan.after, plan.ok) == (1, 9, True)
    assert "before: weight 1" in plan.text() and "after:  weight 9" in plan.text()
    assert servers(backend, "web6")["s1"].weight == 1
    assert ctl.execute(plan).after == 9
    stale = ctl.describe("weight", "haproxy", "web6", "s2", 3)
    ctl.set_weight("haproxy", "web6", "s2", 2)
    assert not ctl.execute(stale).ok  # the world changed since the dialog opened
