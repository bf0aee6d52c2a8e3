"""One owner of load-balancer changes, with real `ctop serve` and `ctop lb` processes on a real
HAProxy: concurrent commands take turns (flock without a daemon, the daemon's queue with one),
the daemon runs and publishes every change, read-only holds on every path, and the journal says
who did it."""

from __future__ import annotations

import json

import pytest

from tests.haproxy_peer import HAProxyLab
from tests.lb_owner_helpers import configured_weight, director, server_stat, serving

ROUNDS = 4  # each round starts two commands at once; any overlap used to undo one of them


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
        for args in (["drain", "web5", "s1"], ["weight", "web5", "s1", "7"],
                     ["maint", "web5", "s1"]):
            out = d.lb(*args)
            assert out.returncode == 1 and "read-only" in out.stderr, (args, out.stderr)
        assert server_stat(haproxy, "web5", "s1") == (1, "UP")
        # without the daemon the config's read-only holds too
        if not serve_args:
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
