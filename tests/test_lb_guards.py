"""Issue 9 on a real HAProxy: the last-server guard, --dry-run and its what-if, maint that cuts
sessions, connections (`show sess`), drain --wait, restore --ramp, and `ctop lb log`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Journal
from ctop.lb.request import ActionRequest, perform
from tests.helpers.haproxy_peer import HAProxyLab


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctop.lb.cli", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.fixture
def opts(haproxy: HAProxyLab, tmp_path: Path) -> list[str]:
    # an empty config: the default alert rules (lb-no-server, cpu-high), no /etc/ctop
    (tmp_path / "ctop.toml").write_text("")
    return [
        "--haproxy-socket", haproxy.admin_socket, "--db", str(tmp_path / "ctop.db"),
        "--config", str(tmp_path / "ctop.toml"),
    ]  # fmt: skip


def weights(haproxy: HAProxyLab, backend: str) -> dict[str, tuple[int, str]]:
    be = HAProxyBalancer(haproxy.admin_socket)
    vs = next(v for v in be.services() if v.key == backend)
    return {rs.key: (rs.weight, str(rs.state)) for rs in vs.servers}


def test_draining_the_last_serving_server_is_refused_unless_forced(
    haproxy: HAProxyLab, opts: list[str]
) -> None:
    # defect 8: `drain pair p1; drain pair p2` both exited 0 and every request got 503
    assert run("drain", "web6", "s1", *opts).returncode == 0
    assert run("drain", "web6", "s2", *opts).returncode == 0
    p = run("drain", "web6", "s3", *opts)
    assert p.returncode == 1
    assert "last serving server of web6: every request to web6 gets 503" in p.stderr
    assert "--force" in p.stderr
    assert haproxy.hits("web6", 6) == {"s3": 6}  # still served
    p = run("weight", "web6", "s3", "0", *opts)  # weight 0 is a drain too
    assert p.returncode == 1 and "last serving server" in p.stderr
    p = run("drain", "web6", "s3", "--force", *opts)
    assert p.returncode == 0, p.stderr
    assert "forced" in p.stdout
    assert haproxy.hits("web6", 4) == {"HTTP 503": 4}
    rows = run("log", "--json", *opts).stdout
    assert '"result": "refused: s3 is the last serving server' in rows


def test_quorum_from_the_lb_alert_rule(haproxy: HAProxyLab, opts: list[str], tmp_path) -> None:
    (tmp_path / "ctop.toml").write_text(
        '[[alert]]\nname = "web6-capacity"\nlb_service = "web6"\nserving_below = 2\n'
    )
    assert run("drain", "web6", "s1", *opts).returncode == 0
    p = run("maint", "web6", "s2", *opts)
    assert p.returncode == 1
    assert (
        "web6 would have 1 serving server, below its quorum of 2 "
        "(alert rule 'web6-capacity': serving_below = 2)" in p.stderr
    )
    assert haproxy.hits("web6", 6) == {"s2": 3, "s3": 3}
    # another service is not held by web6's rule: only its last server is guarded
    assert run("drain", "web7", "s1", *opts).returncode == 0
    assert run("drain", "web7", "s2", *opts).returncode == 0


def test_dry_run_shows_the_what_if_and_changes_nothing(
    haproxy: HAProxyLab, opts: list[str]
) -> None:
    assert run("weight", "web6", "s1", "2", *opts).returncode == 0
    p = run("drain", "web6", "s1", "--dry-run", *opts)
    assert p.returncode == 0, p.stderr
    rows = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.startswith("  s")}
    # weights 2:1:1 -> 0:1:1: s1 50 % -> 0 %, s2 and s3 25 % -> 50 %
    assert re.search(r"2→0\s+50% →\s+0%", rows["s1"]), p.stdout
    assert re.search(r"25% →\s+50%", rows["s2"]) and re.search(r"25% →\s+50%", rows["s3"])
    assert "CPU unknown: no node metrics without a running ctop serve" in p.stdout
    assert "dry run: nothing changed" in p.stdout
    assert weights(haproxy, "web6")["s1"] == (2, "serving")
    assert sum(haproxy.hits("web6", 8).values()) == 8 and haproxy.hits("web6", 8)["s1"] == 4
    # a dry run of a refused action says so, still exits 0 and still changes nothing
    run("drain", "web6", "s2", *opts)
    run("drain", "web6", "s3", *opts)
    p = run("drain", "web6", "s1", "--dry-run", *opts)
    assert p.returncode == 0 and "refused without --force: s1 is the last serving server" in (
        p.stdout
    )
    assert "no server would take new connections" in p.stdout
    assert weights(haproxy, "web6")["s1"] == (2, "serving")
    log = run("log", *opts).stdout
    assert "s1 drain" not in log  # dry runs are not journaled


def _hold(haproxy: HAProxyLab) -> socket.socket:
    """A long-lived connection through the mode-tcp frontend: half a request, kept open."""
    sock = socket.create_connection(("127.0.0.1", haproxy.frontends["tcp1"]), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    return sock


def _server_of(haproxy: HAProxyLab, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    be = HAProxyBalancer(haproxy.admin_socket)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for s in ("s1", "s2", "s3"):
            if any(c.client.endswith(f":{port}") for c in be.connections("tcp1", s)):
                return s
        time.sleep(0.05)
    raise AssertionError("the held connection is not in show sess")


def _alive(sock: socket.socket) -> str:
    """Finish the request: the server's name if the connection still works, else ""."""
    try:
        sock.sendall(b"\r\n")
        answer = b""
        # the server answers HTTP/1.0 and closes; headers and body may come in two segments
        while chunk := sock.recv(4096):
            answer += chunk
    except OSError:
        return ""
    return answer.decode().rsplit("\r\n", 1)[-1]


