"""IPVSBalancer with a stand-in ipvsadm that replays real captured output and logs its arguments.

The real kernel is exercised in tests/ipvs/ (qemu); these check command construction and error
handling quickly, on every machine.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ctop.lb.actions import LBController
from ctop.lb.base import LBError
from ctop.lb.ipvs import IPVSBalancer
from tests.helpers.fake_ipvsadm import RICH, TUNNELS, FakeIpvsadm, section

NOBODY = (
    "Can't initialize ipvs: Permission denied (you must be root)\n"
    "Are you sure that IP Virtual Server is built in the kernel or as module?"
)



@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A proc root whose net/ip_vs is the rich capture (module loaded)."""
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "ip_vs").write_text(section("proc_rich.txt", "/proc/net/ip_vs"))
    return tmp_path / "proc"


def balancer(fake: FakeIpvsadm, proc: Path) -> IPVSBalancer:
    return IPVSBalancer(ipvsadm=str(fake.path), proc_root=str(proc))


def test_services_merge_list_thresholds_stats_and_rates(tmp_path: Path, proc: Path) -> None:
    b = balancer(FakeIpvsadm(tmp_path, RICH), proc)
    svcs = {s.key: s for s in b.services()}
    assert b.read_note == ""
    web = svcs["TCP 10.0.0.1:80"].servers[0]
    assert (web.key, web.weight, web.forward, web.total_conns, web.inactive_conns) == (
        "10.0.0.2:80", 3, "masq", 6, 6,
    )  # fmt: skip
    assert (web.bytes_in_per_s, web.bytes_out_per_s) == (455.0, 123350.0)
    dr = svcs["TCP 10.0.0.1:443"].servers[0]
    assert (dr.forward, dr.upper_threshold, dr.lower_threshold) == ("route", 100, 50)
    assert svcs["UDP 10.0.0.1:53"].persistent_s == 300


@pytest.mark.parametrize(
    ("service", "server", "weight", "command"),
    [
        ("TCP 10.0.0.1:80", "10.0.0.2:80", 5, "-e -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 5 -x 0 -y 0"),
        ("TCP 10.0.0.1:443", "10.0.0.2:443", 7,
         "-e -t 10.0.0.1:443 -r 10.0.0.2:443 -g -w 7 -x 100 -y 50"),
        ("UDP 10.0.0.1:53", "10.0.0.2:53", 0, "-e -u 10.0.0.1:53 -r 10.0.0.2:53 -m -w 0 -x 0 -y 0"),
        ("TCP [2001:0db8::1]:80", "[2001:db8:0::2]:8080", 2147483647,
         "-e -t [2001:db8::1]:80 -r [2001:db8::2]:8080 -m -w 2147483647 -x 0 -y 0"),
        ("FWM 42", "10.0.0.2:0", 1, "-e -f 42 -r 10.0.0.2:0 -g -w 1 -x 0 -y 0"),
    ],
)  # fmt: skip
def test_edit_repeats_method_and_thresholds(
    tmp_path: Path, proc: Path, service: str, server: str, weight: int, command: str
) -> None:
    fake = FakeIpvsadm(tmp_path, RICH)
    balancer(fake, proc).set_weight(service, server, weight)
    assert fake.edits() == [command]


@pytest.mark.parametrize(
    ("service", "server", "flags"),
    [
        ("UDP 10.0.0.1:80", "10.0.0.2:80", "-i --tun-type ipip -w 4"),
        ("UDP 10.0.0.1:80", "10.0.0.3:80", "-i --tun-type gue --tun-port 6080 --tun-csum -w 4"),
        ("UDP 10.0.0.1:80", "10.0.0.4:80", "-i --tun-type gue --tun-port 6081 --tun-remcsum -w 4"),
        ("UDP 10.0.0.1:80", "10.0.0.5:80", "-i --tun-type gre --tun-nocsum -w 4"),
        ("FWM 7 IPv6", "[2001:db8::5]:0", "-i --tun-type gre --tun-csum -w 4"),
    ],
)
def test_edit_repeats_tunnel_settings(
    tmp_path: Path, proc: Path, service: str, server: str, flags: str
) -> None:
    fake = FakeIpvsadm(tmp_path, TUNNELS)
    balancer(fake, proc).set_weight(service, server, 4)
    (edit,) = fake.edits()
    assert f" -r {server} {flags} -x 0 -y 0" in edit
    assert edit.startswith("-e -f 7 -6 " if service.startswith("FWM") else "-e -u 10.0.0.1:80 ")


def test_drain_and_ready(tmp_path: Path, proc: Path) -> None:
    fake = FakeIpvsadm(tmp_path, RICH)
    b = balancer(fake, proc)
    b.drain("TCP 10.0.0.1:80", "10.0.0.3:80")
    b.ready("TCP 10.0.0.1:80", "10.0.0.3:80", 2)
    assert [e.split(" -w ")[1] for e in fake.edits()] == ["0 -x 0 -y 0", "2 -x 0 -y 0"]
    with pytest.raises(LBError, match="ready needs a weight of at least 1"):
        b.ready("TCP 10.0.0.1:80", "10.0.0.3:80", 0)


