"""Owners of the IPVS table on this host (no IPVS kernel here: the table itself is in the VM,
tests/ipvs/guest_owners.py): a real keepalived process is found from /proc with its config,
ctop's include is written where its real_server block reads it, the real keepalived reloads on
ctop's SIGHUP and reads the file, and keepalived's own config check computes weight 0 from it;
a block without the include line is refused with the file and line to change. ldirectord's
maintenance files are the names its source looks for."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ctop.lb.actions import Plan
from ctop.lb.owners import keepalived, ldirectord
from ctop.lb.owners.detect import TableOwner, detect
from ctop.lb.owners.ipvs_owners import IPVSOwners

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
SVC, RS1, RS2 = "TCP 10.9.0.1:80", "10.9.0.2:80", "10.9.0.3:80"


def ka_config(tmp: Path, own: Path) -> Path:
    (tmp / "more").mkdir()
    (tmp / "more" / "dns.conf").write_text(
        "virtual_server 10.9.0.5 53 {\n protocol UDP\n lb_algo rr\n lb_kind NAT\n"
        " real_server 10.9.0.6 53 {\n  weight 1\n }\n}\n")
    conf = tmp / "keepalived.conf"
    conf.write_text(f"""! keepalived config
global_defs {{
   router_id T1
}}
virtual_server 10.9.0.1 80
{{
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 10.9.0.2 80 {{
        weight 3
        include {own}/10.9.0.1_80/10.9.0.2_80.conf
        TCP_CHECK {{ connect_timeout 3 }}
    }}
    real_server 10.9.0.3 80 {{   # no include
        weight 2
    }}
}}
include more/*.conf
""")
    return conf


def plan(server: str, after: int, action: str = "drain") -> Plan:
    return Plan(action, "ipvs", SVC, server, 3, after, None, None, True, False)


@pytest.fixture
def running_keepalived(tmp_path):
    """A real keepalived (the VRRP subsystem only, -P: no IPVS needed) on a config with
    virtual servers; its log is its stdout."""
    own = tmp_path / "ctop"
    conf = ka_config(tmp_path, own)
    log = tmp_path / "keepalived.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([KEEPALIVED, "-f", str(conf), "-n", "-l", "-D", "-P",
                                 "-p", str(tmp_path / "k.pid"), "-r", str(tmp_path / "v.pid")],
                                stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while "Configuration file" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    yield proc, conf, own, log
    proc.terminate()
    proc.wait(timeout=10)


def test_parses_virtual_and_real_servers_through_includes(tmp_path):
    own = tmp_path / "ctop"
    services = keepalived.parse(ka_config(tmp_path, own), own)
    assert [vs.key for vs in services] == [SVC, "UDP 10.9.0.5:53"]
    vs, rs = keepalived.find(services, SVC, RS1)
    assert (rs.weight, rs.where) == (3, f"{tmp_path}/keepalived.conf:10")
    assert keepalived.includes_file(rs, keepalived.include_path(own, vs, rs))
    _, rs2 = keepalived.find(services, SVC, RS2)
    assert not keepalived.includes_file(rs2, keepalived.include_path(own, vs, rs2))
    # ctop's own file does not change what the operator configured
    keepalived.write_weight(keepalived.include_path(own, vs, rs), 0)
    assert keepalived.find(keepalived.parse(tmp_path / "keepalived.conf", own), SVC,
                           RS1)[1].weight == 3
    assert keepalived.find(keepalived.parse(tmp_path / "keepalived.conf"), SVC,
                           RS1)[1].weight == 0  # what keepalived itself reads


def test_a_running_keepalived_is_found_with_its_config(running_keepalived):
    proc, conf, _, _ = running_keepalived
    found = [o for o in detect() if o.config == conf]
    assert len(found) == 1 and found[0].kind == "keepalived"
    assert found[0].pid == proc.pid  # the main process, the one a reload signals
    assert found[0].services == (SVC, "UDP 10.9.0.5:53")
    assert "2 virtual servers" in found[0].text()


def test_the_include_is_written_and_keepalived_reloads_and_reads_it(running_keepalived,
                                                                  tmp_path):
    proc, conf, own, log = running_keepalived
    owners = IPVSOwners(str(own), find=lambda: [o for o in detect() if o.config == conf])
    assert owners.before_change(plan(RS1, 0)) == ""
    note = owners.after_change(plan(RS1, 0))
    include = own / "10.9.0.1_80" / "10.9.0.2_80.conf"
    assert "weight 0" in include.read_text() and str(include) in note
    deadline = time.monotonic() + 10
    while f"Opening file '{include}'" not in log.read_text():  # reloaded on ctop's SIGHUP
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert "Reloading" in log.read_text() and proc.poll() is None
    # keepalived's own config check accepts the config with ctop's file in it
    check = subprocess.run([KEEPALIVED, "-t", "-l", "-D", "-f", str(conf)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # restoring the configured weight removes the file: the config is the truth again
    assert "own weight" in owners.after_change(plan(RS1, 3, "restore"))
    assert not include.exists()


def test_a_block_without_the_include_is_refused_naming_file_and_line(running_keepalived):
    _, conf, own, _ = running_keepalived
    owners = IPVSOwners(str(own), find=lambda: [o for o in detect() if o.config == conf])
    refusal = owners.before_change(plan(RS2, 0))
    assert f"include {own}/10.9.0.1_80/10.9.0.3_80.conf" in refusal
    assert f"{conf}:15" in refusal and "next reload would undo this" in refusal
    assert owners.before_change(Plan("drain", "ipvs", "TCP 10.9.9.9:80", RS2, 1, 0, None,
                                     None, True, False)) == ""  # not keepalived's service


def test_keepalived_check_sees_weight_zero_from_the_include(tmp_path):
    own = tmp_path / "ctop"
    conf = ka_config(tmp_path, own)

    def total_weight_warning() -> bool:
        out = subprocess.run([KEEPALIVED, "-t", "-l", "-D", "-f", str(conf)],
                             capture_output=True, text=True)
        return "total weight of real servers 0" in out.stdout + out.stderr

    conf.write_text(conf.read_text().replace("weight 2", "weight 0"))  # rs2 out by config
    assert not total_weight_warning()  # rs1's weight 3 still counts
    keepalived.write_weight(keepalived.include_path(own, *keepalived.find(
        keepalived.parse(conf, own), SVC, RS1)), 0)
    assert total_weight_warning()  # ctop's include made rs1's weight 0 too


def ld_config(tmp: Path, maint: bool = True) -> Path:
    cf = tmp / "ldirectord.cf"
    cf.write_text(("maintenancedir=" + str(tmp / "maint") + "\n" if maint else "")
                  + "quiescent=yes\nvirtual=10.9.0.1:80\n\treal=10.9.0.2:80 masq 3\n"
                  "\treal=10.9.0.3:80 masq\n\tprotocol=tcp\n\tchecktype=connect\n")
    (tmp / "maint").mkdir(exist_ok=True)
    return cf


def test_ldirectord_maintenance_file_is_written_and_removed(tmp_path):
    cf = ld_config(tmp_path)
    owner = TableOwner("ldirectord", 1, cf, (SVC,))
    owners = IPVSOwners(str(tmp_path / "ka"), find=lambda: [owner])
    assert owners.before_change(plan(RS1, 0)) == ""
    owners.after_change(plan(RS1, 0))
    # the first name ldirectord's _check_real_for_maintenance looks for: IP:PORT
    assert [p.name for p in (tmp_path / "maint").iterdir()] == ["10.9.0.2:80"]
    (tmp_path / "maint" / "10.9.0.2").write_text("")  # the whole host, by someone else
    # putting it back removes ctop's file before the change (no check of ldirectord's sees it)
    assert owners.before_change(plan(RS1, 3, "restore")) == ""
    assert not (tmp_path / "maint" / "10.9.0.2:80").exists()
    note = owners.after_change(plan(RS1, 3, "restore"))
    assert [p.name for p in (tmp_path / "maint").iterdir()] == ["10.9.0.2"]
    assert "still holds it down" in note and "10.9.0.2" in note
    weight = owners.after_change(plan(RS1, 5, "weight"))
    assert "its next reload sets weight 3" in weight


def test_ldirectord_without_maintenancedir_refuses_a_drain(tmp_path):
    cf = ld_config(tmp_path, maint=False)
    owners = IPVSOwners(str(tmp_path / "ka"),
                        find=lambda: [TableOwner("ldirectord", 1, cf, (SVC,))])
    refusal = owners.before_change(plan(RS1, 0))
    assert "no maintenancedir" in refusal and str(cf) in refusal
    assert owners.before_change(plan(RS1, 4, "weight")) == ""  # a weight is not a drain


def test_ldirectord_config_path_is_resolved_as_ldirectord_does(tmp_path):
    assert ldirectord.config_path([str(tmp_path / "x.cf"), "start"]) == tmp_path / "x.cf"
