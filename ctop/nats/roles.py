"""The directors' VRRP roles over NATS: each director publishes its PairView's roles, and the
peer's PairMonitor is fed from there (PairMonitor.feed_peer), so that the header shows the
peer's role without the HTTP `/pair` link when `[nats]` is configured.

    subject  <prefix>.pair.<cluster>.role.<director>
    payload  {"director": "dir-a", "role": "MASTER", "instances": {"VI_1": "MASTER"}, "ts": …}

Plain publish/subscribe, not JetStream: a role is news only while fresh (believed for
TTL_ROUNDS publishes plus a second after it arrives, as the `/pair` link's answer is).
A message that is not a role report is logged and dropped; nothing may stop the thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from ctop.nats.config import NatsConfig, safe_name
from ctop.nats.link import NatsError, NatsLink
from ctop.pair.monitor import PairMonitor

log = logging.getLogger(__name__)

EVERY = 0.5  # seconds between this director's role reports
TTL_ROUNDS = 3  # a peer's report is believed for 3 of its rounds (+ 1 s)


def subject_base(cfg: NatsConfig, cluster: str) -> str:
    return f"{cfg.subject_prefix}.pair.{safe_name(cluster)}.role"


class RoleShare:
    def __init__(self, link: NatsLink, cfg: NatsConfig, cluster: str, monitor: PairMonitor,
                 *, every: float = EVERY, own_link: bool = False) -> None:
        self.link, self.monitor, self.every = link, monitor, every
        self.me = cfg.director_name
        self.peers = set(cfg.peers)  # empty: any other director's report is the peer's
        self.base = subject_base(cfg, cluster)
        self.own_link = own_link  # opened for the roles alone: closed with them
        self._stop = threading.Event()
        link.subscribe(f"{self.base}.*", self._on_message)
        self._thread = threading.Thread(target=self._run, name="ctop-pair-roles", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.own_link:
            self.link.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.link.publish(f"{self.base}.{self.me}", self._report())
            except NatsError:
                pass  # NATS down: the peer's report ages out there, the status says why here
            except Exception:  # a bug must not end the reports
                log.exception("publishing this director's VRRP role failed")
            self._stop.wait(self.every)

    def _report(self) -> bytes:
        view = self.monitor.view()
        return json.dumps({"director": self.me, "role": view.role, "ts": time.time(),
                           "instances": {i.name: i.state for i in view.instances}}).encode()

    def _on_message(self, data: bytes, subject: str) -> None:
        """NATS thread: a director's role report; ours and strangers' are ignored."""
        director = subject.rsplit(".", 1)[-1]
        if director == self.me or (self.peers and director not in self.peers):
            return
        try:
            report = _parse(data)
        except ValueError as e:
            log.warning("role report on %s dropped: %s", subject, e)
            return
        self.monitor.feed_peer(report["instances"], f"NATS {director}", role=report["role"],
                               ttl=TTL_ROUNDS * self.every + 1)


def _parse(data: bytes) -> dict[str, Any]:
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(report, dict) or not isinstance(report.get("role"), str):
        raise ValueError("no role")
    instances = report.get("instances")
    if not isinstance(instances, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in instances.items()):
        raise ValueError("instances is not a map of names to states")
    return report
