"""Counter deltas and rates, with real counter sequences: growth, resets, 32-bit wraps."""

from __future__ import annotations

import time

from agentd import procfs
from agentd.cadence import Cadence
from agentd.collect import Collector
from agentd.rates import RateMeter, busy_percent, delta


def test_delta_grows_and_restarts_on_reset() -> None:
    assert delta(100, 250) == 150
    assert delta(250, 250) == 0
    assert delta(250, 10) == 0  # went backwards: restart, never negative


def test_rates_from_an_interface_counter_sequence() -> None:
    meter = RateMeter()
    # eth0 bytes_recv/packets_recv sampled every second, as /proc/net/dev gives them.
    samples = [
        (0.0, (1_000_000, 900)),
        (1.0, (1_125_000, 1000)),  # 125 kB/s, 100 pkt/s
        (2.0, (1_375_000, 1300)),  # 250 kB/s, 300 pkt/s
        (2.5, (1_400_000, 1310)),  # half a second: rates scale with elapsed time
    ]
    got = [meter.update("eth0", t, c) for t, c in samples]
    assert got == [(0.0, 0.0), (125_000.0, 100.0), (250_000.0, 300.0), (50_000.0, 20.0)]


def test_reset_gives_one_zero_then_measures_from_the_new_base() -> None:
    meter = RateMeter()
    # The interface is re-created between t=2 and t=3: counters restart near zero.
    seq = [(0, 5_000_000), (1, 5_100_000), (2, 5_200_000), (3, 4_096), (4, 104_096)]
    rates = [meter.update("eth1", float(t), (v,))[0] for t, v in seq]
    assert rates == [0.0, 100_000.0, 100_000.0, 0.0, 100_000.0]


def test_32bit_wrap_is_not_a_huge_spike() -> None:
    meter = RateMeter()
    wrap = 2**32
    seq = [wrap - 300_000, wrap - 100_000, 100_000, 300_000]
    rates = [meter.update("old-nic", float(t), (v,))[0] for t, v in enumerate(seq)]
    assert rates == [0.0, 200_000.0, 0.0, 200_000.0]
    assert all(0 <= r < 1e9 for r in rates)


def test_each_counter_of_a_tuple_resets_on_its_own() -> None:
    meter = RateMeter()
    meter.update("sda", 0.0, (1000, 5000))
    assert meter.update("sda", 1.0, (2000, 10)) == (1000.0, 0.0)
    assert meter.update("sda", 2.0, (3000, 510)) == (1000.0, 500.0)


def test_clock_that_does_not_advance_gives_zero() -> None:
    meter = RateMeter()
    meter.update("x", 5.0, (10,))
    assert meter.update("x", 5.0, (20,)) == (0.0,)


def test_forgotten_keys_start_over() -> None:
    meter = RateMeter()
    meter.update("veth1", 0.0, (10,))
    meter.update("eth0", 0.0, (10,))
    meter.keep_only({"eth0"})
    assert meter.update("veth1", 1.0, (20,)) == (0.0,)  # primed again, no stale delta
    assert meter.update("eth0", 1.0, (20,)) == (10.0,)


def test_busy_percent() -> None:
    # (idle seconds, total seconds) of /proc/stat between two samples
    assert busy_percent((100.0, 400.0), (100.5, 402.0)) == 75.0
    assert busy_percent((100.0, 400.0), (102.0, 402.0)) == 0.0
    assert busy_percent((100.0, 400.0), (100.0, 400.0)) == 0.0  # no time passed
    assert busy_percent((100.0, 400.0), (5.0, 10.0)) == 0.0  # counters reset (hot-plug)


def test_cadence_spaces_costly_readings() -> None:
    calls: list[float] = []

    def costly() -> int:
        calls.append(0)
        end = time.thread_time() + 0.003  # 3 ms of CPU
        while time.thread_time() < end:
            pass
        return len(calls)

    c = Cadence(costly, min_period=1.0, max_period=30.0, share=0.001)
    assert c.get(0.0) == 1
    assert 3.0 <= c.period <= 30.0  # 3 ms at a 0.1 % share: at least 3 s apart
    assert c.get(1.0) == 1  # cached
    assert c.get(c.period) == 2


def test_tcp_state_parser_on_a_real_table(tmp_path) -> None:
    # Lines as the kernel formats them, including a 5-digit slot number and IPv6.
    v4 = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
        "  timeout inode\n"
        "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 1060 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:1BCD 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000"
        "        0 2061 1 0000000000000000 20 4 30 10 -1\n"
        "12345: 0100007F:9C40 0100007F:1BCD 06 00000000:00000000 03:00001770 00000000     0"
        "        0 0 3 0000000000000000\n"
    )
    v6 = (
        "  sl  local_address                         remote_address                        st"
        " tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000000000000000000001000000:1BCD 00000000000000000000000001000000:A000 01"
        " 00000000:00000000 00:00000000 00000000  1000        0 3061 1 0000000000000000 20 0\n"
    )
    (tmp_path / "tcp").write_text(v4)
    (tmp_path / "tcp6").write_text(v6)
    paths = (str(tmp_path / "tcp"), str(tmp_path / "tcp6"), str(tmp_path / "missing"))
    assert procfs.tcp_states(paths) == {"listen": 1, "established": 2, "time_wait": 1}


def test_collector_first_sample_primes_then_rates_are_sane() -> None:
    c = Collector(interval=0.1)
    first = c.sample()
    assert first["net_rx_bps"] == 0 and first["disk_read_bps"] == 0
    time.sleep(0.1)
    m = c.sample()
    assert 0 <= m["cpu_percent"] <= 100
    assert all(0 <= x <= 100 for x in m["cpu_cores"])
    assert "lo" not in m["net_ifaces"] and len(m["net_ifaces"]) <= 4
    assert all(m[k] >= 0 for k in ("net_rx_bps", "net_tx_bps", "disk_read_bps", "procs_rss"))
