"""The UI's source when `ctop serve` runs: the daemon's snapshots over the control socket,
history and events from the shared database, load-balancer plans and actions run by the daemon.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ctop.codec import from_plain, peek_version, unpack_compact
from ctop.control.client import (
    ControlError,
    ask,
    exchange,
    request_action,
    request_connections,
    request_plan,
    request_silence,
)
from ctop.control.delta import DaemonRefused, DeltaError, DeltaReader
from ctop.silences import Silence
from ctop.snapshot import EventView, Snapshot
from ctop.store import StoreReader

if TYPE_CHECKING:
    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.base import Connection
    from ctop.lb.request import ActionRequest
    from ctop.victoria import VictoriaReader


class RemoteSource:
    """The UI's data source when `ctop serve` runs: snapshots over the socket, history and
    events from the shared database; load-balancer plans and actions are the daemon's (it runs
    them, journals them as this user and publishes them as events every attached UI sees).

    A thread polls the daemon every `poll` seconds, so the UI never waits on the socket or on
    decoding (docs/director.md: the compact snapshot's sizes and times); `snapshot()` returns
    the newest one at once.
    """

    records_actions = True  # the daemon publishes every action as an event

    def __init__(
        self, path: str, db_path: str, *, readonly: bool = False, poll: float = 0.5,
        victoria: VictoriaReader | None = None,  # [history] victoria_url: charts from there
    ) -> None:
        self.path = path
        self.readonly = readonly
        self.lb: LBController | None = None  # the daemon owns the balancers
        self.poll = poll
        self._store = StoreReader(db_path)
        self._victoria = victoria
        self._watched: str | None = None
        self._error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._decoded: tuple[tuple[float, int] | None, str | None] | None = None
        # only what changed since the snapshot held (wire 2); None: an older daemon, `ui`
        self._delta: DeltaReader | None = DeltaReader()
        self._snap = self._fetch()  # the daemon is unreachable: say so now, not in the UI
        self._thread = threading.Thread(target=self._poll_loop, name="ctop-remote", daemon=True)
        self._thread.start()

    def _fetch(self) -> Snapshot:
        if self._delta is not None:
            try:
                return self._fetch_delta()
            except DaemonRefused as e:
                if not str(e).startswith("unknown request"):
                    raise ControlError(str(e)) from None
                self._delta = None  # a daemon before wire 2: its compact snapshots
        return self._fetch_compact()

    def _fetch_delta(self) -> Snapshot:
        watched, reader = self._watched, self._delta
        assert reader is not None
        try:
            return reader.apply(exchange(self.path, reader.request(watched)), watched)
        except DeltaError:  # the daemon forgot what we hold (or a gap): everything again
            reader.reset()
            return reader.apply(exchange(self.path, reader.request(watched)), watched)

    def _fetch_compact(self) -> Snapshot:
        watched = self._watched
        request = f"ui {watched}" if watched else "ui"
        data = exchange(self.path, request)
        version = peek_version(data)
        if version is not None and (version, watched) == self._decoded:
            return self._snap  # the same snapshot again (two polls a tick): not decoded again
        try:
            snap = unpack_compact(data)
            self._decoded = (version, watched)
            return snap
        except KeyError:  # an older daemon answers {"error": "unknown request"}
            return from_plain(ask(self.path, "snapshot"))

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._snap = self._fetch()
                self._error = ""
            except ControlError as e:
                self._error = f"daemon: {e}"

    def snapshot(self) -> Snapshot:
        snap = self._snap
        if self._error:
            return replace(snap, lb_error=self._error)
        return snap

    def watch(self, node_id: str | None) -> None:
        """The node whose raw metrics the UI shows now (node detail), or None."""
        if node_id != self._watched:
            self._watched = node_id
            self._wake.set()  # fetch now rather than at the next poll

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def history(
        self, node_id: str, metrics: Sequence[str], seconds: float
    ) -> dict[str, list[tuple[float, float]]]:
        if self._victoria is not None:
            return self._victoria.history(node_id, metrics, seconds)
        return self._store.history(node_id, metrics, seconds)

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        return self._store.events(node_id, limit)

    async def lb_plan(self, request: ActionRequest) -> Plan:
        return await asyncio.to_thread(request_plan, self.path, request)

    async def lb_connections(self, balancer: str, service: str, server: str) -> list[Connection]:
        return await asyncio.to_thread(request_connections, self.path, balancer, service, server)

    async def silence(self, *, node: str = "", group: str = "", rule: str = "",
                      duration: str | float, reason: str) -> Silence:
        """A silence kept by the daemon, which takes the author from the socket."""
        answer = await asyncio.to_thread(
            request_silence, self.path, "add", node=node, group=group, rule=rule,
            reason=reason, **{"for": duration})
        self._wake.set()  # the silenced alerts with the next snapshot, now
        return Silence.from_plain(answer["silence"])

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        result = await asyncio.to_thread(request_action, self.path, request)
        self._wake.set()  # the new state and its event with the next snapshot, now
        return result
