"""The metric registry: every metric a node reports, described once.

Each line of `METRICS` says how a metric travels (wire key, scale, bounds the director's
decoder enforces), what it is (unit, counter or gauge, description) and where the director
uses it: the history column it is stored in, the NodeView field that shows it, the node-detail
chart, whether alert rules may name it, and its Prometheus name. The wire encoder and decoder,
the store's columns, the alert rules, the cluster views, the Prometheus exposition, the
node-detail charts and the metric table in docs/agentd.md are all derived from this table, so
adding a metric is adding one line here (docs/agentd.md: "Adding a metric").

Both sides import this module: agentd (which must never import ctop) to encode, ctop to decode,
store, alert on, export and draw. It imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bounds every decoded number keeps (a violation is `bad_field`): exact as a float and far
# inside SQLite's signed 64-bit integers, so no value a sender chooses can make the store's
# writer (or msgpack, or JSON) fail.
MAX_VALUE = 2**53
MAX_INT64 = 2**63 - 1

# Kinds of value on the wire.
NUM = "num"  # one number, in the positional scalar list under "v"
LIST = "list"  # a list of numbers under its own key
MAP = "map"  # {name: [numbers]} under its own key
PROCS = "procs"  # the top-processes list, [[name, pid, cpu, rss KiB], ...]
WATCH = "watch"  # watched processes, [[label, count, low, high, restarts, cpu, rss KiB, ...]]
ARP = "arp"  # addresses and ARP sysctls per interface, [[iface, flags, ignore, announce, [ip]]]
SCALAR_KEY = "v"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # the readable name: report metrics, alert rules, history queries
    key: str  # wire key: SCALAR_KEY for positional scalars, else the metric's own key
    kind: str  # NUM | LIST | MAP | PROCS | WATCH | ARP
    description: str  # what it is and where the agent reads it (docs, Prometheus help)
    unit: str = ""  # "%", "B", "B/s", "pkt/s", "s" or "" (a count)
    scale: int = 1  # on the wire round(value * scale): integers cost 1-3 bytes, floats 9
    # Largest value in readable units (None: MAX_VALUE on the wire). The decoder refuses more
    # (`bad_field`); the encoder clamps to it, so a collector's glitch never silences a node.
    maximum: float | None = None
    counter: bool = False  # grows since boot (Prometheus counter semantics); else a gauge
    column: str = ""  # history column (samples, rollups, hourly); "" = not stored
    view: str = ""  # the NodeView field showing the latest value; "" = NodeView.metrics only
    chart: str = ""  # node-detail chart title; "" = not charted (needs a column)
    alertable: bool = False  # alert rules may name it (`when = "NAME > N"`)
    prometheus: str = ""  # Prometheus metric name; "" = not exported

    @property
    def limit(self) -> int:
        """The largest value on the wire (scaled)."""
        return MAX_VALUE if self.maximum is None else round(self.maximum * self.scale)

    @property
    def scalar(self) -> bool:
        return self.kind == NUM


# The scalars' order is their position on the wire: append-only between versions (a newer
# agent appends, an older director ignores what it does not know, a newer director reads a
# shorter list as "not sent"). Compound metrics follow, each under its own key.
METRICS: tuple[Metric, ...] = (
    Metric("cpu_percent", "v", NUM,
           "CPU in use, share of all cores (/proc/stat via psutil.cpu_times)", "%", 10, 100,
           column="cpu", view="cpu", chart="CPU %", alertable=True,
           prometheus="ctop_node_cpu_percent"),
    Metric("mem_percent", "v", NUM,
           "memory in use, share of the total (psutil.virtual_memory)", "%", 10, 100,
           column="mem", view="mem", chart="Memory %", alertable=True,
           prometheus="ctop_node_memory_percent"),
    Metric("mem_used", "v", NUM, "memory in use (psutil.virtual_memory)", "B", alertable=True),
    Metric("mem_total", "v", NUM, "physical memory (psutil.virtual_memory)", "B"),
    Metric("swap_percent", "v", NUM,
           "swap in use, share of the total (psutil.swap_memory)", "%", 10, 100,
           column="swap", view="swap", alertable=True),
    Metric("swap_used", "v", NUM, "swap in use (psutil.swap_memory)", "B", alertable=True),
    Metric("net_rx_bps", "v", NUM, "bytes received per second, all interfaces but lo", "B/s",
           column="net_rx", view="net_rx_bps", chart="Net in /s", alertable=True,
           prometheus="ctop_node_network_receive_bytes_per_second"),
    Metric("net_tx_bps", "v", NUM, "bytes sent per second, all interfaces but lo", "B/s",
           column="net_tx", view="net_tx_bps", chart="Net out /s", alertable=True,
           prometheus="ctop_node_network_transmit_bytes_per_second"),
    Metric("net_rx_pps", "v", NUM, "packets received per second, all interfaces but lo",
           "pkt/s", alertable=True),
    Metric("net_tx_pps", "v", NUM, "packets sent per second, all interfaces but lo", "pkt/s",
           alertable=True),
    # Counters since boot, for totals; never stored as history (the kernel's 64 bits may show).
    Metric("net_rx_bytes", "v", NUM, "bytes received since boot, lo excluded", "B",
           maximum=MAX_INT64, counter=True),
    Metric("net_tx_bytes", "v", NUM, "bytes sent since boot, lo excluded", "B",
           maximum=MAX_INT64, counter=True),
    Metric("disk_read_bps", "v", NUM,
           "bytes read per second, whole disks (psutil.disk_io_counters)", "B/s",
           alertable=True),
    Metric("disk_write_bps", "v", NUM,
           "bytes written per second, whole disks (psutil.disk_io_counters)", "B/s",
           alertable=True),
    Metric("disk_root_percent", "v", NUM, "space used on /, share of its size", "%", 10, 100,
           column="disk", view="disk_root", alertable=True),
    Metric("users", "v", NUM, "logged-in sessions (utmp)", column="users", view="users",
           alertable=True),
    Metric("tcp_established", "v", NUM, "established TCP connections (IPv4 + IPv6)",
           column="conns", view="conns", chart="TCP connections", alertable=True,
           prometheus="ctop_node_tcp_established"),
    Metric("procs", "v", NUM, "processes (/proc/PID entries)", column="procs", view="procs",
           alertable=True, prometheus="ctop_node_processes"),
    Metric("procs_rss", "v", NUM, "total resident size of all processes (/proc/PID/stat)", "B",
           column="procs_rss", chart="Process memory", alertable=True,
           prometheus="ctop_node_processes_resident_bytes"),
    Metric("threads", "v", NUM, "threads of all processes (/proc/loadavg)", column="threads",
           view="threads", alertable=True),
    Metric("uptime", "v", NUM, "time since the node booted", "s", counter=True,
           alertable=True),
    Metric("cpu_cores", "cc", LIST, "CPU in use per core, whole percent", "%", maximum=100),
    # 1, 5, 15 minutes; the 1-minute value is the one stored, shown and exported.
    Metric("load", "ld", LIST, "1, 5 and 15 minute load averages", scale=100, column="load1",
           view="load1", alertable=True, prometheus="ctop_node_load1"),
    Metric("net_ifaces", "ni", MAP,
           "per interface [rx_bps, tx_bps, rx_pps, tx_pps], the 4 busiest, lo excluded", "B/s"),
    Metric("tcp_states", "ts", MAP, "TCP sockets by state, {state: [count]}"),
    # [[name, pid, cpu % of one core x 10, rss KiB], ...] busiest first (docs/agentd.md)
    Metric("top_procs", "tp", PROCS,
           "the 5 busiest processes, like top: (name, pid, cpu_percent, rss_bytes)", "%", 10),
    # [[label, count, low, high|nil, restarts, cpu x 10, rss KiB, threads, fds|nil], ...]
    Metric("watched", "wp", WATCH,
           "watched processes (agentd.toml `watch`): (label, count, expected_low, "
           "expected_high, restarts, cpu_percent, rss_bytes, threads, open_files)", "%", 10),
    # [[iface, flags, arp_ignore, arp_announce, [address, ...]], ...], "all" first
    Metric("arp", "ar", ARP,
           "addresses per interface and the ARP sysctls (agentd/arpfacts.py): (iface, flags, "
           "arp_ignore, arp_announce, addresses)"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
SCALARS: tuple[Metric, ...] = tuple(m for m in METRICS if m.kind == NUM)
COMPOUND: tuple[Metric, ...] = tuple(m for m in METRICS if m.kind != NUM)
STORED: tuple[Metric, ...] = tuple(m for m in METRICS if m.column)
CHARTED: tuple[Metric, ...] = tuple(m for m in METRICS if m.chart)
ALERTABLE: tuple[str, ...] = tuple(m.name for m in METRICS if m.alertable)
EXPORTED: tuple[Metric, ...] = tuple(m for m in METRICS if m.prometheus)


def _check(metrics: tuple[Metric, ...]) -> None:
    """Fail at import, naming the line, rather than with a shuffled wire or a bad schema."""
    seen: set[str] = set()
    for m in metrics:
        for what, value in (("name", m.name), ("column", m.column), ("wire key", m.key),
                            ("prometheus name", m.prometheus)):
            tag = f"{what}:{value}"
            if value and value != SCALAR_KEY and tag in seen:
                raise ValueError(f"metric {m.name}: {what} {value!r} is used twice")
            seen.add(tag)
        if (m.key == SCALAR_KEY) != (m.kind == NUM) or m.kind not in (
                NUM, LIST, MAP, PROCS, WATCH, ARP):
            raise ValueError(f"metric {m.name}: kind {m.kind!r} does not fit wire key {m.key!r}")
        if m.chart and not m.column:
            raise ValueError(f"metric {m.name}: a chart reads history: it needs a column")
        if (m.column or m.alertable or m.prometheus) and m.kind != NUM and not (
                m.kind == LIST and m.view):
            raise ValueError(f"metric {m.name}: only a number has one value (a list: the "
                             "first element, through its NodeView field `view`)")
        if m.column and not m.column.isidentifier():
            raise ValueError(f"metric {m.name}: column {m.column!r} is not an SQL name")
    if [m.kind for m in metrics[:len(SCALARS)]] != [NUM] * len(SCALARS):
        raise ValueError("scalar metrics come first: their order is their wire position")


_check(METRICS)
