"""Issue 14's failover, whole: two directors as namespaces on a bridge, each with a real
keepalived (VRRP), a real HAProxy and a real `ctop serve` sharing intents over a real
nats-server on the bridge; real agentd processes reporting to both
(tests/helpers/pair_failover_lab.py, one lab for this module).

A drain made on the MASTER is on both HAProxies and in both journals; the MASTER's keepalived
stops → the backup's ctop shows MASTER within 3 s and its HAProxy still has the drain; a
restore on the new MASTER reaches the old one's HAProxy once that director is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers.pair_failover_lab import NODES, FailoverLab, director_name
from tests.helpers.vrrp_lab import usable

pytest.importorskip("nats")
pytestmark = [pytest.mark.root, pytest.mark.e2e]  # namespaces, nft, keepalived, nats-server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailoverLab]:
    why = usable()
    if why:
        pytest.skip(why)
    # no HTTP /pair link: the peer's role comes over NATS (ctop/nats/roles.py)
    lab = FailoverLab(tmp_path_factory.mktemp("pair-failover"), peer_over_http=False)
    try:
        lab.up()
        for i in (1, 2):
            lab.start_haproxy(i)
            lab.start_keepalived(i)
        lab.master(timeout=15)
        for i in (1, 2):
            lab.start_serve(i)
        lab.start_agents()
        _until(lambda: all(f"{director_name(3 - i)} seen" in (lab.status(i) or {})
                           .get("lb_note", "") for i in (1, 2)), "the directors see each other")
        yield lab
    finally:
        lab.down()


def _until(check: Callable[[], Any], what: str, timeout: float = 15, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out: {what}")


def _roles(s: dict[str, Any]) -> tuple[str, str]:
    return s["pair"]["role"], s["pair"]["peer_role"]


def _settled(lab: FailoverLab) -> int:
    m = lab.master()
    assert lab.wait_pair(m, lambda s: _roles(s) == ("MASTER", "BACKUP"), 15), lab.pair(m)
    assert lab.wait_pair(3 - m, lambda s: _roles(s) == ("BACKUP", "MASTER"), 15), \
        lab.pair(3 - m)
    return m


def _journal(lab: FailoverLab, i: int) -> list[dict[str, Any]]:
    out = lab.ctop(i, "lb", "log", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _nodes(lab: FailoverLab, i: int) -> set[str]:
    return {n["node_id"] for n in (lab.status(i) or {}).get("nodes", [])}


def test_agents_report_to_both_directors(lab: FailoverLab) -> None:
    for i in (1, 2):
        _until(lambda i=i: set(NODES) <= _nodes(lab, i), f"director {i} hears both agents")


def test_the_peers_role_comes_over_nats(lab: FailoverLab) -> None:
    """Without `peer` in [pair], a MASTER can only know its peer is BACKUP from the peer:
    here over NATS, and a report that is not one changes nothing."""
    m = _settled(lab)
    b = 3 - m
    assert lab.pair(m)["peer_source"] == f"NATS {director_name(b)}"
    assert lab.pair(b)["peer_source"] == f"NATS {director_name(m)}"
    assert "peer BACKUP (NATS" in lab.ctop(m, "status").stdout
    assert lab.nats is not None
    _publish(lab.nats.url, f"ctop.pair.lab.role.{director_name(b)}", b"\xff not json")
    _publish(lab.nats.url, f"ctop.pair.lab.role.{director_name(b)}", b'{"role": 3}')
    time.sleep(3)  # longer than a report is believed: reports must still be arriving
    assert _roles(lab.status(m)) == ("MASTER", "BACKUP")
    assert lab.pair(m)["peer_source"] == f"NATS {director_name(b)}"


def _publish(url: str, subject: str, data: bytes) -> None:
    import nats

    async def run() -> None:
        nc = await nats.connect(url)
        await nc.publish(subject, data)
        await nc.flush()
        await nc.close()

    asyncio.run(run())


def test_a_drain_before_the_failover_is_still_there_after_it(lab: FailoverLab) -> None:
    m = _settled(lab)
    b = 3 - m
    out = lab.ctop(m, "lb", "drain", "web1", "s1")
    assert out.returncode == 0, out.stderr
    assert f"peer {director_name(b)}: confirmed" in out.stdout
    assert lab.drained(m, "s1") and lab.drained(b, "s1")
    drains = {i: [r for r in _journal(lab, i) if r["service"] == "web1"
                  and r["action"] == "drain" and r["server"] == "s1"] for i in (m, b)}
    assert drains[m] and drains[b], drains
    assert drains[b][0]["user"].endswith(f"@{director_name(m)}")  # who, on the peer too

    stopped = time.monotonic()
    stopping = lab.stop_keepalived(m, wait=False)
    s = lab.wait_pair(b, lambda s: s["pair"]["role"] == "MASTER", 10, poll=0.02)
    took = time.monotonic() - stopped
    stopping.wait(timeout=10)
    assert s is not None and took < 3.0, (took, lab.pair(b))
    assert lab.holds_vip(b)
    assert lab.drained(b, "s1")  # the new MASTER's balancer kept the drain
    assert lab.hits(b)["s2"] > 0

    # the old MASTER goes down whole (its ctop too): a restore on the new MASTER needs
    # --local, and reaches the old one's HAProxy when its ctop is back
    lab.serves.pop(m).terminate()
    _until(lambda: f"{director_name(m)} stopped" in lab.status(b)["lb_note"],
           "the new MASTER sees the old one's ctop gone")
    out = lab.ctop(b, "lb", "restore", "web1", "s1")
    assert out.returncode == 1 and "--local" in out.stderr, out
    assert lab.drained(b, "s1")  # refused: nothing changed
    out = lab.ctop(b, "lb", "restore", "web1", "s1", "--local")
    assert out.returncode == 0, out.stderr
    assert not lab.drained(b, "s1")
    assert lab.drained(m, "s1")  # the old director's HAProxy, its ctop down
    lab.start_serve(m)
    _until(lambda: not lab.drained(m, "s1"), "the old MASTER's HAProxy gets the restore")
    lab.start_keepalived(m)  # the higher priority takes the VIP back
    _settled(lab)
