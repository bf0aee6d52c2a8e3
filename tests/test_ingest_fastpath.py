"""The receiver's deferred path: Verifier.verify_deferred + ClusterModel folding at snapshot.

Semantics (docs/protocol.md): arrival checks (size, version, tag, header, staleness, order)
run per datagram; a report's body is decoded and checked when the snapshot folds in the
newest one per node; a body refused then is counted as bad_field and the node keeps its
previous metrics.
"""

from __future__ import annotations

import time

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.encoder import encode
from agentd.protocol import Header, RawReport, Reason, Rejected, Report, ServiceStatus, seal
from ctop.cluster import ClusterModel
from ctop.ingest.decode import decode_report
from ctop.ingest.verifier import Verifier
from ctop.snapshot import Liveness
from tests.helpers.fuzz import examples

KEY = b"k" * 32


def report(node: str = "n1", seq: int = 1, cpu: float = 12.5, boot: int = 7) -> Report:
    return Report(
        Header(node, boot, seq, time.time()), 1.0, "rack-1",
        {"cpu_percent": cpu, "tcp_established": 10, "load": [1.0, 0.5, 0.25]},
        (ServiceStatus("http", "ok", 1.5),),
    )


def bad_body(node: str = "n1", seq: int = 2, boot: int = 7) -> bytes:
    body = {"k": "r", "n": node, "b": boot, "q": seq, "t": time.time(), "i": 1.0,
            "m": {"v": [-1]}}  # a negative scalar: bad_field
    return seal(KEY, body)


def model_with_rejects() -> tuple[ClusterModel, list[Rejected]]:
    model = ClusterModel("t")
    seen: list[Rejected] = []
    model.on_reject = lambda r, source: seen.append(r)
    return model, seen


def test_deferred_gives_the_same_report_as_verify() -> None:
    data = encode(KEY, report())
    raw = Verifier(KEY).verify_deferred(data)
    assert type(raw) is RawReport
    assert decode_report(raw) == Verifier(KEY).verify(data)


def test_verify_still_returns_parsed_messages() -> None:
    assert type(Verifier(KEY).verify(encode(KEY, report()))) is Report


def test_arrival_checks_reject_like_verify() -> None:
    v = Verifier(KEY)
    data = encode(KEY, report())
    assert v.verify_deferred(data[:-1] + bytes([data[-1] ^ 1])).reason == Reason.BAD_TAG
    assert v.verify_deferred(b"x" * 1300).reason == Reason.OVERSIZE
    assert v.verify_deferred(b"CT\x02" + data[3:]).reason == Reason.BAD_VERSION
    assert type(v.verify_deferred(data)) is RawReport
    assert v.verify_deferred(data).reason == Reason.REPLAY
    old = encode(KEY, report(seq=5)._replace(header=Header("n1", 7, 5, time.time() - 99)))
    assert v.verify_deferred(old).reason == Reason.STALE
    bad_header = seal(KEY, {"k": "r", "n": "", "b": 1, "q": 1, "t": time.time(), "i": 1.0})
    assert v.verify_deferred(bad_header).reason == Reason.BAD_FIELD


def test_bad_body_counted_at_fold_and_previous_metrics_kept() -> None:
    v = Verifier(KEY)
    model, seen = model_with_rejects()
    now = time.time()
    model.apply(v.verify_deferred(encode(KEY, report(seq=1, cpu=12.5))), now)  # registers
    assert model.nodes["n1"].metrics["cpu_percent"] == 12.5
    raw = v.verify_deferred(bad_body(seq=2))
    assert type(raw) is RawReport  # genuine, fresh, in order: the body is not looked at yet
    model.apply(raw, now + 1)
    assert model.received == 2
    snap = model.snapshot(now + 1, 1)
    assert [r.reason for r in seen] == [Reason.BAD_FIELD]
    assert model.rejected["bad_field"] == 1 and model.received == 1
    view = snap.node("n1")
    assert view is not None and view.cpu == 12.5 and view.last_seen == now + 1
    assert view.liveness is Liveness.ALIVE


def test_bad_body_from_unknown_node_never_registers() -> None:
    model, seen = model_with_rejects()
    model.apply(Verifier(KEY).verify_deferred(bad_body(node="ghost", seq=1)), time.time())
    assert "ghost" not in model.nodes and len(seen) == 1 and model.received == 0


