"""Two directors in network namespaces, each with a real keepalived (VRRP over the bridge) and
a real `ctop serve` with [pair] (tests/helpers/vrrp_lab.py, started once per session):
each ctop shows its own role and the peer's; stopping the MASTER's keepalived shows MASTER on
the backup's ctop within 3 s; VRRP cut with nft (both MASTER) raises the split-brain alert."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.vrrp_lab import CTOP, INSTANCE, VrrpLab, usable

pytestmark = pytest.mark.root  # network namespaces, nft, keepalived


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VrrpLab]:
    why = usable()
    if why:
        pytest.skip(why)
    lab = VrrpLab(tmp_path_factory.mktemp("vrrp-lab")).up()
    try:
        for i in (1, 2):
            lab.start_keepalived(i)
        lab.master(timeout=15)
        for i in (1, 2):
            lab.start_serve(i)
        yield lab
    finally:
        lab.down()


def _roles(s: dict) -> tuple[str, str]:
    return s["pair"]["role"], s["pair"]["peer_role"]


def _settled(lab: VrrpLab) -> int:
    """The MASTER, once both ctops agree on one MASTER and one BACKUP."""
    m = lab.master()
    b = 3 - m
    assert lab.wait_pair(m, lambda s: _roles(s) == ("MASTER", "BACKUP"), 15), lab.pair(m)
    assert lab.wait_pair(b, lambda s: _roles(s) == ("BACKUP", "MASTER"), 15), lab.pair(b)
    return m


def test_each_ctop_shows_its_role_and_the_peers(lab: VrrpLab) -> None:
    m = _settled(lab)
    b = 3 - m
    master, backup = lab.pair(m), lab.pair(b)
    (inst,) = master["instances"]
    assert inst["name"] == INSTANCE and inst["vips_held"] == [f"{lab.vip}/24"]
    assert backup["instances"][0]["vips_held"] == []
    assert backup["instances"][0]["master_priority"] == inst["priority"]
    assert master["peer_source"] == f"peer ctop {lab.ip(b)}:9100"
    # no IPVS kernel here: the sync daemon's state says why it is missing, in ipvsadm's words
    assert "ipvsadm" in master["sync_error"]
    text = subprocess.run([str(CTOP), "status", "--socket", str(lab.socket(b))],
                          capture_output=True, text=True, timeout=30).stdout
    assert f"pair: this director BACKUP ({INSTANCE} BACKUP prio" in text
    assert "peer MASTER" in text
    assert not [a for a in lab.status(m)["alerts"] if a["rule"] == "vrrp_pair"]


def test_split_brain_both_master_alerts_on_both(lab: VrrpLab) -> None:
    _settled(lab)
    lab.split(True)
    try:
        for i in (1, 2):
            s = lab.wait_pair(i, lambda s: any(
                "both directors are MASTER" in a["message"] for a in s["alerts"]), 15)
            assert s is not None, lab.status(i)
            assert _roles(s) == ("MASTER", "MASTER")
            assert lab.holds_vip(i)
    finally:
        lab.split(False)
    m = _settled(lab)  # the adverts flow again: one MASTER, and the alert resolves
    s = lab.wait_pair(m, lambda s: not any(a["rule"] == "vrrp_pair" for a in s["alerts"]), 10)
    assert s is not None
    assert any(e[1] == "resolved" and "both directors are MASTER" in e[3] for e in s["events"])


def test_stopping_the_master_shows_master_on_the_backup_within_3s(lab: VrrpLab) -> None:
    m = _settled(lab)
    b = 3 - m
    stopped = time.monotonic()
    # the transition follows the stop: within 3 s of the stop is within 3 s of it
    stopping = lab.stop_keepalived(m, wait=False)
    s = lab.wait_pair(b, lambda s: s["pair"]["role"] == "MASTER", 10, poll=0.02)
    took = time.monotonic() - stopped
    stopping.wait(timeout=10)
    try:
        assert s is not None and took < 3.0, (took, lab.pair(b))
        assert lab.holds_vip(b)
        assert any(e[1] == "pair" and e[3].startswith(f"VRRP {INSTANCE}: this director "
                                                      "BACKUP → MASTER") for e in s["events"])
        # the stopped director's ctop says its keepalived is gone and the peer is MASTER
        gone = lab.wait_pair(m, lambda s: s["pair"]["peer_role"] == "MASTER"
                             and "not running" in s["pair"]["error"], 10)
        assert gone is not None and gone["pair"]["role"] == "STOP"
        # and ctop serve's history keeps the transition (ctop --at, the node events)
        assert _stored_pair_events(lab.path(b, "ctop.db"))
    finally:
        lab.start_keepalived(m)  # the higher priority takes the VIP back
    _settled(lab)


def _stored_pair_events(db: Path) -> list[str]:
    import sqlite3

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as con:
            rows = [r[0] for r in con.execute(
                "SELECT message FROM events WHERE kind = 'pair'") if "→ MASTER" in r[0]]
        if rows:
            return rows
        time.sleep(0.2)
    return []
