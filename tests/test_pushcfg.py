"""Monitoring items pushed from the director per group (issue 13): real agentd processes, a
real `ctop serve`, real UDP both ways (docs/protocol.md, "Configuration push")."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.encoder import encode
from agentd.protocol import ConfigVersion, Header, Join
from agentd.push import Push, digest, encode_push, push_key
from ctop.config import ConfigError, load
from ctop.ingest.verifier import Verifier
from tests.helpers.agent_helpers import KEY, Receiver, start_agent, stop_agent, write_key
from tests.helpers.serve_helpers import Daemon, Sender, node

MASTER = b"push-master-secret-0123456789abcdef"


@pytest.fixture
def tcp_service() -> Iterator[int]:
    """A listening TCP port: what the pushed probe checks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def _agent(tmp: Path, director: str, node_id: str, push_key_text: bytes | None,
           *extra: str, group: str = "web") -> subprocess.Popen[str]:
    key = write_key(tmp / f"{node_id}.key")
    args = ["--director", director, "--key-file", str(key), "--node-id", node_id,
            "--group", group, "--interval", "0.2", "--join-interval", "0.5",
            "--beacon-interval", "0", "--push-state-file", str(tmp / f"{node_id}.push")]
    if push_key_text is not None:
        args += ["--push-key-file", str(write_key(tmp / f"{node_id}.pushkey",
                                                   key=push_key_text))]
    return start_agent(*args, *extra)


def _daemon(tmp: Path, port: int) -> Daemon:
    master = write_key(tmp / "push.master", key=MASTER)
    return Daemon(tmp, f'push_master_key_file = "{master}"\n'
                       f'[groups.web]\nprobes = ["tcp://127.0.0.1:{port}"]\n'
                       f'watch = ["nginx"]\n').start()


def _services(status: dict, node_id: str) -> dict[str, str]:
    n = node(status, node_id)
    return {s[0]: s[1] for s in n["services"]} if n else {}


def test_a_group_config_reaches_the_agent_without_a_restart(tmp_path, tcp_service):
    d = _daemon(tmp_path, tcp_service)
    issued = d.ctop("keys", "issue", "web1", "--push")
    assert issued.returncode == 0, issued.stderr
    agent = _agent(tmp_path, f"127.0.0.1:{d.port}", "web1", issued.stdout.strip().encode())
    try:
        probe = f"tcp://127.0.0.1:{tcp_service}"
        st = d.wait_for(lambda s: _services(s, "web1").get(probe) == "ok", timeout=20,
                        what="the pushed probe's result in the node's reports")
        n = node(st, "web1")
        assert n["restarts"] == 0 and agent.poll() is None  # applied live, no restart
        version = digest([f"tcp://127.0.0.1:{tcp_service}"], ["nginx"])
        st = d.wait_for(lambda s: s["configs"]["nodes"]["web1"]["current"], what="current")
        assert st["configs"]["nodes"]["web1"]["running"] == version
        st = d.wait_for(lambda s: node(s, "web1")["config"] == f"{version} current",
                        what="the node's view (UI) showing the version as current")
        assert f"config {version} current" in d.status_text()
        groups = d.ctop("groups")
        assert groups.returncode == 0, groups.stderr
        assert f"group web: version {version}, 1/1 nodes current" in groups.stdout
        assert "web1" in groups.stdout and "nginx" in groups.stdout
    finally:
        _, err = stop_agent(agent)
        d.stop()
    assert f"pushed configuration {version}" in err


def test_an_agent_without_a_push_key_is_shown_not_current(tmp_path, tcp_service):
    d = _daemon(tmp_path, tcp_service)
    agent = _agent(tmp_path, f"127.0.0.1:{d.port}", "web2", None)
    try:
        st = d.wait_for(lambda s: s["configs"]["nodes"].get("web2", {}).get("refused", 0) >= 1,
                        what="a refused push counted in the join")
        assert not st["configs"]["nodes"]["web2"]["current"]
        assert "NOT CURRENT" in d.ctop("groups").stdout
        assert _services(st, "web2") == {}
    finally:
        _, err = stop_agent(agent)
        d.stop()
    assert "configuration push refused (no_key" in err


class FakeDirector:
    """A socket playing the director: hears the agent's joins, answers with pushes."""

    def __init__(self) -> None:
        self.rx = Receiver()
        self.verifier = Verifier(KEY, max_age=30, max_skew=30)
        self.agent_addr: tuple[str, int] | None = None

    def join(self, timeout: float = 10) -> Join:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.rx.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, addr = self.rx.sock.recvfrom(65535)
            except TimeoutError:
                break
            msg = self.verifier.verify(data)
            if isinstance(msg, Join):
                self.agent_addr = addr
                return msg
        raise AssertionError("no join from the agent")

    def join_where(self, check, timeout: float = 10) -> Join:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = self.join(deadline - time.monotonic())
            if check(j):
                return j
        raise AssertionError("no such join")

    def push(self, data: bytes) -> None:
        assert self.agent_addr is not None
        self.rx.sock.sendto(data, self.agent_addr)


def _push(node_id: str, serial: int, probes: list, key: bytes | None = None) -> bytes:
    return encode_push(key or push_key(MASTER, node_id),
                       Push(node_id, "web", serial, digest(probes, []), time.time(),
                            tuple(probes), ()))


@pytest.fixture
def fake_director() -> Iterator[FakeDirector]:
    f = FakeDirector()
    yield f
    f.rx.close()


