"""The wire protocol: size bounds, round trips, and total decoding of hostile bytes."""

from __future__ import annotations

import hmac
import os
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentd.encoder import encode
from agentd.keys import KeyError_, load_key
from agentd.protocol import (
    DETAIL_CHARS,
    HEADER_BYTES,
    MAGIC,
    MAX_DATAGRAM,
    TAG_BYTES,
    TARGET_REPORT_BYTES,
    TOP_PROCS,
    VERSION,
    Header,
    Join,
    Leave,
    ProbeInfo,
    RawReport,
    Reason,
    Rejected,
    Report,
    ServiceStatus,
    seal,
    sign,
)
from ctop.ingest.decode import (
    _BadField,
    _decode_body,
    _fast_report,
    _interval,
    _parse_header,
    _parse_metrics,
    _parse_service,
    _str,
    decode_report,
    parse_body,
)
from ctop.ingest.verifier import Verifier
from tests.helpers.fuzz import examples

KEY = b"0123456789abcdef0123456789abcdef"
SERVICES = ("http", "smtp", "telnet", "ftp", "dns", "nntp", "pop3")


def big_node_metrics(cores: int = 16) -> dict:
    """Metrics of a busy 16-core node, with large counters (worst case for integer sizes)."""
    return {
        "cpu_percent": 87.4,
        "cpu_cores": [99.0 - i for i in range(cores)],
        "load": [15.12, 12.5, 9.75],
        "mem_percent": 93.1,
        "mem_used": 60_123_456_789,
        "mem_total": 68_719_476_736,
        "swap_percent": 12.5,
        "swap_used": 2_147_483_648,
        "net_rx_bps": 1_250_000_000,
        "net_tx_bps": 1_250_000_000,
        "net_rx_pps": 1_400_000,
        "net_tx_pps": 1_400_000,
        "net_rx_bytes": 2**62,
        "net_tx_bytes": 2**62,
        "net_ifaces": {
            "bond0": [1_250_000_000, 1_250_000_000, 1_400_000, 1_400_000],
            "eth0": [625_000_000, 625_000_000, 700_000, 700_000],
            "eth1": [625_000_000, 625_000_000, 700_000, 700_000],
            "docker0": [1_000, 2_000, 10, 20],
        },
        "disk_read_bps": 900_000_000,
        "disk_write_bps": 900_000_000,
        "disk_root_percent": 71.3,
        "users": 12,
        "tcp_established": 65_000,
        "tcp_states": {
            "ESTABLISHED": [65_000],
            "TIME_WAIT": [28_000],
            "SYN_RECV": [1_200],
            "CLOSE_WAIT": [300],
            "LISTEN": [40],
        },
        "procs": 1_800,
        "procs_rss": 58_000_000_000,
        "threads": 24_000,
        "uptime": 31_536_000,
        # Realistic names; pids above 65,535 and RSS above 64 MiB cost the most bytes.
        "top_procs": [
            ("haproxy", 1_234_567, 387.3, 2_147_483_648),
            ("java", 2_345_678, 155.5, 8_589_934_592),
            ("nginx", 345_678, 48.2, 536_870_912),
            ("systemd-journal", 612, 12.0, 134_217_728),
            ("ksoftirqd/3", 31, 8.7, 0),
        ],
    }


def report(seq: int = 1, node: str = "web-0001.dc1.example.com", boot: int = 7, **kw) -> Report:
    # an agent numbers each probe's results: the size tests count those bytes too
    services = kw.pop("services", tuple(ServiceStatus(s, "ok", 12.5, "", 99) for s in SERVICES))
    ts = kw.pop("ts", time.time())
    return Report(
        header=Header(node, boot, seq, ts),
        interval=1.0,
        group=kw.pop("group", "rack-17"),
        metrics=kw.pop("metrics", big_node_metrics()),
        services=services,
    )


def test_busy_16_core_report_with_7_services_fits_600_bytes():
    data = encode(KEY, report())
    assert len(data) <= TARGET_REPORT_BYTES, len(data)
    body = msgpack.unpackb(data[HEADER_BYTES : -TAG_BYTES])
    assert len(body["m"]["tp"]) == TOP_PROCS  # the top list is in, not dropped


