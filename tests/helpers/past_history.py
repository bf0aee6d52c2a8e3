"""A history database with an incident in it, written through the real Store, for the pictures
of the past view (snapshot test, scripts/screenshots.py).

2026-12-01, UTC: calm from 13:50; at 14:04:30 the operator drains web2; at 14:05 web3's agent
goes silent (dead), HAProxy marks it down and the alerts fire. The moment to look at: 14:05:30.
"""

from __future__ import annotations

import calendar
from pathlib import Path

from ctop.lb_history import round_of
from ctop.snapshot import (
    AlertView,
    EventView,
    LBServiceView,
    Liveness,
    NodeView,
    RealServerView,
    Severity,
)
from ctop.store import Store

CALM = float(calendar.timegm((2026, 12, 1, 13, 50, 0)))
DRAIN = CALM + 870  # 14:04:30
DEATH = CALM + 900  # 14:05:00
MOMENT = CALM + 930  # 14:05:30
NODES = (("web1", "web"), ("web2", "web"), ("web3", "web"), ("web4", "web"), ("api1", "api"),
         ("api2", "api"))


def _node(i: int, node_id: str, group: str, ts: float, busy: float) -> NodeView:
    cpu = min(99.0, (12 + 9 * i) * busy)
    conns = int((40 + 15 * i) * busy)
    metrics = {"cpu_percent": cpu, "mem_percent": 35.0 + 6 * i, "tcp_established": conns,
               "procs": 140 + i, "threads": 400 + 7 * i, "load": (cpu / 25,),
               "net_rx_bps": 2.0e5 * busy, "net_tx_bps": 9.0e5 * busy}
    return NodeView(node_id, node_id, group, Liveness.ALIVE, ts, 1, 1.0, (f"10.0.0.{i + 1}",),
                    8, 16 << 30, "1.4", cpu=cpu, mem=35.0 + 6 * i, load1=cpu / 25,
                    net_rx_bps=2.0e5 * busy, net_tx_bps=9.0e5 * busy, conns=conns,
                    procs=140 + i, threads=400 + 7 * i, metrics=metrics)


def _lb(states: dict[str, str], weights: dict[str, int]) -> tuple[LBServiceView, ...]:
    serving = [k for k, st in states.items() if st == "serving"]
    total_w = sum(weights[k] for k in serving) or 1
    active = {k: (30 + 4 * n if k in serving else 0) for n, k in enumerate(states)}
    total_a = sum(active.values()) or 1
    servers = []
    for n, (key, state) in enumerate(states.items()):
        ws = weights[key] / total_w if key in serving else 0.0
        cs = active[key] / total_a
        servers.append(RealServerView(key, f"10.0.0.{n + 1}", 80, weights[key], state,
                                      active[key], active[key] // 3, active[key] / 5, key,
                                      cs, ws, cs / ws if ws else None))
    imbalance = sum(abs(s.conn_share - s.weight_share) for s in servers) / 2
    return (LBServiceView("web", "haproxy", "http", "roundrobin", tuple(servers), imbalance),)


def write_incident(db: Path) -> float:
    """Write the history; return the moment to look at."""
    store = Store(str(db), raw_every=0.0)
    nodes = [_node(i, n, g, CALM, 1.0) for i, (n, g) in enumerate(NODES)]
    store.record_nodes(nodes)
    store.record_events([EventView(CALM - 5, "join", n.node_id, f"{n.node_id} joined from "
                                   f"{n.addresses[0]}") for n in nodes])
    store.record_alerts(CALM, ())
    webs = [n for n, g in NODES if g == "web"]
    weights = dict.fromkeys(webs, 1)
    states = dict.fromkeys(webs, "serving")
    dead = AlertView("node-dead:web3", "node-dead", "web3", Severity.CRIT, "web3 is dead", DEATH)
    short = AlertView("web-capacity:haproxy web:serving", "web-capacity", "", Severity.WARN,
                      "haproxy web: 2 of 4 real servers serving (< 3)", DEATH)
    for t in range(int(CALM), int(MOMENT) + 30, 2):
        busy = 1.0 if t < DRAIN else 1.6
        if t >= DRAIN and states["web2"] == "serving":
            states["web2"], weights["web2"] = "drained", 0
            store.record_events([EventView(t, "action", "web2", "operator(alice) drain haproxy "
                                           "web web2: 1 → 0 ok")])
        if t >= DEATH and states["web3"] == "serving":
            states["web3"] = "down"
            store.record_events([EventView(t, "state", "web3", "web3 alive → dead (silent for "
                                           "3.0 s)"),
                                 EventView(t, "alert", "web3", "[crit] web3 is dead"),
                                 EventView(t, "alert", "", f"[warn] {short.message}")])
            store.record_alerts(t, (dead, short))
        views = [_node(i, n, g, t, busy) for i, (n, g) in enumerate(NODES)
                 if n != "web3" or t < DEATH - 3]
        store.record_tick(t, views, ())
        store.record_lb(round_of(t, _lb(states, weights)))
        store.flush()  # the writer's queue drops batches when full (it never stalls ingest)
    store.close()
    return MOMENT
