"""`ctop --nats URL status [--json]`: the NATS view's snapshot once, as `ctop status` prints a
daemon's: it listens a moment (heartbeats, every group's full snapshot), then prints. Nodes of
a collector lost while it listened are counted as `unknown` (totals and each group)."""

from __future__ import annotations

import time
from typing import Any

from ctop.codec import to_plain
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsDown
from ctop.nats.view import NatsSource
from ctop.snapshot import Snapshot

SETTLE = 1.2  # s listened at least: two heartbeats, a delta, the full snapshot asked for
LISTEN = 5.0  # s at most, when a collector's group never arrives


def nats_status(cfg: NatsConfig, *, settle: float = SETTLE, listen: float = LISTEN
                ) -> dict[str, Any]:
    source = NatsSource(cfg)
    try:
        if not source.link.wait_connected(10):
            raise NatsDown(f"NATS is not connected: {source.link.status.text()}")
        start = time.monotonic()
        while time.monotonic() - start < listen:
            if time.monotonic() - start >= settle and _complete(source):
                break
            time.sleep(0.1)
        return status_plain(source.snapshot(), source)
    finally:
        source.close()


def _complete(source: NatsSource) -> bool:
    """Every group a collector's heartbeat names has arrived (a scoped view: its own)."""
    view = source.view
    with view._lock:
        have = {key for key in view._groups}
        want = {(c.cluster, g) for c in view._collectors.values() for g in c.groups}
    if source.scope:
        want = {(cl, g) for cl, g in want if g in source.scope}
    return bool(view._collectors) and want <= have


def status_plain(snap: Snapshot, source: NatsSource) -> dict[str, Any]:
    plain = to_plain(snap, metrics=False)
    plain["totals"]["unknown"] = snap.totals.unknown
    for g, view in zip(plain["groups"], snap.groups, strict=True):
        g["totals"]["unknown"] = view.totals.unknown
    plain["lost_collectors"] = [{"cluster": cl, "collector": name, "silent": round(age, 1)}
                                for cl, name, age in source.view.lost()]
    return plain