def test_newest_report_per_tick_wins_and_loss_counts_every_datagram() -> None:
    v = Verifier(KEY)
    model = ClusterModel("t")
    now = time.time()
    for seq in range(1, 20):
        if seq in (5, 6):
            continue  # lost
        model.apply(v.verify_deferred(encode(KEY, report(seq=seq, cpu=float(seq)))), now)
    view = model.snapshot(now, 1).node("n1")
    assert view is not None and view.cpu == 19.0
    assert model.received == 17
    assert abs(view.loss - 2 / 19) < 1e-9


def test_unchanged_nodes_keep_their_view() -> None:
    v = Verifier(KEY)
    model = ClusterModel("t")
    now = time.time()
    model.apply(v.verify_deferred(encode(KEY, report("a", 1))), now)
    model.apply(v.verify_deferred(encode(KEY, report("b", 1))), now)
    first = model.snapshot(now, 1)
    second = model.snapshot(now, 2)
    assert second.nodes[0] is first.nodes[0] and second.nodes[1] is first.nodes[1]
    model.apply(v.verify_deferred(encode(KEY, report("b", 2, cpu=50.0))), now + 1)
    third = model.snapshot(now + 1, 3)
    assert third.node("b").cpu == 50.0 and third.node("b") is not second.node("b")
    model.tick(now + 100)  # both dead: views change once, then stay
    dead = model.snapshot(now + 100, 4)
    assert all(n.liveness is Liveness.DEAD for n in dead.nodes)
    assert model.snapshot(now + 101, 5).nodes[0] is dead.nodes[0]


def test_group_change_resorts() -> None:
    model = ClusterModel("t")
    now = time.time()
    model.apply(report("a", 1)._replace(group="z"), now)
    model.apply(report("b", 1)._replace(group="m"), now)
    assert [n.node_id for n in model.snapshot(now, 1).nodes] == ["b", "a"]
    model.apply(report("a", 2)._replace(group="a"), now)
    snap = model.snapshot(now, 2)
    assert [n.node_id for n in snap.nodes] == ["a", "b"]
    assert [g.name for g in snap.groups] == ["a", "m"] and snap.node("b") is snap.nodes[1]


_VALUES = st.one_of(
    st.none(), st.integers(-5, 5), st.floats(), st.text(max_size=3),
    st.lists(st.integers(-1, 3), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(-9, 2**40), max_size=2),
)
_KEYS = st.sampled_from(["k", "n", "b", "q", "t", "i", "g", "m", "s", "x"])


@settings(max_examples=examples(ci=150, deep=300), deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=10))
def test_deferred_accepts_and_refuses_like_verify(body: dict) -> None:
    body = {"k": "r", "n": "n", "b": 1, "q": 1, "t": time.time(), "i": 1.0, **body}
    data = seal(KEY, body)
    eager = Verifier(KEY).verify(data)
    lazy = Verifier(KEY).verify_deferred(data)
    if type(lazy) is RawReport:
        lazy = decode_report(lazy)
    for got in (eager, lazy):  # "internal" is the verifier catching its own crash: a bug
        assert type(got) is not Rejected or not got.detail.startswith("internal"), got
    if type(eager) is Rejected:
        assert type(lazy) is Rejected
        # the order of checks differs: on arrival stale/replay come before body checks
        assert lazy.reason in (eager.reason, Reason.STALE)
    else:
        assert lazy == eager


def test_undecodable_tail_is_not_msgpack_at_fold() -> None:
    head = msgpack.packb({"k": "r", "n": "n1", "b": 7, "q": 1, "t": time.time(), "i": 1.0,
                          "m": {}, "s": []})
    data = seal(KEY, {})[:3] + head[:-2] + b"\xc1"  # \xc1 is never valid msgpack
    import hmac as _hmac
    data = data + _hmac.digest(KEY, data, "sha256")[:16]
    raw = Verifier(KEY).verify_deferred(data)
    result = decode_report(raw) if type(raw) is RawReport else raw
    assert type(result) is Rejected and result.reason == Reason.NOT_MSGPACK


