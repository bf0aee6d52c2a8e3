"""DR and TUN sanity (ctop/arpcheck.py): real agents in network namespaces, each configured as
an LVS real server correctly or wrongly, checked against IPVS tables captured from a real
kernel (tests/fixtures/ipvs: ipvsadm_rich.txt's DR service, tunnel_capture.txt's TUN one).

Sysctls and addresses are per network namespace, so each namespace is one real server as its
agent sees it. The unit tests below use facts captured this way (tests/fixtures/arp/).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from agentd.encoder import encode
from agentd.protocol import Header, Report
from ctop.alerts import AlertEngine, parse_rules
from ctop.arpcheck import findings, problems
from ctop.ingest import Verifier
from ctop.lb.ipvs_parse import parse_list
from ctop.snapshot import LBServiceView, Liveness, NodeView, RealServerView
from tests.helpers import netns_lab
from tests.helpers.agent_helpers import AGENTD, KEY
from tests.helpers.fake_ipvsadm import section

FIXTURES = Path(__file__).parent / "fixtures" / "arp"
DR = section("ipvsadm_rich.txt", "ipvsadm -Ln")  # TCP 10.0.0.1:443 -> 10.0.0.2 Route
TUN = section("tunnel_capture.txt", "ipvsadm -Ln --tun-info --exact")  # UDP 10.0.0.1:80 Tunnel


def _views(table: str, owners: dict[str, str]) -> tuple[LBServiceView, ...]:
    """The director's view of a captured IPVS table, real servers mapped to nodes by address."""
    return tuple(
        LBServiceView(vs.key, "ipvs", vs.protocol, vs.scheduler, tuple(
            RealServerView(rs.key, rs.address, rs.port, rs.weight, "serving", 0, 0, 0.0,
                           node_id=owners.get(rs.address, ""), forward=rs.forward)
            for rs in vs.servers))
        for vs in parse_list(table))


def _node(node_id: str, address: str, arp: object) -> NodeView:
    return NodeView(node_id, node_id, "web", Liveness.ALIVE, 0.0, 1, 1.0, (address,),
                    metrics={"arp": arp})


def _captured(name: str) -> list[tuple]:
    return [(*e[:4], tuple(e[4])) for e in json.loads((FIXTURES / name).read_text())]


# ---- on captured facts ------------------------------------------------------------------


def test_a_correct_dr_real_server_has_no_finding():
    assert problems(_captured("good.json"), ["10.0.0.1"]) == []


def test_a_wrong_real_server_is_told_what_is_wrong():
    assert problems(_captured("vip_on_eth0.json"), ["10.0.0.1"]) == [
        "VIP 10.0.0.1 on eth0 (answers ARP for it)",
        "arp_ignore=0 on eth0 (needs 1)",
        "arp_announce=0 on eth0 (needs 2)",
    ]
    assert problems(_captured("no_vip.json"), ["10.0.0.1"]) == [
        "VIP 10.0.0.1 not on lo or a tunnel", "arp_ignore=0 on eth0 (needs 1)"]


def test_conf_all_counts_as_much_as_the_interface():
    """The kernel takes max(conf/all, conf/<iface>): conf/all = 1 and 2 is enough."""
    facts = _captured("no_vip.json")
    fixed = [("all", 0, 1, 2, ()) if e[0] == "all" else e for e in facts]
    assert problems(fixed, ["10.0.0.1"]) == ["VIP 10.0.0.1 not on lo or a tunnel"]


def test_only_dr_and_tun_real_servers_are_judged_and_only_with_facts():
    bad = _captured("vip_on_eth0.json")
    owners = {"10.0.0.2": "s1", "10.0.0.8": "s8"}
    nodes = [_node("s1", "10.0.0.2", bad), _node("s8", "10.0.0.8", bad),
             _node("old", "10.0.0.3", ())]  # an agent without ARP facts: not judged
    found = findings(nodes, _views(TUN, {**owners, "10.0.0.3": "old"}))
    assert [(f.node_id, f.address) for f in found] == [("s1", "10.0.0.2")]  # 10.0.0.8 is Masq
    assert found[0].message.startswith("s1 (10.0.0.2): VIP 10.0.0.1 on eth0")


def test_the_arp_check_rule_raises_one_alert_per_misconfigured_real_server():
    eng = AlertEngine(parse_rules([{"name": "lvs-arp", "arp_check": True, "severity": "crit"}]))
    nodes = [_node("s2", "10.0.0.2", _captured("no_vip.json"))]
    lb = _views(DR, {"10.0.0.2": "s2"})
    eng.evaluate(nodes, 0.0, lb)
    (alert,) = eng.firing()
    assert alert.node_id == "s2" and alert.severity == "crit"
    assert alert.message == ("s2 (10.0.0.2): VIP 10.0.0.1 not on lo or a tunnel; "
                             "arp_ignore=0 on eth0 (needs 1)")
    eng.evaluate([_node("s2", "10.0.0.2", _captured("good.json"))], 1.0, lb)
    assert eng.firing() == ()