def test_forged_replayed_and_command_pushes_are_refused_and_counted(
        tmp_path, tcp_service, fake_director):
    f = fake_director
    agent = _agent(tmp_path, f.rx.address, "web3", push_key(MASTER, "web3"))
    try:
        j = f.join()
        assert j.config == (0, "", 0)
        good = [f"tcp://127.0.0.1:{tcp_service}"]
        # another node's push key, and the cluster key: not this node's push key
        f.push(_push("web3", 10, good, key=push_key(MASTER, "web4")))
        f.push(_push("web3", 10, good, key=KEY))
        j = f.join_where(lambda j: j.config.refused >= 2)
        assert j.config.serial == 0 and not j.probes
        # a command probe: no remote code execution unless the node allows it
        f.push(_push("web3", 11, [{"type": "command", "command": "touch "
                                    f"{tmp_path / 'ran'}", "name": "cmd"}]))
        j = f.join_where(lambda j: j.config.refused >= 3)
        assert j.config.serial == 0
        v1 = _push("web3", 20, good)
        f.push(v1)
        j = f.join_where(lambda j: j.config.serial == 20)
        assert [p.port for p in j.probes] == [tcp_service]
        v2 = _push("web3", 30, [])
        f.push(v2)
        j = f.join_where(lambda j: j.config.serial == 30)
        assert not j.probes
        f.push(v1)  # the older version replayed
        j = f.join_where(lambda j: j.config.refused >= 4)
        assert j.config.serial == 30 and not j.probes
    finally:
        _, err = stop_agent(agent)
    assert not (tmp_path / "ran").exists()
    assert "(bad_tag" in err and "(command_not_allowed" in err and "(replay" in err
    # after a restart the node runs v2 from its state file and still refuses v1
    agent = _agent(tmp_path, f.rx.address, "web3", push_key(MASTER, "web3"))
    try:
        j = f.join()
        assert j.config.serial == 30
        f.push(v1)
        j = f.join_where(lambda j: j.config.refused >= 1)
        assert j.config.serial == 30 and not j.probes
    finally:
        stop_agent(agent)


def test_a_pushed_command_probe_runs_where_the_node_allows_it(tmp_path, fake_director):
    f = fake_director
    marker = tmp_path / "ran"
    agent = _agent(tmp_path, f.rx.address, "web5", push_key(MASTER, "web5"),
                   "--allow-remote-commands")
    try:
        f.join()
        f.push(_push("web5", 5, [{"type": "command", "command": f"touch {marker}",
                                  "name": "cmd", "interval": 0.2}]))
        f.join_where(lambda j: j.config.serial == 5)
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists()
    finally:
        stop_agent(agent)



def test_an_agent_from_before_pushes_is_shown_and_never_pushed_to(tmp_path, tcp_service):
    d = _daemon(tmp_path, tcp_service)
    old = Sender("old1")  # a join without `cv`, as agents before pushes send
    try:
        d.send(encode(KEY, Join(old.header(), "old1", ("127.0.0.9",), 2, 1 << 30, "0.9", 1.0,
                                "web")))
        d.send(old.report())
        # the configs and the published snapshot (one a tick) both show it: the text status
        # reads both (a busy CI machine once showed the configs a tick before the snapshot)
        st = d.wait_for(lambda s: "old1" in s["configs"]["nodes"]
                        and any(n["node_id"] == "old1" for n in s["nodes"]),
                        what="the old agent")
        assert st["configs"]["nodes"]["old1"]["running"] == "-"
        assert st["configs"]["sent"] == 0
        assert "config old agent NOT CURRENT" in d.status_text()
    finally:
        d.stop()


def test_an_older_director_reads_a_join_that_carries_the_version(tmp_path):
    """The decoder of the commit before pushes, run as it was, takes a new agent's join."""
    base = "48f6e80"
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", base, "agentd", "ctop",
                              "probes"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {base} is not in this clone")
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    join = Join(Header("n1", 1, 1, time.time()), "h", ("10.0.0.1",), 2, 1 << 30, "1", 1.0,
                "web", (), ConfigVersion(5, "612bad29f5fe", 2))
    data = encode(KEY, join)
    code = ("import sys; from ctop.ingest.verifier import Verifier; "
            f"m = Verifier({KEY!r}).verify(bytes.fromhex({data.hex()!r})); "
            "print(type(m).__name__, m.group)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(tmp_path)})
    assert out.stdout.split() == ["Join", "web"], out.stderr


def test_a_bad_probe_in_a_group_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "ctop.toml"
    path.write_text('[groups.web]\nprobes = ["nosuch://x"]\n')
    with pytest.raises(ConfigError, match=r"groups.*web.*probe 1"):
        load(str(path))
    long = [f"http://127.0.0.1:{8000 + i}/{'x' * 60}" for i in range(16)]
    path.write_text(f"[groups.web]\nprobes = {long!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match="at most 1200 fit in one datagram"):
        load(str(path))


def test_the_node_detail_says_which_configuration_the_node_runs():
    from ctop.tui.colors import palette_for
    from ctop.tui.screens.node_detail import _title
    from tests.helpers.sample import sample_snapshot

    snap = sample_snapshot(6)
    node_view = snap.nodes[0]
    pal = palette_for("truecolor")
    assert "config" not in _title(node_view, snap, pal, "1h").plain  # its group has none
    behind = node_view._replace(config="612bad29f5fe NOT CURRENT")
    assert "config 612bad29f5fe NOT CURRENT" in _title(behind, snap, pal, "1h").plain
