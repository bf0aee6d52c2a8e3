"""IPVSBalancer on the real kernel: one qemu boot (conftest.vm_results), one test per behaviour.

What each check did inside the VM is in guest_checks.py; here we assert on what it saw.
"""

from __future__ import annotations

import pytest

# the one boot starts at collection (conftest.py) and runs beside the rest of the suite;
# these tests run last and the first one's set-up waits for it
pytestmark = [pytest.mark.ipvs, pytest.mark.vm, pytest.mark.timeout(1200)]

RS1, RS2 = "10.1.1.2:80", "10.1.2.2:80"
VM_CPU_BUDGET = 600  # seconds of qemu CPU time for the whole guest run (see the budget test)


def result(vm: dict, name: str) -> dict:
    """One check's results; fails with the guest's traceback if that check raised."""
    if name not in vm:
        pytest.fail(f"check {name!r} did not run in the VM")
    if "error" in vm[name]:
        pytest.fail(f"check {name!r} raised in the VM:\n{vm[name]['error']}")
    return vm[name]


def test_reads_the_nat_service_as_root(vm: dict) -> None:
    read = result(vm, "read")
    assert read["read_note"] == ""
    assert read["table"][RS1] == {
        "weight": 1, "forward": "masq", "state": "serving", "upper": 0, "lower": 0,
        "total_conns": 0, "active": 0, "inactive": 0,
    }  # fmt: skip
    assert (read["table"][RS2]["upper"], read["table"][RS2]["lower"]) == (5000, 100)


def test_traffic_reaches_both_servers_before_any_change(vm: dict) -> None:
    assert result(vm, "baseline")["counts"] == {"rs1": 10, "rs2": 10}  # wrr 1:1


def test_drained_server_gets_no_new_connections(vm: dict) -> None:
    drain = result(vm, "drain")
    assert drain["table"][RS1]["weight"] == 0
    assert drain["table"][RS1]["state"] == "drained"
    assert drain["counts"] == {"rs2": 30}


def test_drained_server_finishes_existing_connections(vm: dict) -> None:
    # a keep-alive connection opened before the drain is still answered by rs1 after it
    assert result(vm, "drain")["held_again"] == "rs1"


def test_weights_3_to_1_give_3_to_1_traffic(vm: dict) -> None:
    rw = result(vm, "reweight")
    assert (rw["table"][RS1]["weight"], rw["table"][RS2]["weight"]) == (3, 1)
    counts = rw["counts"]
    assert sum(counts.values()) == 40
    assert 2.5 <= counts["rs1"] / counts["rs2"] <= 3.5


@pytest.mark.parametrize("step", ["drain", "reweight"])
def test_forwarding_method_stays_masq_after_every_edit(vm: dict, step: str) -> None:
    seen = result(vm, step)
    assert {rs["forward"] for rs in seen["table"].values()} == {"masq"}
    servers = [r for r in seen["rules"] if r.startswith("-a ")]  # ipvsadm -Sn, not our parser
    assert len(servers) == 2 and all(" -m " in r for r in servers)


def test_thresholds_kept_through_edits(vm: dict) -> None:
    rs2 = result(vm, "reweight")["table"][RS2]
    assert (rs2["upper"], rs2["lower"]) == (5000, 100)


def test_total_connections_match_what_the_client_sent(vm: dict) -> None:
    stats = result(vm, "stats")  # totals lag up to 2 s (the kernel's estimator); guest waits
    assert stats["waited_s"] <= 6
    for key, name in ((RS1, "rs1"), (RS2, "rs2")):
        assert stats["table"][key]["total_conns"] == stats["client_conns"][name]


def test_rates_are_read_under_load(vm: dict) -> None:
    rates = result(vm, "rates")
    assert rates[RS1]["cps"] > 0 and rates[RS1]["in_bps"] > 0 and rates[RS1]["out_bps"] > 0


def test_bare_edit_switches_masq_to_route_on_the_real_kernel(vm: dict) -> None:
    # the trap IPVSBalancer avoids: `ipvsadm -e -w 2` without -m
    assert "-a -t 10.1.0.1:81 -r 10.1.1.2:81 -g -w 2" in result(vm, "trap")["rules"]


def test_edit_keeps_route_tunnel_ipv6_and_fwmark_servers_as_they_were(vm: dict) -> None:
    pre = result(vm, "preserve")
    changed = [(b, a) for b, a in zip(pre["before"], pre["after"], strict=True) if b != a]
    assert len(changed) == 5
    for before, after in changed:
        # only the weight differs: method, tunnel type/port/checksum are repeated
        assert after.split(" -w ")[0] == before.split(" -w ")[0]
        assert after.split(" -w ")[1].split(" ", 1)[1:] == before.split(" -w ")[1].split(" ", 1)[1:]
        assert " -w 9" in after
    assert (
        "-a -u 10.1.0.3:53 -r 10.1.2.2:53 -i -w 9 --tun-type gue --tun-port 6080 --tun-nocsum"
        in (pre["after"])
    )