def test_maint_cut_sessions_cuts_a_long_lived_connection(
    haproxy: HAProxyLab, opts: list[str]
) -> None:
    keep = _hold(haproxy)
    server = _server_of(haproxy, keep)
    p = run("maint", "tcp1", server, *opts)  # plain maint: the session stays
    assert p.returncode == 0, p.stderr
    assert _alive(keep) == server
    keep.close()
    run("restore", "tcp1", server, *opts)

    cut = _hold(haproxy)
    server = _server_of(haproxy, cut)
    p = run("maint", "tcp1", server, "--cut-sessions", *opts)
    assert p.returncode == 0, p.stderr
    assert "its sessions were cut" in p.stdout
    cut.settimeout(3)
    assert _alive(cut) == ""
    cut.close()
    assert HAProxyBalancer(haproxy.admin_socket).connections("tcp1", server) == []
    log = run("log", "--server", server, *opts).stdout
    assert "maint" in log and "+cut sessions" in log


def test_connections_of_a_server_from_show_sess(haproxy: HAProxyLab) -> None:
    socks = [_hold(haproxy) for _ in range(3)]
    try:
        by_server = {s: _server_of(haproxy, s) for s in socks}
        be = HAProxyBalancer(haproxy.admin_socket)
        for sock, server in by_server.items():
            clients = [c.client for c in be.connections("tcp1", server)]
            assert f"127.0.0.1:{sock.getsockname()[1]}" in clients
            assert all(c.server == server for c in be.connections("tcp1", server))
    finally:
        for s in socks:
            s.close()


def test_drain_wait_returns_when_empty_and_times_out(
    haproxy: HAProxyLab, opts: list[str]
) -> None:
    keep = _hold(haproxy)
    server = _server_of(haproxy, keep)
    start = time.monotonic()
    p = run("drain", "tcp1", server, "--wait", "--timeout", "1", *opts)
    assert p.returncode == 1 and "not empty after 1 s (1 active)" in p.stderr
    assert f"{server}: 1 active" in p.stdout
    threading.Timer(1.0, keep.close).start()
    p = run("drain", "tcp1", server, "--wait", "--timeout", "20", *opts)
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith(f"{server}: 0 active: empty")
    assert time.monotonic() - start < 15