def test_top_procs_with_the_longest_names_and_numbers_stay_far_below_1200_bytes():
    worst = [("x" * 40, 4_194_304, 1600.0, 2**50)] * 8  # 8: the encoder keeps 5
    data = encode(KEY, report(metrics={**big_node_metrics(), "top_procs": worst}))
    assert len(data) <= TARGET_REPORT_BYTES + 60, len(data)
    got = Verifier(KEY).verify(data)
    assert isinstance(got, Report)
    assert got.metrics["top_procs"] == [("x" * 15, 4_194_304, 1600.0, 2**50)] * 5


def test_report_with_every_service_failing_verbosely_stays_under_1200_bytes():
    failing = tuple(
        ServiceStatus(f"{s}-service-name-that-is-long", "fail", None, "connection refused " * 20)
        for s in SERVICES
    )
    data = encode(KEY, report(services=failing))
    assert len(data) <= MAX_DATAGRAM
    decoded = Verifier(KEY).verify(data)
    assert isinstance(decoded, Report)
    assert [s.status for s in decoded.services] == ["fail"] * 7
    assert decoded.services[0].detail.startswith("connection refused")
    assert "top_procs" in decoded.metrics


def test_the_top_processes_make_room_first_for_failure_details():
    failing = tuple(
        ServiceStatus(f"svc{i}-service-name-long", "fail", None, "connection refused " * 20)
        for i in range(8)
    )
    decoded = Verifier(KEY).verify(encode(KEY, report(services=failing)))
    assert isinstance(decoded, Report)
    assert "top_procs" not in decoded.metrics and "net_ifaces" in decoded.metrics
    assert len(decoded.services[7].detail) == DETAIL_CHARS


def test_absurd_report_is_cut_to_fit_keeping_the_failures():
    many = tuple(ServiceStatus(f"svc{i:03d}", "ok", 1.0) for i in range(300))
    many += (ServiceStatus("the-broken-one", "fail", None, "down"),)
    data = encode(KEY, report(services=many))
    assert len(data) <= MAX_DATAGRAM
    decoded = Verifier(KEY).verify(data)
    assert isinstance(decoded, Report)
    assert "the-broken-one" in {s.name for s in decoded.services}


def test_report_round_trip_keeps_values_to_their_wire_precision():
    sent = report()
    got = Verifier(KEY).verify(encode(KEY, sent))
    assert isinstance(got, Report)
    assert got.header == sent.header._replace(ts=round(sent.header.ts, 3))
    assert got.group == "rack-17"
    m = got.metrics
    assert m["cpu_percent"] == pytest.approx(87.4)
    assert m["load"] == pytest.approx([15.12, 12.5, 9.75])
    assert m["mem_total"] == 68_719_476_736
    assert m["net_rx_bytes"] == 2**62
    assert m["cpu_cores"][0] == 99
    assert m["tcp_states"]["TIME_WAIT"] == [28_000]
    assert got.services[0] == ServiceStatus("http", "ok", 12.5, "", 99)
    # (name, pid, cpu % of one core, rss bytes): cpu to 0.1 %, rss to the KiB
    assert m["top_procs"] == big_node_metrics()["top_procs"]
    assert all(type(p) is tuple for p in m["top_procs"])
    name, pid, cpu, rss = m["top_procs"][0]
    assert (name, pid, cpu, rss) == ("haproxy", 1_234_567, pytest.approx(387.3), 2**31)


def test_top_procs_are_cut_to_the_wire_precision():
    procs = [("a-very-long-command-name", 7, 12.345, 10_000), ("sh", 8, 0.04, 4096)]
    got = Verifier(KEY).verify(
        encode(KEY, report(metrics={"cpu_percent": 1.0, "top_procs": procs})))
    assert isinstance(got, Report)
    assert got.metrics["top_procs"] == [
        ("a-very-long-com", 7, 12.3, 9216),  # 15 chars; 9 KiB (rounded down)
        ("sh", 8, 0.0, 4096),
    ]