def test_idle_folding_takes_bodies_in_oldest_first_batches() -> None:
    """What the receiver does whenever its socket runs empty: the tick finds little left."""
    model, seen = model_with_rejects()
    v = Verifier(KEY)
    t = time.time()
    for i, node in enumerate(("a", "b", "c")):  # registered (first reports are checked at once)
        model.apply(v.verify_deferred(encode(KEY, report(node, 1, cpu=1.0))), t, "10.0.0.1")
        model.apply(v.verify_deferred(encode(KEY, report(node, 2, cpu=50.0 + i))), t, "10.0.0.1")
    model.apply(v.verify_deferred(bad_body("c", 3)), t, "10.0.0.1")  # c's newest is bad
    assert model.fold_some(1) == 1  # a
    assert model.nodes["a"].metrics["cpu_percent"] == 50.0
    assert model.nodes["b"].metrics["cpu_percent"] == 1.0  # not folded yet
    assert model.fold_some(10) == 2  # b, then c's bad body
    assert model.nodes["b"].metrics["cpu_percent"] == 51.0
    assert model.nodes["c"].metrics["cpu_percent"] == 1.0 and [r.reason for r in seen] == [
        Reason.BAD_FIELD]
    assert model.fold_some(10) == 0
    snap = model.snapshot(t, 1)
    assert snap.node("a").cpu == 50.0 and snap.node("c").liveness is Liveness.ALIVE


def test_busy_folding_takes_only_bodies_queued_long_enough() -> None:
    """While the socket stays busy: bodies queued at least the fold age ago are checked
    (each node's newest), younger ones wait for a later batch or the tick."""
    model, _ = model_with_rejects()
    v = Verifier(KEY)
    t = time.time()
    for node in ("a", "b"):
        model.apply(v.verify_deferred(encode(KEY, report(node, 1, cpu=1.0))), t, "10.0.0.1")
    model.apply(v.verify_deferred(encode(KEY, report("a", 2, cpu=20.0))), t, "10.0.0.1")
    model.apply(v.verify_deferred(encode(KEY, report("b", 2, cpu=30.0))), t + 0.8, "10.0.0.1")
    model.apply(v.verify_deferred(encode(KEY, report("a", 3, cpu=21.0))), t + 0.9, "10.0.0.1")
    assert model.fold_some(100, t + 0.5) == 1  # a, queued at t: its newest body
    assert model.nodes["a"].metrics["cpu_percent"] == 21.0
    assert model.nodes["b"].metrics["cpu_percent"] == 1.0  # queued at t + 0.8: not yet
    assert model.fold_some(100, t + 1.3) == 1
    assert model.nodes["b"].metrics["cpu_percent"] == 30.0


def test_a_socket_that_never_drains_still_gets_bodies_checked() -> None:
    """Real UDP: a receiver read in whole batches (never idle) takes report bodies in as the
    engine wires it, between batches, instead of leaving every one to the tick (seconds of
    stall at 60,000 nodes). A bad body among them is counted once, by reason."""
    import asyncio
    import socket

    from ctop.engine import FOLD_AGE, FOLD_BATCH
    from ctop.receiver import BATCH, Receiver

    nodes = [f"busy-{i}" for i in range(BATCH + 100)]
    model, _ = model_with_rejects()
    v = Verifier(KEY)

    async def run() -> None:
        rx = Receiver(v, lambda m, s, now: model.apply(m, now, s), "127.0.0.1", 0,
                      deferred=True, tune_gc=False)
        model.on_reject = lambda r, s: rx.count_drop(r, s, accepted=True)
        rx.on_idle = lambda: model.fold_some(FOLD_BATCH)
        rx.on_busy = lambda now: model.fold_some(BATCH, now - FOLD_AGE)
        rx.open()
        assert rx.sock is not None
        asyncio.get_running_loop().remove_reader(rx.sock.fileno())  # we drive the reads
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def send(seq: int, cpu: float) -> None:
            for node in nodes:
                data = bad_body(node, seq) if node == "busy-3" and seq == 3 \
                    else encode(KEY, report(node, seq, cpu=cpu))
                out.sendto(data, ("127.0.0.1", rx.port))

        send(1, 1.0)  # registrations: checked on arrival
        while rx.accepted + sum(rx.drops.values()) < len(nodes):
            rx._drain()
        send(2, 2.0)
        rx._drain()  # a whole batch of pending bodies, none old enough yet
        assert model.nodes["busy-0"].metrics["cpu_percent"] == 1.0
        time.sleep(FOLD_AGE + 0.1)
        send(3, 3.0)
        rx._drain()  # again a whole batch: the first batch's bodies are due now
        # read: every registration, a batch, a batch; one body refused, counted once
        assert rx.accepted + sum(rx.drops.values()) == len(nodes) + 2 * BATCH
        assert dict(rx.drops) == {"bad_field": 1}
        out.close()
        rx.close()

    asyncio.run(run())
    assert model.nodes["busy-0"].metrics["cpu_percent"] == 3.0  # its newest, no tick ran
    assert model.nodes["busy-3"].metrics["cpu_percent"] == 1.0  # bad body: keeps the last
    assert model.nodes[nodes[-1]].metrics["cpu_percent"] == 1.0  # queued late: the tick's


