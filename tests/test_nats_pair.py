"""Pair-consistent LB actions (issue 14): two real `ctop serve` daemons, each with its own
real HAProxy, sharing intents through a real nats-server's JetStream KV."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.haproxy_peer import HAProxyLab, start_lab, stop_lab
from tests.helpers.nats_servers import NatsCluster, NatsServer
from tests.helpers.serve_helpers import Daemon

pytest.importorskip("nats")
pytestmark = pytest.mark.e2e


def _extra(lab: HAProxyLab, nats: NatsServer, me: str, peer: str) -> str:
    return (f'lb_every = 0.5\n[lb.haproxy]\nsocket = "{lab.admin_socket}"\n'
            f'[nats]\nservers = ["{nats.url}"]\nname = "{me}"\npeers = ["{peer}"]\n'
            f'reconnect_wait = "0.2s"\n')


@dataclass
class Pair:
    nats: NatsServer
    lab_a: HAProxyLab
    lab_b: HAProxyLab
    a: Daemon
    b: Daemon


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("pair")
    nats = NatsServer("pair", root / "nats").start().wait_ready()
    labs: list[HAProxyLab] = []
    daemons: list[Daemon] = []
    try:
        for name in ("a", "b"):
            (root / f"lab-{name}").mkdir()
            labs.append(start_lab(root / f"lab-{name}"))
        for name, lab, peer in (("a", labs[0], "dir-b"), ("b", labs[1], "dir-a")):
            (root / f"dir-{name}").mkdir()
            daemons.append(Daemon(root / f"dir-{name}", _extra(lab, nats, f"dir-{name}", peer)))
        p = Pair(nats, labs[0], labs[1], daemons[0].start(), daemons[1].start())
        _until(lambda: "dir-b seen" in p.a.status()["lb_note"]
               and "dir-a seen" in p.b.status()["lb_note"], "the directors see each other")
        yield p
        daemons[:] = [p.a, p.b]
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
        for lab in labs:
            stop_lab(lab)
        nats.stop()


def _until(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def _drained(lab: HAProxyLab, backend: str, server: str) -> bool:
    return lab.hits(backend, 6)[server] == 0


def _journal(d: Daemon) -> list[dict[str, Any]]:
    out = d.ctop("lb", "log", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_drain_on_a_is_applied_on_b_and_journaled_on_both(pair: Pair) -> None:
    why = "OPS-42 kernel update"  # the intent's why: the peer's journal row says the same
    out = pair.a.ctop("lb", "drain", "web1", "s1", "--why", why)
    assert out.returncode == 0, out.stderr
    assert "peer dir-b: confirmed" in out.stdout
    assert _drained(pair.lab_a, "web1", "s1")
    assert _drained(pair.lab_b, "web1", "s1")  # already, when the command returned
    st = pair.a.status()["pair_sync"]
    assert st["director"] == "dir-a" and st["nats"]["state"] == "connected"
    assert st["peers"]["dir-b"]["seen"] and not st["peers"]["dir-b"]["stopped"]
    assert "pair: dir-a with dir-b seen" in pair.a.status_text()
    mine = [r for r in _journal(pair.a) if r["service"] == "web1" and r["action"] == "drain"]
    theirs = [r for r in _journal(pair.b) if r["service"] == "web1" and r["action"] == "drain"]
    assert mine and theirs
    assert theirs[0]["user"].endswith("@dir-a") and theirs[0]["origin"] == "cli"
    assert mine[0]["why"] == theirs[0]["why"] == why
    # and back, from the other director
    out = pair.b.ctop("lb", "restore", "web1", "s1")
    assert out.returncode == 0, out.stderr
    assert "peer dir-a: confirmed" in out.stdout
    assert pair.lab_a.hits("web1", 6)["s1"] > 0 and pair.lab_b.hits("web1", 6)["s1"] > 0


def test_peer_down_refuses_local_acts_and_the_peer_catches_up(pair: Pair) -> None:
    pair.b.stop()
    try:
        _until(lambda: "dir-b stopped" in pair.a.status()["lb_note"], "A sees B gone")
        out = pair.a.ctop("lb", "drain", "web2", "s2")
        assert out.returncode == 1
        assert "refused" in out.stderr and "dir-b stopped" in out.stderr and "--local" in out.stderr
        assert not _drained(pair.lab_a, "web2", "s2")  # nothing changed
        out = pair.a.ctop("lb", "drain", "web2", "s2", "--local")
        assert out.returncode == 0, out.stderr
        assert "this director only" in out.stdout
        assert _drained(pair.lab_a, "web2", "s2") and not _drained(pair.lab_b, "web2", "s2")
    finally:
        pair.b = pair.b.again()
    # B comes back (as after a failover to it): it applies the drain it missed
    _until(lambda: _drained(pair.lab_b, "web2", "s2"), "B catches up with the drain")
    assert any(r["service"] == "web2" and r["user"].endswith("@dir-a")
               for r in _journal(pair.b))


def test_hand_change_on_b_raises_a_divergence_alert(pair: Pair) -> None:
    pair.lab_b.cmd("set server web4/s3 weight 7")

    def alert() -> str:
        found = [a["message"] for a in pair.a.status()["alerts"] if "differ" in a["message"]]
        return found[0] if found else ""

    message = _until(alert, "A's divergence alert")
    assert "haproxy web4 s3" in message and "dir-b" in message and "weight 7" in message
    pair.lab_b.cmd("set server web4/s3 weight 1")
    _until(lambda: not alert(), "the alert resolves when the tables agree again")


def test_nats_down_refuses_clearly_and_local_still_works(pair: Pair) -> None:
    pair.nats.stop()
    try:
        _until(lambda: pair.a.status()["pair_sync"]["nats"]["state"] == "reconnecting",
               "A sees NATS down")
        assert "NATS is down" in pair.a.status()["pair_sync"]["problem"]
        out = pair.a.ctop("lb", "weight", "web3", "s1", "3")
        assert out.returncode == 1
        assert "NATS is down" in out.stderr and "nothing was changed" in out.stderr
        assert pair.a.ctop("lb", "drain", "web3", "s1", "--dry-run").returncode == 0
        out = pair.a.ctop("lb", "drain", "web3", "s1", "--local")
        assert out.returncode == 0, out.stderr
        assert _drained(pair.lab_a, "web3", "s1")
    finally:
        pair.nats.start().wait_ready()
    # the intent kept while NATS was down reaches B once NATS is back
    _until(lambda: _drained(pair.lab_b, "web3", "s1"), "B gets the drain made without NATS",
           timeout=25)


def test_without_nats_section_nothing_changes(tmp_path: Path, haproxy: HAProxyLab) -> None:
    d = Daemon(tmp_path, f'[lb.haproxy]\nsocket = "{haproxy.admin_socket}"\n').start()
    try:
        out = d.ctop("lb", "drain", "web7", "s1")
        assert out.returncode == 0, out.stderr
        assert "peer" not in out.stdout and "pair" not in d.status()["lb_note"]
        assert haproxy.hits("web7", 6)["s1"] == 0
    finally:
        d.stop()


def test_pair_survives_the_loss_of_a_nats_server(tmp_path: Path,
                                                 nats_cluster_whole: NatsCluster) -> None:
    """One server of a 3-node NATS cluster lost: no drain lost, actions still confirmed."""
    cluster = nats_cluster_whole
    servers = ", ".join(f'"{u}"' for u in cluster.urls)
    labs = [start_lab(_dir(tmp_path / "lab-a")), start_lab(_dir(tmp_path / "lab-b"))]
    daemons = []
    try:
        for name, lab, peer in (("a", labs[0], "dir-b"), ("b", labs[1], "dir-a")):
            extra = (f'lb_every = 0.5\n[lb.haproxy]\nsocket = "{lab.admin_socket}"\n'
                     f'[nats]\nservers = [{servers}]\nname = "dir-{name}"\npeers = ["{peer}"]\n'
                     f'replicas = 3\nreconnect_wait = "0.2s"\n')
            daemons.append(Daemon(_dir(tmp_path / f"dir-{name}"), extra).start())
        a, b = daemons
        _until(lambda: "dir-b seen" in a.status()["lb_note"]
               and "dir-a seen" in b.status()["lb_note"], "the directors see each other")
        out = a.ctop("lb", "drain", "web1", "s1")
        assert out.returncode == 0 and "peer dir-b: confirmed" in out.stdout, out
        lost = cluster.nodes[0]
        lost.stop()

        last: list[str] = []

        def drained_with_confirmation() -> bool:
            out = a.ctop("lb", "drain", "web2", "s2")
            last[:] = [out.stdout + out.stderr]
            return out.returncode == 0 and "peer dir-b: confirmed" in out.stdout

        try:
            _until(drained_with_confirmation, "a confirmed drain with one NATS server lost", 30)
        except AssertionError:
            raise AssertionError(f"{last} {a.status().get('pair')} {b.status().get('pair')}"
                                 ) from None
        assert _drained(labs[1], "web1", "s1") and _drained(labs[1], "web2", "s2")
        # a director that replaces B now (fresh database, HAProxy restarted: no drains) gets
        # every intent from the cluster: nothing was lost with the server
        b.stop()
        labs[1].restart()
        assert not _drained(labs[1], "web1", "s1")
        extra = (f'lb_every = 0.5\n[lb.haproxy]\nsocket = "{labs[1].admin_socket}"\n'
                 f'[nats]\nservers = [{servers}]\nname = "dir-c"\npeers = ["dir-a"]\n'
                 f'replicas = 3\nreconnect_wait = "0.2s"\n')
        daemons[1] = Daemon(_dir(tmp_path / "dir-c"), extra).start()
        _until(lambda: _drained(labs[1], "web1", "s1") and _drained(labs[1], "web2", "s2"),
               "the new director applies the drains kept by the cluster")
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
        for lab in labs:
            stop_lab(lab)


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_without_the_daemon_a_pair_director_acts_only_with_local(tmp_path: Path,
                                                                 haproxy: HAProxyLab) -> None:
    d = Daemon(tmp_path, f'[lb.haproxy]\nsocket = "{haproxy.admin_socket}"\n'
               '[nats]\nname = "dir-a"\npeers = ["dir-b"]\n')  # not started
    out = d.ctop("lb", "drain", "web7", "s3")
    assert out.returncode == 1
    assert "director pair with dir-b" in out.stderr and "--local" in out.stderr
    assert haproxy.hits("web7", 6)["s3"] > 0  # nothing changed
    out = d.ctop("lb", "drain", "web7", "s3", "--local")
    assert out.returncode == 0, out.stderr
    assert haproxy.hits("web7", 6)["s3"] == 0
