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
)
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
        self._snap = self._fetch()  # the daemon is unreachable: say so now, not in the UI
        self._thread = threading.Thread(target=self._poll_loop, name="ctop-remote", daemon=True)
        self._thread.start()

    def _fetch(self) -> Snapshot:
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

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        result = await asyncio.to_thread(request_action, self.path, request)
        self._wake.set()  # the new state and its event with the next snapshot, now
        return result
