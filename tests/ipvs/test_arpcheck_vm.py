"""DR sanity on the real IPVS kernel (tests/ipvs/guest_checks.py, check "arp"): a direct-
routing service whose real server rs1 holds the VIP on lo with arp_ignore=1 / arp_announce=2
and rs2 does not; the real agent runs in each namespace; ctop/arpcheck.py names rs2 alone.
Part of the one boot of the main run (conftest.vm_results): CI boots the VM once."""

from __future__ import annotations

import pytest
from test_lb_ipvs_vm import result

pytestmark = [pytest.mark.ipvs, pytest.mark.vm, pytest.mark.timeout(1200)]


def test_the_wrongly_configured_dr_real_server_is_named_with_what_is_wrong(
        vm: dict) -> None:
    arp = result(vm, "arp")
    assert set(arp["forward"].values()) == {"route"}
    assert ["lo", 1, 0, 0, ["10.1.0.1"]] in arp["facts"]["rs1"]
    assert arp["findings"] == [
        "rs2 (10.1.2.2): VIP 10.1.0.1 not on lo or a tunnel; arp_ignore=0 on eth0 (needs 1); "
        "arp_announce=0 on eth0 (needs 2)"]