def test_a_report_without_top_procs_decodes_without_them():
    metrics = {k: v for k, v in big_node_metrics().items() if k != "top_procs"}
    got = Verifier(KEY).verify(encode(KEY, report(metrics=metrics)))
    assert isinstance(got, Report)
    assert "top_procs" not in got.metrics and got.metrics["cpu_percent"] == pytest.approx(87.4)


def test_join_and_leave_round_trip():
    v = Verifier(KEY)
    join = Join(Header("n1", 9, 0, time.time()), "n1.local", ("10.0.0.2", "fe80::1"), 16,
                64 << 30, "0.1.0", 1.0, "rack-1")
    assert v.verify(encode(KEY, join)) == join._replace(
        header=join.header._replace(ts=round(join.header.ts, 3)))
    leave = Leave(Header("n1", 9, 1, time.time()), "SIGTERM")
    got = v.verify(encode(KEY, leave))
    assert isinstance(got, Leave) and got.reason == "SIGTERM"


def test_each_service_status_carries_its_probe_result_number_on_both_paths():
    statuses = (ServiceStatus("http", "ok", 1.5, "", 5),
                ServiceStatus("smtp", "fail", None, "refused", 127),
                ServiceStatus("dns", "warn", 2.0, "slow", 0),
                ServiceStatus("ssh", "unknown", None, "not checked yet"))
    data = encode(KEY, report(services=statuses))
    got = Verifier(KEY).verify(data)
    assert [(s.name, s.status, s.detail, s.seq) for s in got.services] == [
        ("http", "ok", "", 5), ("smtp", "fail", "refused", 127), ("dns", "warn", "slow", 0),
        ("ssh", "unknown", "not checked yet", None)]
    body = msgpack.unpackb(data[HEADER_BYTES: -TAG_BYTES])
    assert parse_body(body) == _decode_body(data[HEADER_BYTES: -TAG_BYTES])
    reference = Report(*[*got[:4], tuple(_parse_service(s) for s in body["s"])])
    assert reference.services == got.services


def test_result_numbers_wrap_and_an_older_agent_sends_none():
    got = Verifier(KEY).verify(encode(KEY, report(services=(
        ServiceStatus("http", "ok", 1.0, "", 128 + 3),))))
    assert got.services[0].seq == 3
    old = {"k": "r", "n": "old", "b": 1, "q": 1, "t": time.time(), "i": 1.0,
           "m": {"v": [0] * 5}, "s": [["http", 2, None, "refused"], ["dns", 0, 12]]}
    got = Verifier(KEY).verify(seal(KEY, old))
    assert [(s.detail, s.seq) for s in got.services] == [("refused", None), ("", None)]


def test_a_join_describes_the_probes_and_a_bad_description_is_refused():
    probes = (ProbeInfo("web", "http", 8080, 10.0, "/health"),
              ProbeInfo("check", "command", None, 30.0))
    join = Join(Header("n1", 9, 0, time.time()), "n1", ("10.0.0.2",), 4, 1 << 30, "0.1", 1.0,
                "", probes)
    got = Verifier(KEY).verify(encode(KEY, join))
    assert got.probes == probes
    bad = {"k": "j", "n": "n2", "b": 1, "q": 0, "t": time.time(), "h": "n2", "a": [],
           "cr": 1, "mt": 1, "v": "0.1", "i": 1.0, "p": [["web", "http", "8080", 10.0]]}
    got = Verifier(KEY).verify(seal(KEY, bad))
    assert isinstance(got, Rejected) and got.reason is Reason.BAD_FIELD
    assert "'p'" in got.detail, got.detail


def test_a_report_alone_registers_a_never_seen_node():
    got = Verifier(KEY).verify(encode(KEY, report(node="fresh-node")))
    assert isinstance(got, Report) and got.header.node == "fresh-node"


def test_unknown_fields_from_a_newer_agent_are_ignored():
    body = {
        "k": "r", "n": "new", "b": 1, "q": 1, "t": time.time(), "i": 1.0,
        "m": {"v": [500, 100, 7] + [0] * 30, "zz": {"future": [1]}},
        "s": [["http", 0, 15, "", "extra"]],
        "future_field": {"x": 1},
    }
    got = Verifier(KEY).verify(seal(KEY, body))
    assert isinstance(got, Report)
    assert got.metrics["cpu_percent"] == 50.0
    assert got.services[0].latency_ms == 1.5