@pytest.mark.parametrize("weight", [-1, 2**31, True, 1.5, "3"])
def test_weight_out_of_range_runs_nothing(tmp_path: Path, proc: Path, weight: object) -> None:
    fake = FakeIpvsadm(tmp_path, RICH)
    with pytest.raises(LBError, match="illegal weight specified"):
        balancer(fake, proc).set_weight("TCP 10.0.0.1:80", "10.0.0.2:80", weight)  # type: ignore[arg-type]
    assert fake.calls() == []


def test_unknown_service_and_server(tmp_path: Path, proc: Path) -> None:
    fake = FakeIpvsadm(tmp_path, RICH)
    b = balancer(fake, proc)
    with pytest.raises(LBError, match=r"^Service not defined: TCP 10.9.9.9:80$"):
        b.set_weight("TCP 10.9.9.9:80", "10.0.0.2:80", 1)
    with pytest.raises(LBError, match=r"^No such destination: 10.0.0.9:80 in TCP 10.0.0.1:80$"):
        b.set_weight("TCP 10.0.0.1:80", "10.0.0.9:80", 1)
    with pytest.raises(LBError, match="bad IPVS service"):
        b.set_weight("10.0.0.1:80", "10.0.0.2:80", 1)
    assert fake.edits() == []


@pytest.mark.parametrize(
    ("rc", "stderr", "message"),
    [
        (255, "No such destination\n", "No such destination"),
        (255, "Service not defined\n", "Service not defined"),
        (2, "illegal weight specified\n", "illegal weight specified"),
        (2, NOBODY, "Can't initialize ipvs: Permission denied (you must be root)"),
        (1, "", "ipvsadm failed with exit status 1"),
    ],
)
def test_tool_errors_carry_the_tool_message(
    tmp_path: Path, proc: Path, rc: int, stderr: str, message: str
) -> None:
    fake = FakeIpvsadm(tmp_path, RICH, edit=(rc, stderr))
    with pytest.raises(LBError) as info:
        balancer(fake, proc).set_weight("TCP 10.0.0.1:80", "10.0.0.2:80", 4)
    assert info.value.message == message
    assert info.value.command.endswith("-e -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 4 -x 0 -y 0")


def test_not_root_reads_proc_and_says_so(tmp_path: Path, proc: Path) -> None:
    script = tmp_path / "ipvsadm"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(NOBODY)} >&2\nexit 2\n")
    script.chmod(0o755)
    b = IPVSBalancer(ipvsadm=str(script), proc_root=str(proc))
    svcs = {s.key: s for s in b.services()}
    assert svcs["UDP 10.0.0.1:53"].persistent_s == 300
    assert svcs["FWM 42"].servers[1].forward == "tunnel"
    assert b.read_note.startswith("Can't initialize ipvs: Permission denied (you must be root)")
    with pytest.raises(LBError, match=r"Permission denied \(you must be root\)$"):
        b.drain("TCP 10.0.0.1:80", "10.0.0.2:80")


def test_missing_ipvsadm_reads_proc(proc: Path) -> None:
    b = IPVSBalancer(ipvsadm="/nonexistent/ipvsadm", proc_root=str(proc))
    assert len(b.services()) == 5
    assert b.read_note.startswith("ipvsadm not found (/nonexistent/ipvsadm)")
    with pytest.raises(LBError, match="ipvsadm not found"):
        b.set_weight("TCP 10.0.0.1:80", "10.0.0.2:80", 1)


def test_module_not_loaded_never_runs_ipvsadm(tmp_path: Path) -> None:
    fake = FakeIpvsadm(tmp_path, RICH)
    b = IPVSBalancer(ipvsadm=str(fake.path), proc_root=str(tmp_path / "noproc"))
    with pytest.raises(LBError, match=r"^IPVS is not loaded: .*/net/ip_vs does not exist"):
        b.services()
    with pytest.raises(LBError, match="IPVS is not loaded"):
        b.drain("TCP 10.0.0.1:80", "10.0.0.2:80")
    assert fake.calls() == []  # ipvsadm -L would have loaded ip_vs as a side effect


def test_ipvs_weights_go_past_haproxys_256_up_to_the_kernels_limit(
    tmp_path: Path, proc: Path
) -> None:
    """The controller's range for an IPVS balancer is the kernel's, not HAProxy's 0..256."""
    fake = FakeIpvsadm(tmp_path, RICH)
    ctl = LBController({"ipvs": balancer(fake, proc)}, None)
    big = ctl.plan_set_weight("ipvs", "TCP 10.0.0.1:80", "10.0.0.2:80", 1000)
    assert big.ok and big.after == 1000, big.message
    over = ctl.set_weight("ipvs", "TCP 10.0.0.1:80", "10.0.0.2:80", 2**31)
    assert not over.ok and "out of range 0..2147483647" in over.message
    assert fake.edits() == []  # nothing ran