def test_edit_keeps_thresholds_of_other_methods(vm: dict) -> None:
    pre = result(vm, "preserve")
    assert pre["thresholds_after"] == pre["thresholds_before"]
    assert pre["thresholds_after"]["UDP 10.1.0.3:53 10.1.2.2:53"] == [7, 3]


def test_ipv6_and_fwmark_keys(vm: dict) -> None:
    keys = result(vm, "preserve")["keys"]
    assert keys["TCP [2001:db8::1]:80"] == ["[2001:db8::2]:8080"]
    assert keys["FWM 7 IPv6"] == ["[2001:db8::5]:0"]
    assert keys["FWM 8"] == ["10.1.2.2:0"]


def test_largest_weight_round_trips(vm: dict) -> None:
    big = result(vm, "big_weight")
    assert big["seen"]["weight"] == 2**31 - 1 and big["seen"]["forward"] == "masq"
    assert big["restored"]["weight"] == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_server", "No such destination: 10.1.9.9:80 in TCP 10.1.0.1:80"),
        ("unknown_service", "Service not defined: TCP 10.1.0.9:80"),
        ("weight_too_big", "illegal weight specified: 2147483648 (IPVS weights are 0..2147483647)"),
        ("weight_negative", "illegal weight specified: -1 (IPVS weights are 0..2147483647)"),
        ("vanished_server", "No such destination"),  # ipvsadm's own words, exit 255
        (
            "missing_ipvsadm",
            "ipvsadm not found (/nonexistent/ipvsadm): install the ipvsadm package",
        ),
    ],
)
def test_failed_edit_raises_lberror_and_leaves_table_unchanged(
    vm: dict, case: str, message: str
) -> None:
    err = result(vm, "errors")[case]
    assert err["raised"] and err["message"] == message
    assert err["unchanged"]


def test_vanished_server_error_names_the_command(vm: dict) -> None:
    cmd = result(vm, "errors")["vanished_server"]["command"]
    assert cmd == "ipvsadm -e -t 10.1.0.1:80 -r 10.1.3.2:80 -m -w 5 -x 0 -y 0"


def test_non_root_reads_proc_and_cannot_write(vm: dict) -> None:
    nr = result(vm, "nonroot")
    assert nr["weights"] == {RS1: 3, RS2: 1}
    assert nr["forward"] == {RS1: "masq", RS2: "masq"}
    assert "Permission denied" in nr["read_note"] and "/proc/net/ip_vs" in nr["read_note"]
    assert nr["raised"] and nr["message"] == (
        "Can't initialize ipvs: Permission denied (you must be root)"
    )
    assert nr["unchanged"]


def test_unloaded_module_is_reported_and_not_reloaded(vm: dict) -> None:
    nl = result(vm, "not_loaded")
    assert nl["rmmod_rc"] == 0, nl["rmmod_err"]
    assert nl["raised"] and nl["message"].startswith("IPVS is not loaded")
    assert nl["proc_after"] is False  # reading did not modprobe ip_vs


def test_vm_stays_within_budget(vm: dict) -> None:
    # issue 9's checks run `ctop lb` (each ~5-10 s of ipvsadm runs under TCG) and two ramps;
    # issue 14's owners start a real keepalived (~33 s) and a real ldirectord (~81 s) in the
    # guest, issue 13's DR check two agents (~13 s): 392 s of wall time in a fresh-clone CI run
    # when the VM ran alone. It now boots at collection and runs (niced) beside the rest of
    # the suite, so its wall time says how busy the machine was; the budget is on what the VM
    # itself costs: qemu's CPU time (user + system, both vCPUs), which sharing does not inflate.
    run = {k: v for k, v in vm["_run"].items() if k != "stderr"}
    assert 0 < vm["_run"]["cpu_seconds"] < VM_CPU_BUDGET, run  # 0: qemu's CPU was not read


def test_a_hand_edit_after_a_drain_is_drift_and_re_applying_drains_again(vm: dict) -> None:
    d = result(vm, "drift")
    assert d["drained"] and d["reapplied"], d["message"]
    assert d["found"] == {RS1: "journal: drained by operator (weight 3 saved); "
                               "live: serving weight 3"}
    assert d["after"]["weight"] == 0 and d["after"]["forward"] == "masq"
    assert d["counts"] == {"rs2": 20}  # no new connection to the re-drained server
    assert d["left"] == 0 and d["restored"] == 3  # restore still knows the weight from before


