"""ctop.nats.pair.PairSync in one process: two directors' sides on a real nats-server, their
balancers replaced by the callbacks that would apply a change (what each was asked to do)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ctop.lb.actions import ActionResult
from ctop.lb.base import ServerState
from ctop.lb.journal import Actor
from ctop.lb.request import ActionRequest
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.pair import PairSync
from ctop.snapshot import LBServiceView, RealServerView
from tests.helpers.nats_servers import NatsServer

pytest.importorskip("nats")

IPVS = ("ipvs", "TCP 10.0.0.1:80", "10.0.0.5:80")  # spaces and colons: not a NATS key as is


def _ok(req: ActionRequest, before: int = 3, after: int = 5) -> ActionResult:
    return ActionResult(True, f"{req.verb} done", req.action, req.balancer, req.service,
                        req.server, before, after, ServerState.SERVING, ServerState.SERVING,
                        applied=True, origin=req.origin)


class Side:
    def __init__(self, server: NatsServer, cluster: str, me: str, peer: str,
                 answer: Callable[[ActionRequest], ActionResult] = _ok) -> None:
        cfg = NatsConfig(servers=(server.url,), name=me, peers=(peer,), confirm_timeout=2.0)
        self.link = NatsLink(cfg).start()
        assert self.link.wait_connected(10)
        self.applied: list[tuple[ActionRequest, Actor]] = []
        self.events: list[str] = []

        def apply(req: ActionRequest, actor: Actor) -> ActionResult:
            self.applied.append((req, actor))
            return answer(req)

        self.sync = PairSync(self.link, cfg, cluster, apply=apply,
                             on_events=lambda evs: self.events.extend(e.message for e in evs))

    def close(self) -> None:
        self.sync.close()
        self.link.close()


@pytest.fixture
def sides(nats_server: NatsServer) -> Iterator[Callable[..., Side]]:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    made: list[Side] = []

    def make(me: str, peer: str, **kw: Any) -> Side:
        made.append(Side(nats_server, cluster, me, peer, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _until(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def _seen(a: Side, b: Side) -> None:
    b.sync.round(())  # b publishes its (empty) table: a sees it
    _until(lambda: not a.sync.problem())


def test_a_step_on_an_ipvs_service_reaches_the_peer_as_the_weight_it_became(sides) -> None:
    a, b = sides("dir-a", "dir-b"), sides("dir-b", "dir-a")
    _seen(a, b)
    req = ActionRequest("step", *IPVS, value=2, origin="cli")
    result = a.sync.act(req, Actor("alice"), _ok)
    assert result.ok and "peer dir-b: confirmed" in result.message
    (got, actor), = b.applied
    assert (got.verb, got.balancer, got.service, got.server, got.value) == ("weight", *IPVS, 5)
    assert actor.user == "alice@dir-a" and got.origin == "cli"
    assert a.applied == []  # nobody sends our own change back to us


def test_a_peer_that_refuses_is_reported_and_fails_the_action(sides) -> None:
    def refuse(req: ActionRequest) -> ActionResult:
        return ActionResult(False, "read-only: this ctop refuses changes", req.action,
                            req.balancer, req.service, req.server, None, None)

    a, b = sides("dir-a", "dir-b"), sides("dir-b", "dir-a", answer=refuse)
    _seen(a, b)
    result = a.sync.act(ActionRequest("drain", *IPVS, origin="operator"), Actor("bob"), _ok)
    assert not result.ok
    assert "peer dir-b: FAILED: read-only" in result.message


def test_no_peer_refuses_before_changing_anything(sides) -> None:
    a = sides("dir-a", "dir-b")
    ran: list[ActionRequest] = []
    result = a.sync.act(ActionRequest("drain", *IPVS), Actor("carol"),
                        lambda r: ran.append(r) or _ok(r))
    assert not result.ok and ran == []
    assert "dir-b has not been seen" in result.message and "--local" in result.message


def test_a_restarted_peer_applies_each_intent_once(sides) -> None:
    a, b = sides("dir-a", "dir-b"), sides("dir-b", "dir-a")
    _seen(a, b)
    assert a.sync.act(ActionRequest("drain", *IPVS, origin="cli"), Actor("dan"), _ok).ok
    assert len(b.applied) == 1
    b.close()  # b restarts: its watch delivers the intent again, already confirmed
    again = sides("dir-b", "dir-a")
    again.sync.round(())
    time.sleep(0.5)
    assert again.applied == []


def test_divergence_names_the_difference_and_resolves(sides) -> None:
    a, b = sides("dir-a", "dir-b"), sides("dir-b", "dir-a")

    def views(weight: int) -> tuple[LBServiceView, ...]:
        rs = RealServerView("s3", "127.0.0.1", 80, weight, "serving", 0, 0, 0.0)
        return (LBServiceView("web4", "haproxy", "http", "roundrobin", (rs,)),)

    b.sync.round(views(7))
    _until(lambda: not a.sync.problem())
    for _ in range(2):  # a difference must outlast a round before it is an alert
        a.sync.round(views(1))
    (alert,) = a.sync.alerts()
    assert alert.message == ("tables differ from dir-b: haproxy web4 s3: dir-a serving weight "
                             "1, dir-b serving weight 7")
    b.sync.round(views(1))
    _until(lambda: (a.sync.round(views(1)), not a.sync.alerts())[1])
    assert any("tables agree with dir-b" in e for e in a.events)
    notes = a.sync.take_notes()  # what the [[hook]]s get
    assert [(n.state, n.alert.rule) for n in notes] == [("firing", "pair_divergence"),
                                                         ("resolved", "pair_divergence")]



def test_a_stale_revision_of_an_intent_applied_here_is_written_on_top(sides) -> None:
    """A acts on a server whose newest intent (B's) it has applied but whose revision it has
    not seen yet: the write is retried on top of it, not refused."""
    a, b = sides("dir-a", "dir-b"), sides("dir-b", "dir-a")
    _seen(a, b)
    _seen(b, a)
    assert a.sync.act(ActionRequest("weight", *IPVS, value=4), Actor("ann"), _ok).ok
    (key,) = a.sync._revs
    stale = a.sync._revs[key]
    assert b.sync.act(ActionRequest("drain", *IPVS), Actor("ben"), _ok).ok
    _until(lambda: a.applied)  # A applied B's drain
    a.sync._revs[key] = stale  # as if its watch had not told it the new revision yet
    result = a.sync.act(ActionRequest("weight", *IPVS, value=9), Actor("ann"), _ok)
    assert result.ok and "peer dir-b: confirmed" in result.message, result.message


def test_a_change_racing_a_peer_intent_not_applied_here_is_refused(sides) -> None:
    """B's maint has reached A but A's applier has not applied it yet (here: it is busy on
    it): a weight set on A now would be undone by the maint on A while B applies the weight —
    each ending with the other's change. A refuses to share it and says it follows B."""
    import threading

    busy, release = threading.Event(), threading.Event()

    def slow(req: ActionRequest) -> ActionResult:
        busy.set()
        release.wait(10)
        return _ok(req)

    a, b = sides("dir-a", "dir-b", answer=slow), sides("dir-b", "dir-a")
    _seen(a, b)
    _seen(b, a)
    done: list[ActionResult] = []
    threading.Thread(target=lambda: done.append(
        b.sync.act(ActionRequest("maint", *IPVS), Actor("ben"), _ok))).start()
    assert busy.wait(5)  # A is applying B's maint right now
    result = a.sync.act(ActionRequest("weight", *IPVS, value=2), Actor("ann"), _ok)
    release.set()
    assert not result.ok and "CONFLICT" in result.message and "ben@dir-b" in result.message
    _until(lambda: done)
    assert done[0].ok  # B's maint is confirmed by A: both end in maint
    assert not [r for r, _ in b.applied if r.verb == "weight" and r.value == 2]
