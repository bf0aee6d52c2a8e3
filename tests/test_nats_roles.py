"""The directors' VRRP roles over a real nats-server on loopback, without root: two real
PairMonitors (no keepalived here: each says STOP) each fed the other's role by RoleShare;
a garbage report on the subject is dropped and the reports go on. The whole lab with real
keepalived is tests/test_pair_failover.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.roles import RoleShare
from ctop.pair.config import PairConfig
from ctop.pair.monitor import PairMonitor
from ctop.pair.view import PairView
from tests.helpers.nats_servers import NatsServer

pytest.importorskip("nats")


def _monitor(tmp: Path) -> PairMonitor:
    return PairMonitor(PairConfig(enabled=True, keepalived_pid_file=str(tmp / "none.pid"),
                                  json_file=str(tmp / "none.json"), sync_daemon=False),
                       lambda events: None)


@pytest.fixture
def pair(tmp_path: Path, nats_server: NatsServer
         ) -> Iterator[tuple[PairMonitor, PairMonitor, NatsLink]]:
    made: list[RoleShare] = []
    monitors: list[PairMonitor] = []
    for me, peer in (("dir-a", "dir-b"), ("dir-b", "dir-a")):
        cfg = NatsConfig(servers=(nats_server.url,), name=me, peers=(peer,),
                         reconnect_wait=0.2)
        monitor = _monitor(tmp_path)
        monitor.start()
        monitors.append(monitor)
        link = NatsLink(cfg).start()
        assert link.wait_connected(10)
        made.append(RoleShare(link, cfg, "lab", monitor, own_link=True))
    try:
        yield monitors[0], monitors[1], made[0].link
    finally:
        for share in made:
            share.close()
        for monitor in monitors:
            monitor.stop()


def _wait(monitor: PairMonitor, check: Callable[[PairView], bool], timeout: float = 10) -> PairView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = monitor.view()
        if check(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"timed out: {monitor.view()}")


Pair = tuple[PairMonitor, PairMonitor, NatsLink]


def test_each_monitor_shows_the_peers_role_from_nats(pair: Pair) -> None:
    a, b, _ = pair
    for monitor, peer in ((a, "dir-b"), (b, "dir-a")):
        view = _wait(monitor, lambda v, peer=peer: v.peer_source == f"NATS {peer}")
        assert view.peer_role == "STOP"  # what the peer's own monitor says of itself


def test_garbage_on_the_subject_is_dropped_and_reports_go_on(pair: Pair) -> None:
    a, _, link = pair
    _wait(a, lambda v: v.peer_source == "NATS dir-b")
    for junk in (b"\xff", b"[]", b'{"role": "MASTER", "instances": [1]}'):
        link.publish("ctop.pair.lab.role.dir-b", junk)
    time.sleep(3)  # longer than a report is believed
    view = a.view()
    assert view.peer_source == "NATS dir-b" and view.peer_role == "STOP"
