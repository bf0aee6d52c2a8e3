"""Why an operator changed a balancer (issue 14: intents carry who, what, when and why):
`ctop lb … --why` through a real `ctop serve` on a real HAProxy lands in the journal, in
`ctop lb log` (text and --json) and in the action's event; a bad reason is refused with nothing
changed; an older journal database gains the column and keeps its rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from ctop.control.client import ask
from ctop.control.wire import ControlError
from ctop.lb.journal import Journal
from tests.helpers.haproxy_peer import HAProxyLab
from tests.helpers.lb_owner_helpers import Director, director, server_stat, serving

WHY = "OPS-42: kernel update on s2"


@pytest.fixture
def served(haproxy: HAProxyLab) -> Iterator[Director]:
    with director(haproxy) as d, serving(d):
        try:
            yield d
        finally:  # the HAProxy lab is shared by the session: leave web4 as it was
            haproxy.cmd("set server web4/s2 state ready")
            haproxy.cmd("set server web4/s2 weight 1")


def _whys(d: Director) -> list[str | None]:
    with sqlite3.connect(d.db) as db:
        return [row[0] for row in db.execute("SELECT why FROM lb_actions ORDER BY id")]


def test_drain_with_why_through_the_daemon_is_journaled_logged_and_told(
        served: Director, haproxy: HAProxyLab) -> None:
    d = served
    out = d.lb("drain", "web4", "s2", "--why", WHY)
    assert out.returncode == 0, out.stderr
    assert server_stat(haproxy, "web4", "s2")[1] == "DRAIN"
    assert _whys(d)[-1] == WHY
    log = d.lb("log", "web4", "s2")
    assert log.returncode == 0 and f"drain 1->0 (saved 1) ok why: {WHY}" in log.stdout, log.stdout
    rows = json.loads(d.lb("log", "--json", "web4", "s2").stdout)
    assert rows[0]["action"] == "drain" and rows[0]["why"] == WHY
    assert any("drain haproxy web4 s2" in m and m.endswith(f"why: {WHY}") for m in d.events())
    # a restore without a reason records none (not the drain's)
    assert d.lb("restore", "web4", "s2").returncode == 0
    assert _whys(d)[-1] is None
    assert "why:" not in d.lb("log", "web4", "s2").stdout.splitlines()[0]


@pytest.mark.parametrize("bad", ["x" * 201, "tab\there", "bell\x07"],
                         ids=["too-long", "tab", "control"])
def test_a_bad_why_is_refused_and_nothing_changes(
        served: Director, haproxy: HAProxyLab, bad: str) -> None:
    d = served
    before, rows = server_stat(haproxy, "web4", "s2"), len(_whys(d))
    out = d.lb("drain", "web4", "s2", "--why", bad)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "why" in out.stderr and ("at most 200" in out.stderr or "printable" in out.stderr)
    assert server_stat(haproxy, "web4", "s2") == before
    assert len(_whys(d)) == rows
    # a client that does not check (another version, a script) meets the daemon's own check
    plain = {"verb": "drain", "balancer": "haproxy", "service": "web4", "server": "s2",
             "why": bad}
    with pytest.raises(ControlError, match="bad action request: why"):
        ask(str(d.socket), "action " + json.dumps({"request": plain}))
    assert server_stat(haproxy, "web4", "s2") == before
    assert len(_whys(d)) == rows


def test_an_old_journal_gains_the_why_column_and_keeps_its_rows(tmp_path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:  # lb_actions as the journal made it before `why`
        old.execute("CREATE TABLE lb_actions (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT"
                    " NULL, user TEXT NOT NULL, origin TEXT NOT NULL, backend TEXT NOT NULL,"
                    " service TEXT NOT NULL, server TEXT NOT NULL, action TEXT NOT NULL,"
                    " weight_before INTEGER, weight_after INTEGER, result TEXT NOT NULL,"
                    " sudo_user TEXT, saved_weight INTEGER)")
        old.execute("INSERT INTO lb_actions VALUES (1, 1.0, 'root', 'cli', 'haproxy', 'web',"
                    " 's1', 'drain', 1, 0, 'ok', 'bob', 1)")
    old.close()
    journal = Journal(db)
    try:
        rows = journal.actions()
        assert [(r.who, r.action, r.saved_weight, r.why) for r in rows] == [
            ("root (sudo bob)", "drain", 1, None)]
    finally:
        journal.close()
