"""One owner of load-balancer changes, with real `ctop serve` and `ctop lb` processes on a real
HAProxy: concurrent commands take turns (flock without a daemon, the daemon's queue with one),
the daemon runs and publishes every change, read-only holds on every path, and the journal says
who did it."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers.accounts import control_group_and_outsider
from tests.helpers.haproxy_peer import HAProxyLab
from tests.helpers.lb_owner_helpers import CTOP, configured_weight, director, server_stat, serving

ROUNDS = 3  # each round starts two commands at once; any overlap used to undo one of them


def _both(d, first: list[str], second: list[str]) -> None:
    a, b = d.lb_async(*first), d.lb_async(*second)
    for p, args in ((a, first), (b, second)):
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, f"{args}: {err}"


def _agrees_with_last(d, haproxy: HAProxyLab, backend: str, server: str) -> None:
    """HAProxy is where the command that finished last left it, and that was reported."""
    _, _, origin, action, after, result = d.journal()[-1]
    assert result == "ok" and origin == "cli"
    weight, status = server_stat(haproxy, backend, server)
    if action == "drain":
        assert status == "DRAIN", (action, weight, status)
    else:
        assert (configured_weight(haproxy, backend, server), status) == (after, "UP")


def test_two_weights_at_once_without_a_daemon_end_at_the_last_one(haproxy: HAProxyLab) -> None:
    with director(haproxy) as d:
        for _ in range(ROUNDS):
            _both(d, ["weight", "web1", "s1", "20"], ["weight", "web1", "s1", "40"])
            _agrees_with_last(d, haproxy, "web1", "s1")
            assert [r[-1] for r in d.journal()][-2:] == ["ok", "ok"]
            # the journal is the order of application: the first row saw the old weight
            haproxy.cmd("set server web1/s1 weight 1")


def test_drain_and_weight_at_once_leave_journal_and_haproxy_agreeing(
        haproxy: HAProxyLab) -> None:
    with director(haproxy) as d:
        for _ in range(ROUNDS):
            _both(d, ["drain", "web2", "s1"], ["weight", "web2", "s1", "30"])
            _agrees_with_last(d, haproxy, "web2", "s1")
            assert d.lb("restore", "web2", "s1").returncode in (0, 1)
            haproxy.cmd("set server web2/s1 state ready")
            haproxy.cmd("set server web2/s1 weight 1")


def _flock_waiters(pid: int) -> bool:
    """Whether process `pid` waits for an flock (a "->" line of /proc/locks)."""
    with open("/proc/locks") as f:
        return any(line.split()[1:3] == ["->", "FLOCK"] and line.split()[5] == str(pid)
                   for line in f)


def test_a_command_waits_for_the_lock_another_process_holds(haproxy: HAProxyLab) -> None:
    """The two tests above rarely overlap (a change takes milliseconds, starting a command a
    second): with the flock taken out they still passed. Here the test holds the lock itself,
    as another process in the middle of a change would, and the command must wait for it."""
    with director(haproxy) as d:
        fd = os.open(f"{d.db}.lb-lock", os.O_RDONLY | os.O_CREAT, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            p = d.lb_async("weight", "web4", "s2", "20")
            deadline = time.monotonic() + 30
            while not _flock_waiters(p.pid):
                assert p.poll() is None, "the command did not wait: " + p.communicate()[1]
                assert time.monotonic() < deadline, "the command never asked for the lock"
                time.sleep(0.05)
            assert configured_weight(haproxy, "web4", "s2") == 1  # nothing changed meanwhile
        finally:
            os.close(fd)  # releases the lock
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert configured_weight(haproxy, "web4", "s2") == 20

        with serving(d) as serve:  # the daemon's changes take the same lock
            fd = os.open(f"{d.db}.lb-lock", os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                p = d.lb_async("weight", "web4", "s2", "30")
                deadline = time.monotonic() + 30
                while not _flock_waiters(serve.pid):
                    assert p.poll() is None, "the daemon did not wait: " + p.communicate()[1]
                    assert time.monotonic() < deadline, "the daemon never asked for the lock"
                    time.sleep(0.05)
                assert configured_weight(haproxy, "web4", "s2") == 20
            finally:
                os.close(fd)
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert configured_weight(haproxy, "web4", "s2") == 30


def test_the_daemon_and_a_local_command_take_turns_and_the_daemon_publishes_it(
        haproxy: HAProxyLab) -> None:
    with director(haproxy) as d, serving(d):
        for _ in range(ROUNDS):
            # one through the daemon, one acting here under the shared lock
            _both(d, ["weight", "web3", "s1", "20"], ["--no-daemon", "weight", "web3", "s1", "40"])
            _agrees_with_last(d, haproxy, "web3", "s1")
        # the daemon's change is an event every attached UI sees, with who did it (defect 3)
        assert any(m.startswith("root cli weight haproxy web3 s1") for m in d.events())
        # two through the daemon: it queues them, both succeed, the last one stands
        _both(d, ["weight", "web3", "s2", "20"], ["weight", "web3", "s2", "40"])
        _agrees_with_last(d, haproxy, "web3", "s2")
        events = [m for m in d.events() if "web3 s2" in m]
        assert len(events) == 2 and all(m.endswith("ok") for m in events), events


def test_ctop_lb_through_the_daemon_names_the_user_and_resolves_the_service(
        haproxy: HAProxyLab) -> None:
    with director(haproxy) as d, serving(d):
        out = d.lb("--json", "drain", "web4", "s3", env={"SUDO_USER": "alice"})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["after"] == 0
        assert server_stat(haproxy, "web4", "s3")[1] == "DRAIN"
        assert d.journal()[-1][:4] == ("root", "alice", "cli", "drain")
        assert any(m.startswith("root (sudo alice) cli drain haproxy web4 s3") for m in d.events())
        log = d.lb("log")
        assert "root (sudo alice) cli haproxy web4/s3 drain" in log.stdout, log.stdout
        missing = d.lb("drain", "web4", "nope")
        assert missing.returncode == 1 and "nope" in missing.stderr
        unknown = d.lb("drain", "nosuch", "s1")
        assert unknown.returncode == 1 and "no service 'nosuch'" in unknown.stderr


# -- read-only, once ------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "lb_extra", "serve_args"), [
    ("", "readonly = true", ()),  # [lb] readonly
    ("readonly = true", "", ()),  # the top-level key
    ("", "", ("--readonly",)),  # ctop serve --readonly: stops `ctop lb` next to it too
], ids=["lb-key", "top-level-key", "serve-flag"])
def test_read_only_stops_ctop_lb_through_the_daemon(
        haproxy: HAProxyLab, extra: str, lb_extra: str, serve_args: tuple[str, ...]) -> None:
    with director(haproxy, extra, lb_extra=lb_extra) as d, serving(d, *serve_args):
        status = json.loads(d.status().stdout)
        assert status["readonly"] is True
        text = subprocess.run([str(CTOP), "status", "--config", str(d.config)],
                              capture_output=True, text=True, timeout=30).stdout
        assert "load-balancer changes: refused (read-only)" in text
        for args in (["drain", "web5", "s1"], ["weight", "web5", "s1", "7"],
                     ["maint", "web5", "s1"]):
            out = d.lb(*args)
            assert out.returncode == 1 and "read-only" in out.stderr, (args, out.stderr)
        assert server_stat(haproxy, "web5", "s1") == (1, "UP")
        # acting here instead (--no-daemon): the config's, or the running daemon's, read-only
        out = d.lb("--no-daemon", "drain", "web5", "s1")
        assert out.returncode == 1 and "read-only" in out.stderr
        assert server_stat(haproxy, "web5", "s1") == (1, "UP")
        assert [r for r in d.journal() if r[-1] == "ok"] == []


def test_ctop_lb_readonly_flag_refuses_even_with_a_daemon_that_would_act(
        haproxy: HAProxyLab) -> None:
    with director(haproxy) as d, serving(d):
        out = d.lb("--readonly", "drain", "web5", "s2")
        assert out.returncode == 1 and "read-only" in out.stderr
        assert server_stat(haproxy, "web5", "s2") == (1, "UP")


# -- who did it --------------------------------------------------------------------------------


@pytest.fixture
def operator_accounts() -> Iterator[tuple[str, str, int]]:
    """A control group and a user outside it (real accounts, removed afterwards)."""
    with control_group_and_outsider() as acc:
        yield acc.group, acc.user, acc.gid


@pytest.mark.root
def test_changes_only_for_root_and_the_control_group_recorded_as_the_caller(
        haproxy: HAProxyLab, operator_accounts) -> None:
    group, user, gid = operator_accounts
    outsider = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    member = ["setpriv", f"--reuid={user}", f"--regid={user}", f"--groups={gid}"]
    env = {"HOME": "/tmp", "SUDO_USER": "alice"}
    with director(haproxy, f'[control]\ngroup = "{group}"') as d, serving(d):
        st = d.socket.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o660)

        # not in the group: the socket itself says no, and ctop lb does not act on its own
        out = d.lb("drain", "web6", "s1", as_user=outsider, env=env)
        assert out.returncode == 1 and "permission denied" in out.stderr, out.stderr
        assert server_stat(haproxy, "web6", "s1") == (1, "UP")

        # in the group: the daemon acts, and records the caller it read from the socket
        out = d.lb("drain", "web6", "s1", as_user=member, env=env)
        assert out.returncode == 0, out.stderr
        assert server_stat(haproxy, "web6", "s1")[1] == "DRAIN"
        assert d.journal()[-1][:4] == (user, "alice", "cli", "drain")
        assert any(m.startswith(f"{user} (sudo alice) cli drain haproxy web6 s1")
                   for m in d.events())

        # a socket opened to everyone by mistake: the daemon still checks the peer's uid
        d.socket.chmod(0o666)
        out = d.lb("restore", "web6", "s1", as_user=outsider, env=env)
        assert out.returncode == 1, out.stderr
        assert f"{user} (uid {pwd.getpwnam(user).pw_uid}) is neither root nor in group" \
            in out.stderr
        assert server_stat(haproxy, "web6", "s1")[1] == "DRAIN"
        read = d.status(as_user=outsider)
        assert read.returncode == 3 and "reading is refused" in read.stderr
        read = d.status(as_user=member)  # the control group reads (status, attached UI)
        assert read.returncode == 0 and json.loads(read.stdout)["cluster"], read.stderr
        # the refusal is an event every operator sees (in the snapshot from the next tick)
        deadline = time.monotonic() + 5
        while not any(m.startswith(f"refused {user}") for m in d.events()):
            assert time.monotonic() < deadline, d.events()
            time.sleep(0.1)
        # root may always
        assert d.lb("restore", "web6", "s1").returncode == 0
        assert d.journal()[-1][:4] == ("root", None, "cli", "restore")


def test_a_journal_from_before_sudo_user_is_migrated_and_keeps_its_rows(tmp_path) -> None:
    import sqlite3

    from ctop.lb.journal import Actor, Journal, acting_as

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:  # the lb_actions table as earlier versions made it
        old.execute("CREATE TABLE lb_actions (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT"
                    " NULL, user TEXT NOT NULL, origin TEXT NOT NULL, backend TEXT NOT NULL,"
                    " service TEXT NOT NULL, server TEXT NOT NULL, action TEXT NOT NULL,"
                    " weight_before INTEGER, weight_after INTEGER, result TEXT NOT NULL)")
        old.execute("INSERT INTO lb_actions VALUES (1, 1.0, 'root (sudo bob)', 'cli', 'haproxy',"
                    " 'web', 's1', 'drain', 1, 0, 'ok')")
    old.close()
    journal = Journal(db)
    with acting_as(Actor("carol", "dave")):
        journal.record(origin="cli", balancer="haproxy", service="web", server="s1",
                       action="restore", weight_before=0, weight_after=1, result="ok")
    rows = journal.actions()
    assert [(r.who, r.action) for r in rows] == [("carol (sudo dave)", "restore"),
                                                 ("root (sudo bob)", "drain")]
    journal.close()
    Journal(db).close()  # opening it again: nothing left to migrate, no error


def test_serve_with_a_control_group_that_does_not_exist_says_how_to_fix_it(
        haproxy: HAProxyLab) -> None:
    with director(haproxy, '[control]\ngroup = "ctop-no-such-group"') as d:
        out = subprocess.run([str(CTOP), "serve", "--config", str(d.config)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2
        assert "[control] group 'ctop-no-such-group' does not exist" in out.stderr
        assert "groupadd ctop-no-such-group" in out.stderr
