"""Leave a report's slow facts out while they have not changed.

Probe results change once per probe interval (10 s by default), the top processes once per
process scan (5 s), the TCP state counts when connections come and go; the rest of a report
changes every second. Sending the slow facts only when they change (in `repeats` reports in a
row, so one lost datagram does not hide a change) and every `refresh` seconds regardless (a
restarted director has them within that time, like the joins' facts) makes room in the byte
budget for the liveness beacons. The director keeps the last value of a fact a report leaves
out (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentd.protocol import (
    MAX_PROBES,
    UNSENT,
    IndexedServices,
    Report,
    ServiceStatus,
    probe_digest,
)

SLOW_METRICS = ("top_procs", "tcp_states", "watched", "arp")
REPEATS = 2  # reports in a row that carry a changed fact (p^2 = 9 % at 30 % loss)
# Facts that carry measurements besides their news: a watched process's count and restarts are
# news at once, its CPU, RSS, threads and files ride along and are otherwise refreshed. What
# counts as a change, per fact (the default: any difference):
CHANGE_OF: dict[str, Callable[[Any], Any]] = {
    "watched": lambda value: [(w[0], w[1], w[4]) for w in value],
    # The top processes' shares change at every scan, and on a busy machine so does the order
    # of those with similar shares: which processes are on the list is the news.
    "top_procs": lambda value: sorted((p[1], p[0]) for p in value),
}
# Refresh periods, in `refresh` periods, of facts that change rarely or whose measurements
# may be older: the byte budget (docs/protocol.md) has room for little else.
REFRESH_TIMES = {"watched": 3, "arp": 6, "top_procs": 3}
# Services go by position in the join's probe list (which names them every `refresh`); by
# name when the probe list changed, and every this many refresh periods (for directors
# older than `sx`, and for one that missed the join).
NAMES_REFRESH_TIMES = 3
# Facts whose change goes out once: a lost one is made good by the next change or refresh,
# and on a busy machine the top processes' set changes at nearly every scan (5 s).
REPEATS_OF = {"top_procs": 1}
_NOTHING = object()


class SlowFacts:
    def __init__(self, refresh: float, repeats: int = REPEATS) -> None:
        self.refresh = refresh
        self.repeats = repeats
        self._last: dict[str, Any] = {}
        self._left: dict[str, int] = {}  # reports that still carry the fact
        self._sent_at: dict[str, float] = {}
        self._named: tuple[str, ...] | None = None  # probe names last sent as names
        self._named_at = float("-inf")
        self._refreshes = 0  # refreshes (not news) in the report being thinned
        self._other_refreshes = 0

    def _due(self, name: str, value: Any, now: float) -> bool:
        change = CHANGE_OF.get(name)
        news = change(value) if change is not None else value
        if news != self._last.get(name, _NOTHING):
            self._last[name] = news
            self._left[name] = REPEATS_OF.get(name, self.repeats)
        elif self._left.get(name, 0) <= 0 and self._refreshes == 0 and \
                now - self._sent_at.get(name, float("-inf")) >= \
                self.refresh * REFRESH_TIMES.get(name, 1):
            # One refresh a report: facts whose refreshes fall due together (they started
            # together) spread over the next reports, so no report carries them all at once.
            self._refreshes += 1
            self._left[name] = 1
        if self._left.get(name, 0) <= 0:
            return False
        self._left[name] -= 1
        self._sent_at[name] = now
        return True

    def thin(
        self, metrics: Mapping[str, Any], services: tuple[ServiceStatus, ...], now: float
    ) -> tuple[dict[str, Any], tuple[ServiceStatus, ...]]:
        """The report's metrics and services, less the slow facts not due this time."""
        self._refreshes = 0
        out = dict(metrics)
        for name in SLOW_METRICS:
            if name in out and not self._due(name, out[name], now):
                del out[name]
        self._other_refreshes = self._refreshes  # of the metrics, before the services'
        if not self._due("services", services, now):
            services = UNSENT
        return out, services

    def thin_report(self, report: Report, now: float) -> Report:
        """`report` for the wire: the slow facts not due left out, and services by position
        in the join's probe list (`sx`), named by the join sent before the first report; a
        changed probe list, and every NAMES_REFRESH_TIMES refresh periods, sends the names."""
        metrics, services = self.thin(report.metrics, report.services, now)
        if services is UNSENT:
            return report._replace(metrics=metrics, services=UNSENT)
        names = tuple(s.name for s in services)
        if self._named is None:  # the first report: the join sent just before names them
            self._named, self._named_at = names, now
        if services and len(services) <= MAX_PROBES and names == self._named and (
                now - self._named_at < self.refresh * NAMES_REFRESH_TIMES
                or self._other_refreshes):  # names wait for a report without another refresh
            indexed = IndexedServices(probe_digest(names), services)
            return report._replace(metrics=metrics, services=UNSENT, indexed=indexed)
        self._named, self._named_at = names, now
        return report._replace(metrics=metrics, services=services)
