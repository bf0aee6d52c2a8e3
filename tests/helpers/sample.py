"""A deterministic sample cluster built from ctop.snapshot: for snapshot tests, screenshots and the
UI benchmark. Every figure is generated from a seed, nothing depends on the clock."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from types import MappingProxyType

from ctop.snapshot import (
    Aggregate,
    AlertView,
    EventView,
    GroupView,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    ServiceView,
    Severity,
    Snapshot,
)

T0 = 1_760_000_000.0  # a fixed "now" for pictures and tests
GROUPS = ("web", "api", "db", "cache", "batch")
SERVICES = {
    "web": ("http", "https", "ssh"),
    "api": ("http", "grpc", "ssh"),
    "db": ("postgres", "ssh"),
    "cache": ("redis", "ssh"),
    "batch": ("ssh",),
}


def _liveness(rng: random.Random, i: int, n: int) -> Liveness:
    if n <= 64:  # small clusters: a fixed, readable mix
        return {5: Liveness.SUSPECT, 9: Liveness.DEAD, 13: Liveness.LEFT}.get(i, Liveness.ALIVE)
    r = rng.random()
    return (
        Liveness.DEAD
        if r < 0.01
        else Liveness.SUSPECT
        if r < 0.03
        else Liveness.LEFT
        if r < 0.035
        else Liveness.ALIVE
    )


def make_node(i: int, n: int, tick: int, ts: float, rng: random.Random) -> NodeView:
    group = GROUPS[i % len(GROUPS)] if n > 12 else GROUPS[min(i // 4, len(GROUPS) - 1)]
    state = _liveness(rng, i, n)
    up = state in (Liveness.ALIVE, Liveness.SUSPECT)
    base = 15 + 60 * ((i * 37) % 100) / 100
    cpu = max(0.0, min(100.0, base + 12 * math.sin((tick + i) / 3))) if up else 0.0
    hist = tuple(
        max(0.0, min(100.0, base + 12 * math.sin((tick - k + i) / 3))) for k in range(30, 0, -1)
    )
    svcs = []
    for j, name in enumerate(SERVICES[group]):
        status = "ok"
        if state == Liveness.DEAD:
            status = "unknown"
        elif (i + j) % 11 == 3:
            status = "warn"
        elif (i + j) % 17 == 5:
            status = "fail"
        lat = None if status in ("fail", "unknown") else round(0.4 + ((i * 7 + j * 13) % 40) / 4, 2)
        detail = {"fail": "connection refused", "warn": "slow answer"}.get(status, "")
        svcs.append(ServiceView(name, status, lat, detail))
    conns = int((base * 9 + tick % 7) * (1 if up else 0))
    name = f"{group}-{i + 1:03d}" if n < 1000 else f"{group}-{i + 1:05d}"
    return NodeView(
        node_id=name,  # agentd's default node id is the hostname
        hostname=name,
        group=group,
        liveness=state,
        last_seen=ts - (1 if up else 40 + i % 50),
        boot=1,
        interval=1.0,
        addresses=(f"10.0.{i // 250}.{i % 250 + 1}",),
        cores=8 if group != "db" else 32,
        mem_total=(16 if group != "db" else 128) * 2**30,
        version="0.1.0",
        cpu=round(cpu, 1),
        mem=round(30 + 50 * ((i * 53) % 100) / 100, 1) if up else 0.0,
        swap=0.0,
        load1=round(cpu / 25, 2),
        net_rx_bps=(2e5 + 4e6 * ((i * 29) % 100) / 100) if up else 0.0,
        net_tx_bps=(1e5 + 9e6 * ((i * 31) % 100) / 100) if up else 0.0,
        conns=conns,
        procs=180 + i % 40,
        threads=900 + (i * 11) % 300,
        users=i % 3,
        disk_root=40 + i % 30,
        cpu_history=hist if up else hist[:10],
        services=tuple(svcs),
        restarts=1 if i == 3 else 0,
        metrics=MappingProxyType({
            "cpu_percent": cpu,
            "tcp_established": conns,
            "top_procs": _top_procs(group, i, cpu) if up else [],
        }),
    )


_PROGRAMS = {"web": ("nginx", "php-fpm8.2"), "api": ("gunicorn", "nginx"),
             "db": ("postgres", "pg_walwriter"), "cache": ("redis-server", "sshd"),
             "batch": ("java", "cron")}


def _top_procs(group: str, i: int, cpu: float) -> list[tuple[str, int, float, int]]:
    """The shape agentd sends as metric top_procs: (command, pid, cpu % of a core, rss)."""
    main, helper = _PROGRAMS[group]
    return [
        (main, 1000 + i, round(cpu * 0.6, 1), (300 + i % 200) * 2**20),
        (helper, 2000 + i, round(cpu * 0.2, 1), (80 + i % 50) * 2**20),
        ("agentd", 400 + i, 0.4, 34 * 2**20),
    ]


def _aggregate(nodes: Sequence[NodeView]) -> Aggregate:
    live = [n for n in nodes if n.liveness in (Liveness.ALIVE, Liveness.SUSPECT)]
    k = len(live) or 1
    by = {s: sum(1 for n in nodes if n.liveness == s) for s in Liveness}
    return Aggregate(
        nodes=len(nodes),
        alive=by[Liveness.ALIVE],
        suspect=by[Liveness.SUSPECT],
        dead=by[Liveness.DEAD],
        left=by[Liveness.LEFT],
        cpu_avg=sum(n.cpu for n in live) / k,
        cpu_max=max((n.cpu for n in live), default=0.0),
        mem_avg=sum(n.mem for n in live) / k,
        mem_max=max((n.mem for n in live), default=0.0),
        net_rx_bps=sum(n.net_rx_bps for n in live),
        net_tx_bps=sum(n.net_tx_bps for n in live),
        conns=sum(n.conns for n in live),
        load_avg=sum(n.load1 for n in live) / k,
    )


def _share_history(
    k: int, share: float, weight_share: float, state: str
) -> tuple[tuple[float, float], ...]:
    """Ten LB rounds ending at the current shares; a server out of rotation was serving (at a
    fair share) until four rounds ago, so the sparkline shows the drain."""
    if state != "serving":
        before = (0.2, 0.2)
        return (before,) * 6 + ((share, weight_share),) * 4
    return tuple((share * (0.8 + 0.05 * ((k + r) % 5)), weight_share) for r in range(10))


def _lb(nodes: Sequence[NodeView], per_service: int) -> tuple[LBServiceView, ...]:
    out = []
    for s, group in enumerate(("web", "api")):
        members = [n for n in nodes if n.group == group][:per_service]
        if not members:
            continue
        weights = [1 + (k % 3) for k in range(len(members))]
        states = ["serving"] * len(members)
        if len(members) > 2:
            states[1] = "drained"
            weights[1] = 0
        if len(members) > 4:
            states[3] = "down"
        if len(members) > 6:
            states[5] = "quiesced"
            weights[5] = 0
        act = [0 if st != "serving" else 20 + (k * 37) % 60 for k, st in enumerate(states)]
        tw = sum(w for w, st in zip(weights, states, strict=True) if st == "serving") or 1
        tc = sum(act) or 1
        servers = []
        for k, n in enumerate(members):
            ws = weights[k] / tw if states[k] == "serving" else 0.0
            cs = act[k] / tc
            ratio = cs / ws if ws else None
            advised = None
            if ratio is not None and abs(ratio - 1) > 0.3:
                advised = max(1, round(weights[k] / ratio))
            servers.append(
                RealServerView(
                    key=n.hostname if s == 0 else f"{n.addresses[0]}:8080",
                    address=n.addresses[0],
                    port=80 if s == 0 else 8080,
                    weight=weights[k],
                    state=states[k],
                    active_conns=act[k],
                    inactive_conns=act[k] // 3,
                    conns_per_s=round(act[k] / 4, 1),
                    node_id=n.node_id,
                    conn_share=cs,
                    weight_share=ws,
                    ratio=ratio,
                    advised_weight=advised,
                    forward="" if s == 0 else "route",
                )
            )
        imb = sum(abs(r.conn_share - r.weight_share) for r in servers) / 2
        out.append(
            LBServiceView(
                key="web" if s == 0 else "TCP 10.0.0.1:8080",
                balancer="haproxy" if s == 0 else "ipvs",
                protocol="HTTP" if s == 0 else "TCP",
                scheduler="roundrobin" if s == 0 else "wlc",
                servers=tuple(servers),
                imbalance=round(imb, 3),
                share_history={rs.key: _share_history(k, rs.conn_share, rs.weight_share,
                                                      rs.state)
                               for k, rs in enumerate(servers)},
            )
        )
    return tuple(out)


def sample_snapshot(
    n: int = 12,
    *,
    tick: int = 1,
    ts: float = T0,
    cluster: str = "sample",
    lb: bool = True,
    per_service: int = 8,
    seed: int = 7,
) -> Snapshot:
    rng = random.Random(seed)
    nodes = sorted(
        (make_node(i, n, tick, ts, rng) for i in range(n)), key=lambda v: (v.group, v.node_id)
    )
    groups = tuple(
        GroupView(g, _aggregate([x for x in nodes if x.group == g]))
        for g in sorted({x.group for x in nodes})
    )
    lbv = _lb(nodes, per_service) if lb else ()
    dead = [x for x in nodes if x.liveness == Liveness.DEAD]
    alerts = (
        *tuple(
            AlertView(
                f"node_dead:{x.node_id}",
                "node_dead",
                x.node_id,
                Severity.CRIT,
                f"{x.hostname} missed 3 reports",
                x.last_seen + 3,
            )
            for x in dead[:5]
        ),
        AlertView(
            "cpu_high:n00002",
            "cpu_high",
            nodes[0].node_id,
            Severity.WARN,
            f"{nodes[0].hostname} CPU above 70% for 60s",
            ts - 95,
            74.0,
        ),
    )
    events = (
        EventView(ts - 600, "join", nodes[0].node_id, f"{nodes[0].hostname} joined"),
        EventView(
            ts - 300,
            "restart",
            nodes[min(3, n - 1)].node_id,
            f"{nodes[min(3, n - 1)].hostname} restarted (boot 2)",
        ),
        EventView(
            ts - 120,
            "state",
            nodes[min(5, n - 1)].node_id,
            f"{nodes[min(5, n - 1)].hostname} alive → suspect",
        ),
        EventView(
            ts - 60,
            "action",
            nodes[min(1, n - 1)].node_id,
            "haproxy web: drain by operator (weight 2 → 0)",
        ),
        EventView(ts - 20, "alert", nodes[0].node_id, f"{nodes[0].hostname} CPU above 70%"),
    )
    return Snapshot(
        ts=ts,
        tick=tick,
        cluster=cluster,
        nodes=tuple(nodes),
        groups=groups,
        totals=_aggregate(nodes),
        alerts=alerts,
        events=events,
        lb=lbv,
        lb_note="" if lb else "no load balancer configured: monitoring only",
        imbalance=max((s.imbalance for s in lbv), default=0.0),
        drops=MappingProxyType({"bad_tag": 3, "replay": 1})
        if n > 4
        else MappingProxyType({}),
        received=12_345 + tick * n,
        _index=Snapshot.index_of(tuple(nodes)),
    )


def sample_history(
    node_id: str, metrics: Sequence[str], seconds: float
) -> dict[str, list[tuple[float, float]]]:
    """A smooth, deterministic history ending at T0 with one point per `seconds / 240`."""
    step = seconds / 240
    seed = sum(map(ord, node_id))
    out: dict[str, list[tuple[float, float]]] = {}
    for m_i, m in enumerate(metrics):
        scale = {
            "cpu_percent": 50,
            "mem_percent": 60,
            "net_rx_bps": 3e6,
            "net_tx_bps": 6e6,
            "tcp_established": 400,
            "procs_rss": 3e9,
        }.get(m, 5.0)
        pts = []
        for k in range(240):
            x = (k + seed + m_i * 17) / 18
            v = scale * (0.55 + 0.3 * math.sin(x) + 0.12 * math.sin(3.1 * x + m_i))
            pts.append((T0 - seconds + k * step, max(0.0, v)))
        out[m] = pts
    return out