def test_restore_ramp_raises_the_weight_in_steps(haproxy: HAProxyLab, tmp_path) -> None:
    from ctop.lb.actions import LBController

    be = HAProxyBalancer(haproxy.admin_socket)
    journal = Journal(tmp_path / "ctop.db")
    lb = LBController({"haproxy": be}, journal)
    assert lb.set_weight("haproxy", "web6", "s1", 4, origin="cli").ok
    assert lb.drain("haproxy", "web6", "s1", origin="cli").ok
    dry = perform(
        lb, ActionRequest("restore", "haproxy", "web6", "s1", origin="cli", ramp_s=60, dry_run=True)
    )
    assert "ramp: weight 1 at 0 s, weight 2 at 20 s, weight 3 at 40 s, weight 4 at 60 s" in (
        dry.message
    )
    seen: list[int] = []
    lb.on_ramp_step = lambda r: seen.append(r.after or 0)
    res = perform(lb, ActionRequest("restore", "haproxy", "web6", "s1", origin="cli", ramp_s=1.5))
    assert res.ok and "ramp 1/2 to weight 4 over 1.5 s" in res.message
    assert weights(haproxy, "web6")["s1"] == (2, "serving")  # the first step only
    lb.wait_ramps(10)
    assert seen == [4]
    assert weights(haproxy, "web6")["s1"] == (4, "serving")
    counts = haproxy.hits("web6", 12)
    assert counts == {"s1": 8, "s2": 2, "s3": 2}  # 4:1:1
    rows = journal.actions(server="s1", limit=3)
    first = next(r for r in rows if r.action == "restore")
    assert [r.action for r in rows[:2]] == ["ramp", "restore"]
    assert rows[0].result == f"ok (ramp of #{first.id} 2/2)"
    assert (first.weight_after, rows[0].weight_after) == (2, 4)

    # an operator action on the server cancels the ramp: the weight they set stays
    assert lb.drain("haproxy", "web6", "s1", origin="cli").ok
    res = lb.restore("haproxy", "web6", "s1", origin="cli", ramp_s=4)
    assert res.ok
    ramp = lb.ramps[("haproxy", "web6", "s1")]
    assert lb.set_weight("haproxy", "web6", "s1", 3, origin="cli").ok
    ramp.join(5)
    assert not ramp.running and ramp.outcome.startswith("cancelled")
    time.sleep(0.3)
    assert weights(haproxy, "web6")["s1"] == (3, "serving")
    journal.close()


def test_log_shows_local_times_saved_weight_and_filters(
    haproxy: HAProxyLab, opts: list[str], tmp_path
) -> None:
    assert run("weight", "web6", "s2", "5", *opts).returncode == 0
    assert run("drain", "web6", "s2", *opts).returncode == 0
    assert run("maint", "web6", "s2", *opts).returncode == 0
    sudo = {**os.environ, "SUDO_USER": "alice"}  # as `sudo ctop lb` run by alice
    assert run("drain", "web7", "s1", *opts, env=sudo).returncode == 0
    env = {**os.environ, "TZ": "Asia/Kolkata"}
    out = run("log", *opts, env=env).stdout.splitlines()
    assert len(out) == 4
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30 ", ln) for ln in out), out
    maint = next(ln for ln in out if " maint " in ln)
    # defect 10: a maint of a drained server was logged 0->0, hiding the weight it goes back to
    assert "web6/s2 maint 0->0 (saved 5) ok" in maint
    assert any("web6/s2 drain 5->0 (saved 5) ok" in ln for ln in out), out
    assert len(run("log", "--server", "s2", *opts).stdout.splitlines()) == 3
    user = Journal(tmp_path / "ctop.db").user.split()[0]
    assert len(run("log", "--user", user, *opts).stdout.splitlines()) == 4
    assert run("log", "--user", "nosuchuser", *opts).stdout == ""
    by_alice = run("log", "--user", "alice", *opts).stdout.splitlines()  # the sudo caller
    assert len(by_alice) == 1 and "(sudo alice)" in by_alice[0] and "web7/s1 drain" in by_alice[0]
    assert run("log", "--since", "1h", *opts).stdout.count("\n") == 4
    assert run("log", "--since", "2999-01-01T00:00", *opts).stdout == ""
    p = run("log", "--since", "yesterday-ish", *opts)
    assert p.returncode == 2 and "--since wants a duration" in p.stderr


