"""LBController on a backend that drains by weight 0 (IPVS semantics), and the journal.

The real IPVS runs under qemu in tests/ipvs; here a tiny in-memory table with IPVS's rules
(weight 0 = drained, the old weight is gone) checks the backend-independent parts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from ctop.lb.actions import LBController
from ctop.lb.base import LBError, RealServer, ServerState, VirtualService
from ctop.lb.journal import Journal, current_user
from ctop.lb.request import ActionRequest, plan_of

SVC = "TCP 10.0.0.1:80"


class WeightZeroTable:
    """IPVS-like: drain sets weight 0, ready sets the weight; errors like ipvsadm's."""

    name = "ipvs"
    max_weight = 2**31 - 1

    def __init__(self) -> None:
        self.weights = {"10.0.0.2:80": 5, "10.0.0.3:80": 1}
        self.fail_next: str | None = None

    def services(self) -> list[VirtualService]:
        servers = tuple(
            RealServer(
                k,
                k.split(":")[0],
                80,
                w,
                ServerState.DRAINED if w == 0 else ServerState.SERVING,
                forward="masq",
            )
            for k, w in self.weights.items()
        )
        return [VirtualService(SVC, "ipvs", "TCP", "10.0.0.1", 80, "wlc", servers=servers)]

    def _set(self, server: str, weight: int) -> None:
        if self.fail_next:
            msg, self.fail_next = self.fail_next, None
            raise LBError(msg, command="ipvsadm -e")
        if server not in self.weights:
            raise LBError("Memory allocation problem")  # what ipvsadm really says, sadly
        self.weights[server] = weight

    def set_weight(self, service_key: str, server_key: str, weight: int) -> None:
        self._set(server_key, weight)

    def drain(self, service_key: str, server_key: str) -> None:
        self._set(server_key, 0)

    def ready(self, service_key: str, server_key: str, weight: int) -> None:
        self._set(server_key, weight)


def make(tmp_path, **kw) -> tuple[LBController, WeightZeroTable, Journal]:
    table, journal = WeightZeroTable(), Journal(tmp_path / "ctop.db")
    return LBController({"ipvs": table}, journal, **kw), table, journal


def test_drain_restore_remembers_weight_lost_by_the_balancer(tmp_path) -> None:
    ctl, table, journal = make(tmp_path)
    res = ctl.drain("ipvs", SVC, "10.0.0.2:80")
    assert res.ok and (res.before, res.after) == (5, 0)
    assert table.weights["10.0.0.2:80"] == 0
    journal.close()
    ctl2 = LBController({"ipvs": table}, Journal(tmp_path / "ctop.db"))  # restart
    res = ctl2.restore("ipvs", SVC, "10.0.0.2:80")
    assert res.ok and res.after == 5 and table.weights["10.0.0.2:80"] == 5


def test_restore_without_memory_is_refused(tmp_path) -> None:
    ctl, table, _ = make(tmp_path)
    table.weights["10.0.0.3:80"] = 0  # drained by someone else, weight unknown
    res = ctl.restore("ipvs", SVC, "10.0.0.3:80")
    assert not res.ok and "no remembered weight" in res.message


def test_failure_is_reported_and_recorded(tmp_path) -> None:
    ctl, table, journal = make(tmp_path)
    table.fail_next = "No such destination"
    res = ctl.set_weight("ipvs", SVC, "10.0.0.3:80", 7)
    assert not res.ok and res.message == "No such destination"
    assert table.weights["10.0.0.3:80"] == 1
    row = journal.actions()[0]
    assert (row.action, row.weight_before, row.weight_after, row.result) == (
        "weight",
        1,
        1,
        "No such destination",
    )


def test_read_back_mismatch_is_rolled_back(tmp_path) -> None:
    ctl, table, _ = make(tmp_path)

    def sloppy(service_key: str, server_key: str, weight: int) -> None:
        table.weights[server_key] = weight + 1  # the balancer did something else

    table.set_weight = sloppy  # type: ignore[method-assign]
    res = ctl.set_weight("ipvs", SVC, "10.0.0.3:80", 3)
    assert not res.ok and "read back shows weight 4, expected 3" in res.message
    assert "put back" in res.message


def test_big_ipvs_weights_and_range(tmp_path) -> None:
    ctl, _table, _ = make(tmp_path)
    assert ctl.set_weight("ipvs", SVC, "10.0.0.3:80", 2**31 - 1).ok
    assert not ctl.set_weight("ipvs", SVC, "10.0.0.3:80", 2**31).ok
    assert not ctl.set_weight("ipvs", SVC, "10.0.0.3:80", True).ok  # a bool is not a weight
    top = ctl.step_weight("ipvs", SVC, "10.0.0.3:80", 10)
    assert top.ok and top.noop and top.after == 2**31 - 1 and "range 0..2147483647" in top.message


def test_step_down_to_zero_then_restore(tmp_path) -> None:
    ctl, _table, _ = make(tmp_path)
    assert ctl.step_weight("ipvs", SVC, "10.0.0.3:80", -1).after == 0
    assert ctl.restore("ipvs", SVC, "10.0.0.3:80").after == 1


def test_services_marks_auto_drains_quiesced(tmp_path) -> None:
    ctl, _, _ = make(tmp_path)
    ctl.drain("ipvs", SVC, "10.0.0.3:80", origin="auto")
    states = {rs.key: rs.state for rs in ctl.services()[0].servers}
    assert states == {"10.0.0.2:80": ServerState.SERVING, "10.0.0.3:80": ServerState.QUIESCED}


def test_journal_schema_and_user(tmp_path) -> None:
    _, _, journal = make(tmp_path)
    db = sqlite3.connect(tmp_path / "ctop.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"lb_actions", "lb_intent"} <= tables
    assert journal.user == current_user() and current_user()
    Journal(tmp_path / "ctop.db").close()  # opening again is harmless (IF NOT EXISTS)


def test_plan_text(tmp_path) -> None:
    ctl, _, _ = make(tmp_path)
    plan = plan_of(ctl, ActionRequest("drain", "ipvs", SVC, "10.0.0.2:80"))
    assert plan.text() == (
        f"ipvs {SVC} / 10.0.0.2:80: drain\n  before: weight 5 (serving)"
        "\n  after:  weight 0 (drained)"
    )
    missing = plan_of(ctl, ActionRequest("restore", "nobackend", SVC, "x"))
    assert not missing.ok and "no balancer 'nobackend'" in missing.text()
    assert replace(plan, ok=False, message="m").text().endswith(": m")