def test_unchanged_views_follow_the_cluster_load_share() -> None:
    """A node that did not report keeps its view, and its share of the cluster's
    connections (the snapshot's) moves when another node's connections do: the same view a
    fresh build would give."""
    from ctop.cluster import _view

    model = ClusterModel("t")
    v = Verifier(KEY)
    t = time.time()

    def send(node: str, seq: int, conns: int) -> None:
        r = report(node, seq)
        r.metrics["tcp_established"] = conns
        model.apply(v.verify_deferred(encode(KEY, r)), t, "10.0.0.1")

    send("quiet", 1, 100)
    send("busy", 1, 100)
    first = model.snapshot(t, 1)
    assert first.load_share(first.node("quiet")) == 0.5
    send("busy", 2, 300)
    snap = model.snapshot(t, 2)
    quiet = snap.node("quiet")
    assert snap.load_share(quiet) == 0.25 and snap.load_share(snap.node("busy")) == 0.75
    assert quiet == _view(model.nodes["quiet"])


def test_a_body_that_does_not_decode_never_counts_for_liveness() -> None:
    """The body is decoded once, whole, on arrival: signed bytes whose header decodes but
    whose rest does not are refused there (not_msgpack), so they neither keep the node alive
    nor move its sequence (the old header-only decode accepted them until the fold)."""
    v = Verifier(KEY)
    model, _ = model_with_rejects()
    t = time.time()
    model.apply(v.verify_deferred(encode(KEY, report(seq=1))), t, "10.0.0.1")
    head = msgpack.packb({"k": "r", "n": "n1", "b": 7, "q": 2, "t": t, "i": 1.0,
                          "m": {}, "s": []})
    import hmac as _hmac
    payload = b"CT\x01" + head[:-2] + b"\xc1"  # \xc1 is never valid msgpack
    got = v.verify_deferred(payload + _hmac.digest(KEY, payload, "sha256")[:16])
    assert type(got) is Rejected and got.reason == Reason.NOT_MSGPACK
    assert type(v.verify_deferred(encode(KEY, report(seq=2)))) is RawReport  # seq 2 still new
    assert model.nodes["n1"].last_seen == t and model.received == 1


def test_the_fold_of_a_decoded_body_refuses_what_the_reference_refuses() -> None:
    """The fold checks the map decoded on arrival with the fast path's cheap checks (service
    entries by value from a cache): shapes that compare equal to valid ones must still be
    refused, as the reference path does."""
    v = Verifier(KEY)
    good = {"k": "r", "n": "n1", "b": 7, "q": 1, "t": time.time(), "i": 1.0,
            "m": {"v": [1] * 21}, "s": [["http", 1, 15, 3]]}
    assert type(decode_report(v.verify_deferred(seal(KEY, good)))) is Report  # cached entry
    shapes = [
        {"s": [{"http": 0, 1: 0, 15: 0, 3: 0}]},  # a map whose keys are a cached entry
        {"s": [["http", True, 15, 3]]},  # True equals the cached status 1
        {"s": ["http"]},
        {"m": {"v": [1] * 21, "ni": {b"eth0": [1, 2, 3, 4]}}},  # key not a str
        {"m": {"v": [1] * 21, "ni": {"eth0": b"\x01\x02"}}},  # value not a list
        {"m": {"v": [1] * 21, "ni": {"eth0": "12"}}},
        {"m": {"v": [1] * 21, "ts": {"x" * 256: [1]}}},  # key too long
        {"m": {"v": [1] * 20 + [float("nan")]}},
        {"m": {"v": [1] * 20 + [-1]}},
        {"m": {"v": [1001] + [1] * 20}},  # cpu_percent over 100.0
    ]
    for seq, shape in enumerate(shapes, start=2):
        body = {**good, "q": seq, **shape}
        eager = Verifier(KEY).verify(seal(KEY, body))
        assert type(eager) is Rejected and eager.reason == Reason.BAD_FIELD, shape
        raw = v.verify_deferred(seal(KEY, body))
        assert type(raw) is RawReport, shape
        got = decode_report(raw)
        assert type(got) is Rejected and got.reason == Reason.BAD_FIELD, shape