def test_cli_database_follows_ctop_db(haproxy: HAProxyLab, tmp_path) -> None:
    # docs/loadbalancer.md names $CTOP_DB: with no --db and no [store] path it is the journal
    db = tmp_path / "elsewhere" / "journal.db"
    (tmp_path / "ctop.toml").write_text("")
    env = {**os.environ, "CTOP_DB": str(db)}
    base = ["--haproxy-socket", haproxy.admin_socket, "--config", str(tmp_path / "ctop.toml")]
    assert run("drain", "web8", "s1", *base, env=env).returncode == 0
    assert db.exists()
    assert [r.action for r in Journal(db).actions()] == ["drain"]
    assert "web8/s1 drain" in run("log", *base, env=env).stdout


async def test_the_daemon_dry_run_predicts_cpu_from_the_agents(haproxy: HAProxyLab, tmp_path):
    """With ctop serve the what-if has node metrics: a real agent on 127.0.0.1 (the address of
    every lab server) reports cores and CPU, so the CPU column is filled, not unknown."""
    from .test_engine import make_engine, start_agent, until

    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}})
    await eng.start()
    (tmp_path / "none.toml").write_text("")  # the agent's config: defaults
    agent = start_agent(tmp_path, eng.port, "lab")
    try:
        await until(lambda: eng.snapshot().lb)
        await until(lambda: any(n.metrics.get("cpu_percent") is not None
                                for n in eng.model.nodes.values()), timeout=15)  # fmt: skip
        await until(lambda: eng.lb.node_loads("haproxy", "web5"), timeout=10)
        res = await eng.lb_action(ActionRequest("drain", "haproxy", "web5", "s1", dry_run=True))
        assert res.ok and res.dry_run
        assert "CPU unknown" not in res.message
        rows = [ln for ln in res.message.splitlines() if re.match(r"  s\d ", ln)]
        assert len(rows) == 3 and all(re.search(r"\d+% → +\d+%", ln) for ln in rows), rows
        assert weights(haproxy, "web5")["s1"] == (1, "serving")  # a dry run changes nothing
        assert not any("web5" in e.message for e in eng.snapshot().events)  # and is no event
    finally:
        agent.terminate()
        agent.wait(5)
        await eng.stop()


def test_guard_dry_run_and_ramp_through_the_daemon(haproxy: HAProxyLab) -> None:
    """With ctop serve running, `ctop lb` sends the options to the daemon, which guards, dry
    runs (no event, nothing changed) and carries the ramp itself."""
    from tests.helpers.lb_owner_helpers import director, serving

    haproxy.cmd("set server web8/s1 weight 3")  # restore (with a ramp) goes back to 3
    with director(haproxy) as d, serving(d):
        assert d.lb("drain", "web8", "s1").returncode == 0
        assert d.lb("drain", "web8", "s2").returncode == 0
        p = d.lb("drain", "web8", "s3", "--dry-run")
        assert p.returncode == 0, p.stderr
        assert "refused without --force: s3 is the last serving server" in p.stdout
        assert "CPU unknown: no node metrics for these servers" in p.stdout  # the daemon's
        p = d.lb("drain", "web8", "s3")
        assert p.returncode == 1 and "every request to web8 gets 503" in p.stderr
        assert weights(haproxy, "web8")["s3"] == (1, "serving")
        assert d.lb("drain", "web8", "s3", "--force").returncode == 0
        assert weights(haproxy, "web8")["s3"] == (1, "drained")
        assert not any("dry" in m for m in d.events())
        p = d.lb("restore", "web8", "s1", "--ramp", "2s")
        assert p.returncode == 0 and "ramp 1/3 to weight 3 over 2 s" in p.stdout, p.stderr
        # the daemon finishes it: a step is journaled after HAProxy reads back its weight
        deadline = time.monotonic() + 10
        while ([r[3] for r in d.journal()][-3:] != ["restore", "ramp", "ramp"]
               and time.monotonic() < deadline):
            time.sleep(0.1)
        assert [r[3] for r in d.journal()][-3:] == ["restore", "ramp", "ramp"]
        assert weights(haproxy, "web8")["s1"] == (3, "serving")
