"""The receiver's order check: `Verifier.verify_deferred` judges the common case (same boot,
the next sequence numbers, fresh) inline, and everything else through `check_order`. Both
must decide every datagram as `verify` (which always goes through `check_order`) does, with
the same reasons, and leave the same marks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentd.encoder import encode
from agentd.protocol import Header, RawReport, Rejected, Report
from ctop.ingest.verifier import SEQ_SLACK, Verifier
from tests.helpers.fuzz import examples

KEY = b"o" * 32
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _report(node: str, boot: int, seq: int, ts: float) -> bytes:
    return encode(KEY, Report(Header(node, boot, seq, ts), 1.0, "g", {"cpu_percent": 1.0}))


# One step: which node, its boot (a few, so restarts and old boots happen), how far its
# sequence moves (back, repeat, next, jumps past the slack), the timestamp's offset from the
# receiver's clock (fresh, stale, ahead) and how far the clock moves.
_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from([1, 2, 3]),
        st.sampled_from([-3, 0, 1, 1, 1, 2, SEQ_SLACK, SEQ_SLACK + 1, 10 * SEQ_SLACK]),
        st.sampled_from([0.0, -0.5, -29.9, -31.0, 29.9, 31.0, -5.0]),
        st.sampled_from([0.0, 0.1, 1.0, 7.0]),
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=examples(ci=150, deep=600), deadline=None)
@given(_steps)
def test_the_inline_order_check_decides_like_check_order(steps: list) -> None:
    clocks = Clock(), Clock()
    deferred = Verifier(KEY, max_age=30, max_skew=30, clock=clocks[0])
    eager = Verifier(KEY, max_age=30, max_skew=30, clock=clocks[1])
    seqs = {"a": 0, "b": 0}
    for node, boot, move, offset, wait in steps:
        for clock in clocks:
            clock.now += wait
        seqs[node] = max(0, seqs[node] + move)
        data = _report(node, boot, seqs[node], clocks[0].now + offset)
        got, want = deferred.verify_deferred(data), eager.verify(data)
        if type(want) is Rejected:
            assert type(got) is Rejected and got.reason == want.reason, (got, want)
        else:
            assert type(got) is RawReport and got.header == want.header
    assert deferred.marks() == eager.marks()


def test_check_order_and_the_marks_are_public() -> None:
    """Receiver workers and the engine use the order check and the marks (found in review:
    they reached into private names)."""
    v = Verifier(KEY)
    report = Report(Header("n", 1, 5, START), 1.0, "g", {})
    v.clock = lambda: START
    assert v.check_order(report) is report
    assert type(v.check_order(report)) is Rejected  # the same sequence again: a replay
    assert v.nodes["n"].seq == 5

