"""A balancer's name is `balancer` in Python, but what crosses the control socket and what
`ctop lb --json` prints keep the key "backend": an attached UI or a script written for the
previous release sends and reads that key. Real HAProxy, real controller and journal."""

from __future__ import annotations

import json

from ctop.lb.actions import LBController
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Journal
from ctop.lb.request import (
    ActionRequest,
    dry_run,
    plan_from_plain,
    plan_of,
    plan_to_plain,
    result_from_plain,
    result_to_plain,
)
from tests.helpers.haproxy_peer import HAProxyLab


def over_json(plain: dict) -> dict:
    return json.loads(json.dumps(plain))


def test_an_older_peers_request_and_the_answers_keep_the_backend_key(
    haproxy: HAProxyLab, tmp_path
) -> None:
    ctl = LBController({"haproxy": HAProxyBalancer(haproxy.admin_socket)},
                       Journal(tmp_path / "ctop.db"))
    # what an attached UI of the previous release sends
    sent = {"verb": "weight", "backend": "haproxy", "service": "web4", "server": "s1",
            "value": 3, "dry_run": True}
    request = ActionRequest.from_plain(over_json(sent))
    assert request.balancer == "haproxy"
    plain = request.to_plain()
    assert plain["backend"] == "haproxy" and "balancer" not in plain
    assert ActionRequest.from_plain(over_json(plain)) == request

    plan = plan_of(ctl, request)
    assert plan.ok and plan.balancer == "haproxy", plan.message
    plain = over_json(plan_to_plain(plan))
    assert plain["backend"] == "haproxy" and "balancer" not in plain
    assert plan_from_plain(plain) == plan

    result = dry_run(ctl, request)
    plain = over_json(result_to_plain(result))
    assert plain["backend"] == "haproxy" and "balancer" not in plain
    assert result_from_plain(plain) == result
