"""Prometheus text exposition of node and cluster metrics on an optional HTTP port.

A tiny asyncio HTTP server (GET /metrics only): the exposition is a few lines of text and a
framework would cost more than it does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ctop.snapshot import Liveness, Snapshot

log = logging.getLogger(__name__)

NODE_GAUGES = (
    ("ctop_node_cpu_percent", "CPU use of the node, percent", "cpu"),
    ("ctop_node_memory_percent", "Memory use of the node, percent", "mem"),
    ("ctop_node_load1", "1-minute load average", "load1"),
    ("ctop_node_network_receive_bytes_per_second", "Bytes received per second", "net_rx_bps"),
    ("ctop_node_network_transmit_bytes_per_second", "Bytes sent per second", "net_tx_bps"),
    ("ctop_node_tcp_established", "Established TCP connections", "conns"),
    ("ctop_node_processes", "Processes", "procs"),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(snap: Snapshot) -> str:
    out: list[str] = []
    t = snap.totals
    cluster = f'cluster="{_label(snap.cluster)}"'
    out.append("# HELP ctop_nodes Nodes by liveness state")
    out.append("# TYPE ctop_nodes gauge")
    for state in Liveness:
        out.append(f'ctop_nodes{{{cluster},state="{state}"}} {getattr(t, str(state))}')
    for name, value in (("cpu_avg_percent", t.cpu_avg), ("cpu_max_percent", t.cpu_max),
                        ("memory_avg_percent", t.mem_avg), ("memory_max_percent", t.mem_max),
                        ("tcp_established", t.conns), ("imbalance_index", snap.imbalance)):
        out.append(f"# TYPE ctop_cluster_{name} gauge")
        out.append(f"ctop_cluster_{name}{{{cluster}}} {value:g}")
    out.append("# TYPE ctop_firing_alerts gauge")
    out.append(f"ctop_firing_alerts{{{cluster}}} {len(snap.alerts)}")
    out.append("# TYPE ctop_receiver_drops_total counter")
    for reason, count in sorted(snap.drops.items()):
        out.append(f'ctop_receiver_drops_total{{{cluster},reason="{reason}"}} {count}')
    out.append("# HELP ctop_receiver_drops_by_source_total Rejected datagrams of the busiest "
               "sources per reason")
    out.append("# TYPE ctop_receiver_drops_by_source_total counter")
    for reason, sources in sorted(snap.drop_sources.items()):
        for source, count in sources:
            out.append(f'ctop_receiver_drops_by_source_total{{{cluster},reason="{reason}",'
                       f'source="{_label(source)}"}} {count}')
    out.append("# HELP ctop_history_failing 1 while history writes fail (reason in the label)")
    out.append("# TYPE ctop_history_failing gauge")
    reason = f',reason="{_label(snap.history_error)}"' if snap.history_error else ""
    out.append(f"ctop_history_failing{{{cluster}{reason}}} {1 if snap.history_error else 0}")
    out.append("# HELP ctop_history_failing_since_seconds When history writes began to fail "
               "(0: they work)")
    out.append("# TYPE ctop_history_failing_since_seconds gauge")
    out.append(f"ctop_history_failing_since_seconds{{{cluster}}} {snap.history_failing_since:g}")
    for metric, help_text, attr in NODE_GAUGES:
        out.append(f"# HELP {metric} {help_text}")
        out.append(f"# TYPE {metric} gauge")
        for n in snap.nodes:
            if n.liveness in (Liveness.ALIVE, Liveness.SUSPECT):
                labels = f'node="{_label(n.node_id)}",group="{_label(n.group)}"'
                out.append(f"{metric}{{{labels}}} {getattr(n, attr):g}")
    out.append("# TYPE ctop_service_up gauge")
    out.append("# TYPE ctop_service_latency_ms gauge")
    for n in snap.nodes:
        for s in n.services:
            labels = f'node="{_label(n.node_id)}",service="{_label(s.name)}"'
            out.append(f"ctop_service_up{{{labels}}} {1 if s.status == 'ok' else 0}")
            if s.latency_ms is not None:
                out.append(f"ctop_service_latency_ms{{{labels}}} {s.latency_ms:g}")
    for svc in snap.lb:
        for rs in svc.servers:
            labels = f'service="{_label(svc.key)}",server="{_label(rs.key)}"'
            out.append(f"ctop_lb_weight{{{labels}}} {rs.weight}")
            out.append(f"ctop_lb_active_connections{{{labels}}} {rs.active_conns}")
            if rs.ratio is not None:
                out.append(f"ctop_lb_balance_ratio{{{labels}}} {rs.ratio:g}")
    return "\n".join(out) + "\n"


async def start_metrics(
    snapshot: Callable[[], Snapshot], host: str, port: int
) -> asyncio.Server:
    """Listen for GET /metrics now (OSError if the address cannot be bound), each answer
    from the newest `snapshot()`; the caller runs server.serve_forever()."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = exposition(snapshot()).encode()
                head = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            else:
                body, head = b"not found: try /metrics\n", ("404 Not Found", "text/plain")
            writer.write(
                f"HTTP/1.1 {head[0]}\r\nContent-Type: {head[1]}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("prometheus metrics on http://%s:%d/metrics", host, port)
    return server