def test_an_older_agent_with_fewer_scalars_still_decodes():
    body = {"k": "r", "n": "old", "b": 1, "q": 1, "t": time.time(), "i": 2.0, "m": {"v": [250]}}
    got = Verifier(KEY).verify(seal(KEY, body))
    assert isinstance(got, Report)
    assert got.metrics == {"cpu_percent": 25.0}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d + b"x" * (MAX_DATAGRAM + 1 - len(d)), Reason.OVERSIZE),
        (lambda d: b"HTTP/1.1 200 OK\r\n", Reason.MALFORMED),
        (lambda d: d[:2] + b"\x09" + d[3:], Reason.BAD_VERSION),
        (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], Reason.BAD_TAG),
        (lambda d: d[:-1] + bytes([d[-1] ^ 0x80]), Reason.BAD_TAG),
    ],
    ids=["oversize", "not-ctop", "version", "tampered-body", "tampered-tag"],
)
def test_hostile_datagrams_are_rejected_with_the_right_reason(mutate, reason):
    got = Verifier(KEY).verify(mutate(encode(KEY, report())))
    assert isinstance(got, Rejected) and got.reason == reason


def test_signed_with_another_key_is_a_bad_tag():
    got = Verifier(KEY).verify(encode(b"another-cluster-key-000000000000", report()))
    assert isinstance(got, Rejected) and got.reason == Reason.BAD_TAG


def test_signed_garbage_is_not_msgpack_and_wrong_types_are_bad_fields():
    v = Verifier(KEY)
    payload = MAGIC + bytes((VERSION,)) + b"\xc1\xc1\xc1"
    garbage = payload + sign(KEY, payload)
    assert v.verify(garbage).reason == Reason.NOT_MSGPACK
    bad = {"k": "r", "n": "x", "b": 1, "q": "seven", "t": time.time(), "i": 1.0}
    assert v.verify(seal(KEY, bad)).reason == Reason.BAD_FIELD
    nan = {"k": "r", "n": "x", "b": 1, "q": 1, "t": time.time(), "i": 1.0,
           "m": {"v": [float("nan")]}}
    assert v.verify(seal(KEY, nan)).reason == Reason.BAD_FIELD
    negative = {"k": "r", "n": "x", "b": 1, "q": 1, "t": time.time(), "i": 1.0,
                "m": {"cc": [1, -5]}}
    assert v.verify(seal(KEY, negative)).reason == Reason.BAD_FIELD


def test_replays_duplicates_and_reordering_are_rejected():
    v = Verifier(KEY)
    first, second = encode(KEY, report(seq=10)), encode(KEY, report(seq=11))
    assert isinstance(v.verify(first), Report)
    assert isinstance(v.verify(second), Report)
    assert v.verify(second).reason == Reason.REPLAY  # duplicate
    assert v.verify(first).reason == Reason.REPLAY  # reordered / replayed


def test_a_restart_is_accepted_but_the_old_boot_cannot_be_replayed():
    v = Verifier(KEY)
    t = time.time()
    old = encode(KEY, report(seq=500, boot=1, ts=t - 5))
    assert isinstance(v.verify(old), Report)
    assert isinstance(v.verify(encode(KEY, report(seq=1, boot=2, ts=t))), Report)
    assert v.verify(encode(KEY, report(seq=501, boot=1, ts=t - 4))).reason == Reason.REPLAY


def test_stale_and_future_messages_are_rejected():
    v = Verifier(KEY, max_age=30, max_skew=30)
    assert v.verify(encode(KEY, report(ts=time.time() - 120))).reason == Reason.STALE
    assert v.verify(encode(KEY, report(ts=time.time() + 120))).reason == Reason.STALE


def assert_judged(got: object) -> None:
    """A message, or a rejection by one of the checks: the verifier catches a crash of its own
    checks as MALFORMED "internal: ..." (so a tick survives it), which is a bug, not a verdict."""
    assert isinstance(got, Report | Join | Leave | Rejected)
    if isinstance(got, Rejected):
        assert not got.detail.startswith("internal"), got