# -- issue 9: guards, drain --wait, restore --ramp, persistence templates ----------------------

SVC = "TCP 10.1.0.1:80"


def test_last_serving_ipvs_server_is_refused_unless_forced(vm: dict) -> None:
    g = result(vm, "guard_last_server")
    assert g["drain_rs1"]["ok"]
    assert g["drain_rs2"]["rc"] == 1
    assert (
        f"refused: {RS2} is the last serving server of {SVC}: every new connection to {SVC} "
        "fails (--force to do it anyway)" in g["drain_rs2"]["err"]
    )
    assert g["after_refusal"] == {RS1: 0, RS2: 1}
    assert g["counts_after_refusal"] == {"rs2": 4}  # still served
    assert g["forced"]["rc"] == 0 and "forced" in g["forced"]["out"]
    assert g["after_force"] == {RS1: 0, RS2: 0}
    assert list(g["counts_after_force"]) == ["error: [Errno 111] Connection refused"]


def test_dry_run_on_ipvs_changes_nothing_and_exits_0(vm: dict) -> None:
    g = result(vm, "guard_last_server")
    dry = g["dry_run_rs2"]
    assert dry["rc"] == 0 and g["after_dry_run"] == {RS1: 0, RS2: 1}
    assert "refused without --force" in dry["out"] and "dry run: nothing changed" in dry["out"]
    assert "100% →   0%" in dry["out"] and "no server would take new connections" in dry["out"]


def test_drain_wait_on_ipvs_times_out_then_returns_when_empty(vm: dict) -> None:
    w = result(vm, "drain_wait")
    assert w["timeout"]["rc"] == 1 and "not empty after 1 s" in w["timeout"]["err"]
    assert w["wait"]["rc"] == 0, w["wait"]
    assert w["wait"]["out"].rstrip().endswith(f"{RS1}: 0 active: empty")
    # well before its 30 s timeout: a poll is a few ipvsadm runs, seconds under TCG
    assert w["wait"]["returned_after_close_s"] < 15


def test_restore_ramp_on_ipvs_steps_the_weight_up(vm: dict) -> None:
    r = result(vm, "ramp")
    assert r["ramp"]["rc"] == 0, r["ramp"]
    weights = [w for _, w in r["ramp"]["seen"] if w]
    assert weights == [1, 2, 3]  # 2 s ramp to 3: 1, 2, 3 at 0, 1, 2 s
    assert r["after_ramp"][RS1] == 3
    assert "ramp done, weight 1 → 2" in r["ramp"]["out"] and "ramp done: weight 3" in (
        r["ramp"]["out"]
    )


def test_a_weight_set_elsewhere_ends_the_ramp(vm: dict) -> None:
    r = result(vm, "ramp")
    assert r["weight_by_other"]["ok"], r["weight_by_other"]
    assert r["cancelled"]["rc"] == 1
    assert "ramp stopped: the server changed outside the ramp" in r["cancelled"]["out"]
    assert r["after_cancel"][RS1] == 2  # the other process's weight stays


def test_drain_of_a_persistent_service_counts_templates_that_still_send_clients(vm: dict) -> None:
    # defect 9: kernel default expire_quiescent_template=0, a -p 300 service
    p = result(vm, "persistent")
    assert p["expire_before"].strip() == "0"
    assert [c["template"] for c in p["connections"]].count(True) == 1
    assert p["drain"]["rc"] == 0
    assert "1 persistence template still points at it: clients holding one keep coming" in (
        p["drain"]["out"]
    )
    assert "sysctl -w net.ipv4.vs.expire_quiescent_template=1" in p["drain"]["out"]
    sticky = {"10.1.1.2:80": "rs1", "10.1.2.2:80": "rs2"}[p["sticky"]]
    assert p["after_drain"] == {sticky: 10}  # the kernel really keeps sending them
    assert p["wait"]["rc"] == 1 and "1 persistence template" in p["wait"]["out"]
    assert "1 persistence template points at it" in p["dry_run"]["out"]


def test_expire_templates_sends_the_client_elsewhere(vm: dict) -> None:
    p = result(vm, "persistent")
    assert p["drain_expire"]["rc"] == 0, p["drain_expire"]
    assert p["expire_after"].strip() == "1"
    other = "rs1" if p["sticky"] == "10.1.2.2:80" else "rs2"
    assert p["after_expire"] == {other: 10}


def test_connections_of_an_ipvs_server(vm: dict) -> None:
    c = result(vm, "connections")
    assert any(e["state"] == "ESTABLISHED" and not e["template"] for e in c["entries"])
    assert all(e["client"].startswith("172.16.0.2:") for e in c["entries"])
