"""Prometheus text exposition of node and cluster metrics on an optional HTTP port.

A tiny asyncio HTTP server (GET /metrics; GET /pair answers the director pair's VRRP view
as JSON for the peer director's ctop, docs/director.md): the exposition is a few lines of text and a
framework would cost more than it does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from agentd.metrics import EXPORTED, Metric
from ctop.metricview import value_of
from ctop.pair.view import MASTER, UNKNOWN, PairView
from ctop.snapshot import Liveness, Snapshot

log = logging.getLogger(__name__)


def _help(m: Metric) -> str:
    text = f"{m.description}, {_UNITS.get(m.unit, m.unit)}" if m.unit else m.description
    return text.replace("\\", "\\\\").replace("\n", "\\n")


_UNITS = {"%": "percent", "B": "bytes", "B/s": "bytes per second",
          "pkt/s": "packets per second", "s": "seconds"}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# HELP of the cluster-wide gauges, by name after "ctop_cluster_"
CLUSTER_HELP = {
    "cpu_avg_percent": "Average CPU use of the alive and suspect nodes, percent",
    "cpu_max_percent": "Highest CPU use of a node, percent",
    "memory_avg_percent": "Average memory use of the alive and suspect nodes, percent",
    "memory_max_percent": "Highest memory use of a node, percent",
    "tcp_established": "Established TCP connections of all nodes",
    "imbalance_index": "Highest imbalance of a load-balancer service (0 balanced .. 1)",
}


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def exposition(snap: Snapshot) -> str:
    """The whole text exposition; each metric's lines in one group under its HELP and TYPE."""
    out: list[str] = []
    t = snap.totals
    cluster = f'cluster="{_label(snap.cluster)}"'
    _family(out, "ctop_nodes", "gauge", "Nodes by liveness state")
    for state in Liveness:
        if state is Liveness.UNKNOWN:  # only a NATS view (collector lost) has such nodes
            continue
        out.append(f'ctop_nodes{{{cluster},state="{state}"}} {getattr(t, str(state))}')
    for name, value in (("cpu_avg_percent", t.cpu_avg), ("cpu_max_percent", t.cpu_max),
                        ("memory_avg_percent", t.mem_avg), ("memory_max_percent", t.mem_max),
                        ("tcp_established", t.conns), ("imbalance_index", snap.imbalance)):
        _family(out, f"ctop_cluster_{name}", "gauge", CLUSTER_HELP[name])
        out.append(f"ctop_cluster_{name}{{{cluster}}} {value:g}")
    _family(out, "ctop_firing_alerts", "gauge", "Alerts firing now")
    out.append(f"ctop_firing_alerts{{{cluster}}} {len(snap.alerts)}")
    _family(out, "ctop_muted_alerts", "gauge",
            "Firing alerts whose hooks do not run: silenced (silence, window) or held (drain)")
    for how in ("silenced", "held"):
        count = sum(1 for a in snap.alerts if a.muted == how)
        out.append(f'ctop_muted_alerts{{{cluster},how="{how}"}} {count}')
    _family(out, "ctop_receiver_drops_total", "counter", "Rejected datagrams by reason")
    for reason, count in sorted(snap.drops.items()):
        out.append(f'ctop_receiver_drops_total{{{cluster},reason="{reason}"}} {count}')
    _family(out, "ctop_receiver_drops_by_source_total", "counter",
            "Rejected datagrams of the busiest sources per reason")
    for reason, sources in sorted(snap.drop_sources.items()):
        for source, count in sources:
            out.append(f'ctop_receiver_drops_by_source_total{{{cluster},reason="{reason}",'
                       f'source="{_label(source)}"}} {count}')
    _family(out, "ctop_history_failing", "gauge",
            "1 while history writes fail (reason in the label)")
    reason = f',reason="{_label(snap.history_error)}"' if snap.history_error else ""
    out.append(f"ctop_history_failing{{{cluster}{reason}}} {1 if snap.history_error else 0}")
    _family(out, "ctop_history_failing_since_seconds", "gauge",
            "When history writes began to fail (0: they work)")
    out.append(f"ctop_history_failing_since_seconds{{{cluster}}} {snap.history_failing_since:g}")
    if snap.pair is not None:
        _pair(out, snap.pair, cluster)
    for m in EXPORTED:  # per node, as the metric registry (agentd/metrics.py) names them
        _family(out, m.prometheus, "counter" if m.counter else "gauge", _help(m))
        for n in snap.nodes:
            if n.liveness in (Liveness.ALIVE, Liveness.SUSPECT):
                value = value_of(n, m)
                if value is not None:
                    labels = f'node="{_label(n.node_id)}",group="{_label(n.group)}"'
                    out.append(f"{m.prometheus}{{{labels}}} {value:g}")
    services = [(f'node="{_label(n.node_id)}",service="{_label(s.name)}"', s)
                for n in snap.nodes for s in n.services]
    _family(out, "ctop_service_up", "gauge", "1 while the service check passes")
    out += [f"ctop_service_up{{{labels}}} {1 if s.status == 'ok' else 0}"
            for labels, s in services]
    _family(out, "ctop_service_latency_ms", "gauge", "Latency of the last service check, ms")
    out += [f"ctop_service_latency_ms{{{labels}}} {s.latency_ms:g}"
            for labels, s in services if s.latency_ms is not None]
    servers = [(f'service="{_label(svc.key)}",server="{_label(rs.key)}"', rs)
               for svc in snap.lb for rs in svc.servers]
    _family(out, "ctop_lb_weight", "gauge", "Weight of the real server on the balancer")
    out += [f"ctop_lb_weight{{{labels}}} {rs.weight}" for labels, rs in servers]
    _family(out, "ctop_lb_active_connections", "gauge", "Active connections of the real server")
    out += [f"ctop_lb_active_connections{{{labels}}} {rs.active_conns}" for labels, rs in servers]
    _family(out, "ctop_lb_balance_ratio", "gauge",
            "Share of the load over share of the weight (1: as weighted)")
    out += [f"ctop_lb_balance_ratio{{{labels}}} {rs.ratio:g}"
            for labels, rs in servers if rs.ratio is not None]
    return "\n".join(out) + "\n"


def _pair(out: list[str], pair: PairView, cluster: str) -> None:
    """The director pair's VRRP state ([pair]): this director's, and the peer's when known."""
    _family(out, "ctop_vrrp_master", "gauge",
            "1 while this director is MASTER of the VRRP instance (its state in the label)")
    out += [f'ctop_vrrp_master{{{cluster},instance="{_label(i.name)}",state="{i.state}"}} '
            f'{1 if i.state == MASTER else 0}' for i in pair.instances]
    _family(out, "ctop_vrrp_priority", "gauge", "Effective VRRP priority of the instance here")
    out += [f'ctop_vrrp_priority{{{cluster},instance="{_label(i.name)}"}} {i.priority}'
            for i in pair.instances]
    _family(out, "ctop_vrrp_peer_master", "gauge",
            "1 while the peer director is MASTER of the instance (absent while unknown)")
    out += [f'ctop_vrrp_peer_master{{{cluster},instance="{_label(name)}",state="{state}"}} '
            f'{1 if state == MASTER else 0}' for name, state in pair.peer_instances
            if state != UNKNOWN]


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
            path = parts[1].split("?")[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            pair = snapshot().pair if path == "/pair" else None
            if path == "/metrics":
                body = exposition(snapshot()).encode()
                head = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            elif pair is not None:  # the peer director's ctop asks for our role (ctop.pair)
                body = json.dumps(pair.to_plain()).encode()
                head = "200 OK", "application/json"
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