def sign_payload(body: bytes) -> bytes:
    """Any bytes as a correctly signed body: past the magic, version and tag checks."""
    payload = MAGIC + bytes((VERSION,)) + body
    return payload + hmac.digest(KEY, payload, "sha256")[: TAG_BYTES]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1400))
def test_any_byte_string_decodes_or_is_rejected_without_raising(data):
    assert_judged(Verifier(KEY).verify(data))


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=3) | st.integers(0, 9), children, max_size=5),
    max_leaves=30,
)
signed_bodies = st.one_of(
    st.binary(max_size=1100),  # not msgpack, or msgpack by chance
    msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),  # any msgpack value
)


@settings(max_examples=examples(ci=100, deep=250), suppress_health_check=[HealthCheck.too_slow])
@given(signed_bodies)
def test_any_signed_body_reaches_the_decoder_and_is_judged_by_its_checks(body):
    """Random bytes stop at the magic check; signed, they reach the body's decoder."""
    data = sign_payload(body)
    for got in (Verifier(KEY).verify(data), Verifier(KEY).verify_deferred(data)):
        if type(got) is RawReport:
            got = decode_report(got)
        assert_judged(got)
        if isinstance(got, Rejected):  # refused by the body's checks, not before them
            assert got.reason not in (Reason.BAD_TAG, Reason.BAD_VERSION, Reason.OVERSIZE), got


field_names = st.sampled_from(["k", "n", "b", "q", "t", "i", "g", "m", "s", "h", "a", "cr", "mt"])


@settings(max_examples=examples(ci=100, deep=600), suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(field_names, msgpack_values, max_size=10),
    st.sampled_from(["r", "j", "l"]),
    st.dictionaries(st.sampled_from(["v", "cc", "ld", "ni", "ts", "tp"]), msgpack_values,
                    max_size=6),
)
def test_correctly_signed_bodies_of_any_shape_never_raise(body, kind, metrics):
    """Signed, so they pass the tag: the field checks must hold on their own."""
    body = {"k": kind, "n": "fuzz", "b": 1, "q": 1, "t": time.time(), "i": 1.0, **body}
    if "m" not in body:
        body["m"] = metrics
    got = Verifier(KEY).verify(seal(KEY, body))
    assert_judged(got)
    if isinstance(got, Report):
        # whatever was accepted has the types the director relies on
        assert all(isinstance(v, int | float | list | dict) for v in got.metrics.values())
        assert all(isinstance(s.name, str) for s in got.services)


def test_key_file_must_exist_be_private_and_long_enough(tmp_path):
    path = tmp_path / "cluster.key"
    with pytest.raises(KeyError_, match="does not exist"):
        load_key(path)
    path.write_bytes(os.urandom(16).hex().encode() + b"\n")
    path.chmod(0o644)
    with pytest.raises(KeyError_, match=r"readable by others.*chmod 600"):
        load_key(path)
    path.chmod(0o600)
    assert len(load_key(path)) == 32
    path.write_bytes(b"short\n")
    with pytest.raises(KeyError_, match="at least 16"):
        load_key(path)


def test_msgpack_body_is_plain_msgpack_for_other_implementations():
    data = encode(KEY, report())
    body = msgpack.unpackb(data[HEADER_BYTES : -TAG_BYTES])
    assert body["k"] == "r" and body["n"] == "web-0001.dc1.example.com"


# ---------------------------------------------------------------------------------------------
# The report fast path (_fast_report) against the reference checks it must agree with.


def reference_report(body: dict) -> Report:
    """parse_body's reference path for a report, without the fast path in front of it."""
    services = body.get("s", ())
    if type(services) not in (list, tuple):
        raise _BadField("services")
    return Report(
        _parse_header(body), _interval(body), _str(body, "g", "group", ""),
        _parse_metrics(body.get("m", {})),
        tuple(_parse_service(s) for s in services),
    )


def assert_paths_agree(body: dict) -> None:
    fast = _fast_report(body)
    try:
        ref = reference_report(body)
    except _BadField:
        assert fast is None, "the fast path accepted what the reference path refuses"
        return
    if fast is not None:  # None only sends the body to the reference path
        assert fast == ref
        assert all(type(p) is tuple for p in fast.metrics.get("top_procs", ()))


