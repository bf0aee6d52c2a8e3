"""`ctop silence` through a real `ctop serve`: the author read from the socket, the silenced
alert in `ctop status` and Prometheus, and the control group's permission."""

from __future__ import annotations

import grp
import json
import pwd
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from ctop.control.client import ask
from ctop.control.wire import ControlError
from ctop.lb.journal import current_user
from tests.helpers.accounts import control_group_and_outsider
from tests.helpers.haproxy_peer import HAProxyLab, free_port
from tests.helpers.lb_owner_helpers import CTOP, clean_env, director, serving
from tests.helpers.serve_helpers import Daemon, Sender, node


def test_a_silence_through_the_daemon_is_the_callers_shows_in_status_and_prometheus(tmp_path):
    prom = free_port()
    d = Daemon(tmp_path, f'[prometheus]\nlisten = "127.0.0.1:{prom}"').start()
    me = current_user()
    try:
        out = d.ctop("silence", "add", "--node", "n1", "--for", "1h", "--reason", "disk swap")
        assert out.returncode == 0, out.stderr
        assert f"by {me}: disk swap" in out.stdout
        sid = out.stdout.split()[1].rstrip(":")
        bad = d.ctop("silence", "add", "--node", "n1", "--for", "40d", "--reason", "x")
        assert bad.returncode == 1 and "at most 30d" in bad.stderr

        s = Sender("n1")
        d.send(s.join())
        d.send(s.report())
        d.wait_for(lambda st: node(st, "n1"), what="n1 registered")
        d.send(s.leave())  # node-left fires, silenced
        st = d.wait_for(lambda st: st["alerts"], what="the node-left alert")
        [a] = st["alerts"]
        assert (a["rule"], a["muted"], a["muted_by"], a["muted_note"]) == (
            "node-left", "silenced", me, "disk swap")
        # the daemon kept it, and says so to every operator
        assert any(f"{me} silenced node=n1" in e[3] for e in st["events"])
        assert f"(silenced by {me} until " in d.status_text()
        metrics = httpx.get(f"http://127.0.0.1:{prom}/metrics").text
        assert 'ctop_muted_alerts{cluster="t",how="silenced"} 1' in metrics
        assert 'ctop_firing_alerts{cluster="t"} 1' in metrics

        listed = d.ctop("silence", "ls", "--json")
        assert [x["node"] for x in json.loads(listed.stdout)] == ["n1"]
        out = d.ctop("silence", "rm", sid)
        assert out.returncode == 0 and f"removed by {me}" in out.stdout, out.stderr
        d.wait_for(lambda st: st["alerts"] and not st["alerts"][0]["muted"],
                   what="the alert no longer silenced")
        assert "no active silences" in d.ctop("silence", "ls").stdout
        history = d.ctop("silence", "ls", "--all").stdout
        assert f"removed by {me} at" in history and "disk swap" in history
        again = d.ctop("silence", "rm", sid)
        assert again.returncode == 1 and "already removed" in again.stderr
        # bad requests get a clear answer and the daemon goes on
        for bad, words in (("silence {not json", "bad silence request"),
                           ('silence {"op": "add", "node": "n1"}', "bad silence request"),
                           ('silence {"op": "rm", "id": 999}', "no silence 999"),
                           ('silence {"op": "nuke"}', "unknown op")):
            with pytest.raises(ControlError, match=words):
                ask(str(d.sock), bad)
        assert d.status()["alerts"]
    finally:
        d.stop()


@pytest.fixture
def outsider() -> Iterator[tuple[str, str]]:
    """A control group and a user outside it (real accounts, removed afterwards)."""
    with control_group_and_outsider() as acc:
        yield acc.group, acc.user


@pytest.mark.root
def test_only_root_and_the_control_group_may_silence_and_the_author_is_the_caller(
        haproxy: HAProxyLab, outsider) -> None:
    group, user = outsider
    gid = grp.getgrnam(group).gr_gid
    as_outsider = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    as_member = ["setpriv", f"--reuid={user}", f"--regid={user}", f"--groups={gid}"]

    def silence(who: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*who, str(CTOP), "silence", *args, "--config", str(d.config)],
                              capture_output=True, text=True, timeout=30,
                              env=clean_env({"HOME": "/tmp"}))

    with director(haproxy, f'[control]\ngroup = "{group}"') as d, serving(d):
        add = ("add", "--group", "web", "--for", "1h", "--reason", "deploy")
        out = silence(as_outsider, *add)
        # the socket's mode says no, and nothing is written past the daemon
        assert out.returncode == 1 and "permission denied" in out.stderr, out.stderr
        # a socket opened to everyone by mistake: the daemon still checks the peer
        d.socket.chmod(0o666)
        out = silence(as_outsider, *add)
        assert out.returncode == 1 and "silences are refused" in out.stderr, out.stderr
        assert "no active silences" in silence([], "ls").stdout
        out = silence(as_member, *add)
        assert out.returncode == 0, out.stderr
        assert f"by {user}: deploy" in out.stdout  # from SO_PEERCRED, not a claim
        uid = pwd.getpwnam(user).pw_uid
        assert f"(uid {uid})" not in out.stdout


def test_without_a_daemon_ctop_silence_writes_the_history_database_as_the_local_user(tmp_path):
    d = Daemon(tmp_path)  # its config, not started
    out = d.ctop("silence", "add", "--group", "web", "--for", "30m", "--reason", "deploy")
    assert out.returncode == 0, out.stderr
    assert f"by {current_user()}: deploy" in out.stdout
    assert (d.db.stat().st_mode & 0o777) == 0o640
    d.start()  # the daemon keeps what was written before it
    try:
        listed = json.loads(d.ctop("silence", "ls", "--json").stdout)
        assert [(s["group"], s["reason"]) for s in listed] == [("web", "deploy")]
    finally:
        d.stop()
