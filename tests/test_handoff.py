"""The receiver workers' hand-off format (ctop/ingest/handoff.py): a checked report packed by
a worker comes back in the engine as the very Report (values and their types), whatever its
metrics hold; a body that cannot be unpacked is refused, never raised."""

from __future__ import annotations

import time

from agentd.protocol import (
    UNSENT,
    Header,
    IndexedServices,
    RawReport,
    Reason,
    Rejected,
    Report,
    ServiceStatus,
)
from ctop.ingest import handoff
from ctop.ingest.decode import decode_report

SERVICES = (ServiceStatus("http", "ok", 1.5, "", 3), ServiceStatus("db", "fail", None, "no", None))


def _report(metrics: object, services: object = SERVICES,
            indexed: IndexedServices | None = None) -> Report:
    return Report(Header("n1", 7, 42, time.time()), 1.0, "web", metrics,  # type: ignore[arg-type]
                  services, indexed)  # type: ignore[arg-type]


def _through(packer: handoff.Packer, msg: Report,
             names: dict[int, tuple[str, ...]]) -> Report | Rejected:
    """Worker side: the entry and the frame; engine side: load, the RawReport, the fold."""
    entry = packer.report_entry(msg, "10.0.0.1", 1.0)
    frame = handoff.frame([entry], {}, (1, 0), packer.taken())
    entries, _, _, keys = handoff.load(frame[handoff.LENGTH.size:])
    names.update(keys)
    raw = handoff.raw_report(entries[0], names)
    assert type(raw) is RawReport and raw.header == msg.header
    return decode_report(raw)


def _same(got: object, want: object) -> None:
    assert got == want
    assert type(got) is type(want)
    if isinstance(want, dict):
        for k, v in want.items():
            _same(got[k], v)  # type: ignore[index]
    elif isinstance(want, list | tuple):
        for a, b in zip(got, want, strict=True):  # type: ignore[call-overload]
            _same(a, b)


def test_reports_come_back_as_the_worker_checked_them() -> None:
    packer, names = handoff.Packer(), {}
    metrics = {"cpu_percent": 12.5, "mem_used": 3 << 30, "cpu_cores": [1.0, 2.5],
               "tcp_states": {"LISTEN": [4]}, "top_procs": [("nginx", 10, 3.5, 1 << 20)],
               "arp": [("eth0", 1, 0, 2, ("10.0.0.1",))]}
    first = _report(metrics)
    _same(_through(packer, first, names), first)
    # the same set of names again: not sent again, still resolved
    again = _report(dict(metrics, cpu_percent=99.0), UNSENT,
                    IndexedServices(0xABC, (ServiceStatus("", "ok", 2.0, "", 1),)))
    entry = packer.report_entry(again, "10.0.0.1", 1.0)
    assert packer.taken() == []
    got = decode_report(handoff.raw_report(entry, names))
    _same(got, again)
    assert got.services is UNSENT  # type: ignore[union-attr]
    assert type(got.indexed.services[0]) is ServiceStatus  # type: ignore[union-attr]


def test_metrics_of_any_shape_pass_as_they_are() -> None:
    packer, names = handoff.Packer(), {}
    positional = _report([1.0, 2.0, [3, 4]])  # not a dict: marshalled as it is
    _same(_through(packer, positional, names), positional)
    # a newer metric holding a NamedTuple: marshal refuses it, pickle carries it
    odd = _report({"cpu_percent": 1.0, "newer": [ServiceStatus("x", "ok", 2.0)]})
    got = _through(packer, odd, names)
    _same(got, odd)
    assert type(got.metrics["newer"][0]) is ServiceStatus  # type: ignore[union-attr]


def test_a_body_that_does_not_unpack_is_refused_not_raised() -> None:
    header = Header("n1", 7, 42, time.time())
    for body in (((("a",), b"not marshal")), (17, b"x"), (("a", "b"), handoff._dumps(
            ("g", (1.0,), None, None)))):
        got = decode_report(RawReport(header, 1.0, body))  # type: ignore[arg-type]
        assert type(got) is Rejected and got.reason is Reason.MALFORMED, body