def sent_body(metrics: dict | None = None) -> dict:
    data = encode(KEY, report(metrics=metrics or big_node_metrics()))
    return msgpack.unpackb(data[HEADER_BYTES : -TAG_BYTES], strict_map_key=False)


def test_fast_path_decodes_a_full_report_like_the_reference_path():
    body = sent_body()
    fast = _fast_report(body)
    assert fast is not None, "a report the encoder wrote must take the fast path"
    assert fast == reference_report(body)
    assert fast.metrics["top_procs"][1] == ("java", 2_345_678, 155.5, 8_589_934_592)


BAD_TOP_PROCS = [
    "haproxy",  # not a list
    {"haproxy:1": [10, 100]},  # a map
    ["haproxy", 1, 10, 100],  # flat, not a list of entries
    [["haproxy", 1, 10]],  # too short
    [[b"haproxy", 1, 10, 100]],  # name not a str
    [[None, 1, 10, 100]],
    [["haproxy", "1", 10, 100]],  # pid not an int
    [["haproxy", 1.0, 10, 100]],
    [["haproxy", True, 10, 100]],
    [["haproxy", -1, 10, 100]],  # negative
    [["haproxy", 1, -10, 100]],
    [["haproxy", 1, 10, -100]],
    [["haproxy", 1, float("nan"), 100]],  # not finite
    [["haproxy", 1, float("inf"), 100]],
    [["haproxy", 1, 10, "100"]],  # rss not a number
    [["haproxy", 1, "10", 100]],
    [["haproxy", 1, None, 100]],
    [["haproxy", 1, 10, [100]]],
    [["ok", 2, 1, 1], "haproxy"],  # one bad entry spoils the field
]


@pytest.mark.parametrize("value", BAD_TOP_PROCS, ids=range(len(BAD_TOP_PROCS)))
def test_bad_top_procs_are_a_bad_field_on_both_paths(value):
    body = sent_body()
    body["m"]["tp"] = value
    assert _fast_report(body) is None
    with pytest.raises(_BadField, match="top_procs"):
        reference_report(body)
    got = Verifier(KEY).verify(seal(KEY, body))
    assert isinstance(got, Rejected) and got.reason == Reason.BAD_FIELD
    raw = Verifier(KEY).verify_deferred(seal(KEY, body))
    assert type(raw) is RawReport
    got = decode_report(raw)
    assert isinstance(got, Rejected) and got.reason == Reason.BAD_FIELD


def test_top_procs_entries_from_a_newer_agent_may_carry_more_fields():
    body = sent_body()
    body["m"]["tp"] = [["haproxy", 12, 55, 2048, 17, "future"], ["sh", 13, 1.5, 4.0]]
    want = [("haproxy", 12, 5.5, 2048 * 1024), ("sh", 13, 0.15, 4096.0)]
    assert reference_report(body).metrics["top_procs"] == want
    assert_paths_agree(body)
    got = Verifier(KEY).verify(seal(KEY, body))
    assert isinstance(got, Report) and got.metrics["top_procs"] == want


top_entries = st.lists(
    st.one_of(
        st.tuples(st.text(max_size=16), st.integers(0, 2**22), st.integers(0, 20_000),
                  st.integers(0, 2**40)).map(list),
        st.lists(msgpack_values, max_size=6),  # anything else
    ),
    max_size=6,
)


@settings(max_examples=examples(ci=200, deep=500), suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(top_entries, msgpack_values), st.booleans())
def test_fast_and_reference_paths_agree_on_any_top_procs(tp, with_services):
    body = sent_body()
    body["m"]["tp"] = tp
    if not with_services:
        del body["s"]
    assert_paths_agree(body)


@settings(max_examples=examples(ci=120, deep=300), suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["v", "cc", "ld", "ni", "ts", "tp", "zz"]),
                       msgpack_values | top_entries, max_size=6))
def test_fast_and_reference_paths_agree_on_any_metrics(metrics):
    body = sent_body()
    body["m"] = metrics
    assert_paths_agree(body)
