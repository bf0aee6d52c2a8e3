"""Owners of the IPVS table on the real kernel (tests/ipvs/guest_owners.py, the same boot as
every IPVS check): a real keepalived and a real ldirectord own TCP 10.1.0.9:80, ctop drains
rs1 through the controller ctop serve builds, the owner is restarted and reloaded, and the
drain is still in the table while the control (a hand edit ctop did not make) was undone."""

from __future__ import annotations

import pytest
from test_lb_ipvs_vm import result

pytestmark = [pytest.mark.ipvs, pytest.mark.vm, pytest.mark.timeout(1200)]

RS1, RS2 = "10.1.1.2:80", "10.1.2.2:80"


def test_keepalived_is_found_as_the_owner(vm: dict) -> None:
    ka = result(vm, "owner_keepalived")
    assert ka["owner_pid_is_main"], ka["owners"]
    assert any("keepalived" in o and "1 virtual server" in o for o in ka["owners"])


def test_keepalived_block_without_include_is_refused_and_unchanged(vm: dict) -> None:
    refused = result(vm, "owner_keepalived")["refused"]
    assert not refused["ok"]
    assert "include /tmp/ctop-owners/ka/10.1.0.9_80/10.1.2.2_80.conf" in refused["message"]
    assert "/tmp/ctop-owners/keepalived.conf:13" in refused["message"]
    assert refused["table"] == {RS1: 3, RS2: 2}


def test_keepalived_keeps_ctops_drain_over_restart_and_reload(vm: dict) -> None:
    ka = result(vm, "owner_keepalived")
    assert ka["drain"]["ok"], ka["drain"]["message"]
    assert "weight 0" in ka["include"]
    assert ka["after_ctop_reload"] == {RS1: 0, RS2: 2}
    assert ka["table_while_stopped"] == {}  # the restart really rebuilt the table
    assert ka["after_restart"] == {RS1: 0, RS2: 2}  # rs2's hand edit (9) undone, rs1 drained
    assert ka["after_reload"] == {RS1: 0, RS2: 2}


def test_keepalived_restore_removes_the_include(vm: dict) -> None:
    ka = result(vm, "owner_keepalived")
    assert ka["restore"]["ok"] and not ka["restore"]["include_left"], ka["restore"]
    assert ka["after_restore_restart"] == {RS1: 3, RS2: 2}


def test_ldirectord_keeps_ctops_drain_over_a_restart(vm: dict) -> None:
    ld = result(vm, "owner_ldirectord")
    assert any(o.startswith("ldirectord") and "1 virtual server" in o for o in ld["owners"])
    assert ld["drain"]["ok"], ld["drain"]["message"]
    assert ld["maintenance_files"] == ["10.1.1.2:80"]
    assert ld["after_restart"] == {RS1: 0, RS2: 2}  # rs2's hand drain undone, rs1 kept


def test_ldirectord_restore_removes_the_file_and_stays_up(vm: dict) -> None:
    ld = result(vm, "owner_ldirectord")
    assert ld["restore"]["ok"] and ld["restore"]["files_left"] == [], ld["restore"]
    assert ld["after_restore"] == {RS1: 3, RS2: 2}


def test_ldirectord_does_not_put_a_restored_server_down_again(vm: dict) -> None:
    # the maintenance file goes before the restore: no check of ldirectord's in between sees it
    ld = result(vm, "owner_ldirectord")
    assert "Quiescent real server: 10.1.1.2:80" not in ld["log_after_restore"], ld[
        "log_after_restore"]