def test_arp_check_takes_only_true():
    with pytest.raises(Exception, match="arp_check"):
        parse_rules([{"name": "x", "arp_check": 1}])


# ---- real agents in network namespaces ---------------------------------------------------


class _Server:
    """A network namespace set up as an LVS real server: eth0 (a veth) with the real server's
    address, optionally the VIP on lo, on eth0 or on a NOARP link (a tunnel's stand-in)."""

    def __init__(self, rip: str, vip: str, vip_on: str, ignore: int, announce: int) -> None:
        self.ns = f"ctw-{uuid.uuid4().hex[:8]}"
        self._ip("netns", "add", self.ns)
        self._ip("-n", self.ns, "link", "set", "lo", "up")
        self._ip("-n", self.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "tun0")
        self._ip("-n", self.ns, "addr", "add", f"{rip}/24", "dev", "eth0")
        self._ip("-n", self.ns, "link", "set", "tun0", "arp", "off")
        for dev in ("eth0", "tun0"):
            self._ip("-n", self.ns, "link", "set", dev, "up")
        if vip_on:
            self._ip("-n", self.ns, "addr", "add", f"{vip}/32", "dev", vip_on)
        for name, value in (("arp_ignore", ignore), ("arp_announce", announce)):
            self._exec("sysctl", "-qw", f"net.ipv4.conf.all.{name}={value}")

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)

    def _exec(self, *cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def agent_facts(self) -> list:
        """The ARP facts of one report of the real agent in this namespace, as they arrive at
        the director: encoded and signed, then verified and decoded."""
        out = json.loads(self._exec(str(AGENTD), "--config", "/dev/null", "--once", "--json",
                                    "--interval", "0.1", "--node-id", self.ns))
        report = Report(Header(self.ns, 1, 1, out["ts"]), 1.0, "", out["metrics"])
        msg = Verifier(KEY).verify(encode(KEY, report))
        return msg.metrics["arp"]

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=20)


@pytest.fixture
def servers():
    made: list[_Server] = []
    yield made
    for s in made:
        s.close()


@pytest.mark.root
@pytest.mark.skipif(bool(netns_lab.usable()), reason=netns_lab.usable() or "ok")
def test_real_agents_in_namespaces_against_captured_ipvs_tables(servers):
    # DR: 10.0.0.2 right. TUN: 10.0.0.2 right, 10.0.0.3 with the VIP on a NOARP link (right),
    # 10.0.0.4 wrong twice over, 10.0.0.8 (Masq) wrong but not judged.
    layout = {
        "10.0.0.2": ("lo", 1, 2), "10.0.0.3": ("tun0", 2, 2), "10.0.0.4": ("eth0", 0, 2),
        "10.0.0.8": ("", 0, 0),
    }
    nodes, owners = [], {}
    for rip, (vip_on, ignore, announce) in layout.items():
        server = _Server(rip, "10.0.0.1", vip_on, ignore, announce)
        servers.append(server)
        node_id = f"rs-{rip.rsplit('.', 1)[1]}"
        owners[rip] = node_id
        nodes.append(_node(node_id, rip, server.agent_facts()))
    assert findings(nodes, _views(DR, owners)) == []
    (bad,) = findings(nodes, _views(TUN, owners))
    assert bad.message == ("rs-4 (10.0.0.4): VIP 10.0.0.1 on eth0 (answers ARP for it); "
                           "arp_ignore=0 on eth0 (needs 1)")


@pytest.mark.parametrize("arp", [
    [["eth0", 0, 0, 256, ["10.0.0.2"]]],  # sysctl beyond 255
    [["eth0", 0, -2, 2, ["10.0.0.2"]]],  # below "unknown"
    [["eth0", 0, 1, 2, ["10.0.0.2"] * 9]],  # more than 8 addresses
    [["eth0", 0, 1, 2, "10.0.0.2"]],  # addresses not a list
    [["", 0, 1, 2, []]],  # no interface name
    [["eth0", 0, 1, 2, []]] * 18,  # more than 17 entries
])
def test_bad_arp_facts_are_refused_by_name(arp):
    import time

    from agentd.protocol import Reason, Rejected, seal

    verifier = Verifier(KEY)
    msg = verifier.verify(seal(KEY, {"k": "r", "n": "n1", "b": 1, "q": 1, "t": time.time(),
                                     "i": 1, "m": {"v": [0] * 21, "ar": arp}}))
    assert isinstance(msg, Rejected) and msg.reason is Reason.BAD_FIELD
    assert "metric arp" in msg.detail
