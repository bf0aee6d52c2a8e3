"""The local control socket of `ctop serve`, and the UI's source that reads from it.

One request per connection, one line each way (the answer length-prefixed msgpack):
`status` or `snapshot` -> the plain snapshot (`ctop.codec.to_plain`, every node's metrics);
`ui [NODE]` -> the compact one an attached UI polls (`ctop.codec.pack_compact`: nodes as rows,
raw metrics only for NODE, the node detail on screen). The socket is a UNIX socket of mode
0660, so only root and the socket's group can read the cluster. History is read straight from
the shared database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from ctop.codec import from_plain, pack_compact, to_plain, unpack_compact
from ctop.model import EventView, Snapshot

if TYPE_CHECKING:
    from ctop.engine import Engine
    from ctop.lb.actions import ActionResult, LBController

_LEN = struct.Struct("!I")


class ControlError(Exception):
    pass


class ControlServer:
    def __init__(self, engine: Engine, path: str) -> None:
        self.engine, self.path = engine, path
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if daemon_running(self.path):
            raise ControlError(f"another ctop serve already listens on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a stale socket from a crashed daemon
        self._server = await asyncio.start_unix_server(self._handle, self.path)
        os.chmod(self.path, 0o660)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
            verb, _, arg = request.partition(" ")
            if request in ("status", "snapshot"):
                body = msgpack.packb(to_plain(self.engine.snapshot()))
            elif verb == "ui":
                body = pack_compact(self.engine.snapshot(), [arg] if arg else ())
            else:
                body = msgpack.packb({"error": f"unknown request {request!r}"})
            writer.write(_LEN.pack(len(body)) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def _exchange(path: str, what: str, timeout: float = 5.0) -> bytes:
    """One request line out, the answer's msgpack bytes back."""
    if "\n" in what:
        raise ControlError("a request is one line")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(what.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no ctop daemon: {path} does not exist (start `ctop serve`)") from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (run as root or the ctop group)") from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None
    if len(data) < 4 or len(data) - 4 != _LEN.unpack(data[:4])[0]:
        raise ControlError(f"{path}: truncated answer from the daemon")
    return data[4:]


def _request(path: str, what: str, timeout: float = 5.0) -> dict[str, Any]:
    answer = msgpack.unpackb(_exchange(path, what, timeout), strict_map_key=False)
    if "error" in answer:
        raise ControlError(answer["error"])
    return answer


def fetch_status(path: str) -> dict[str, Any]:
    return _request(path, "status")


def daemon_running(path: str) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(path)
        return True
    except OSError:
        return False


class RemoteSource:
    """The UI's data source when `ctop serve` runs: snapshots over the socket, history and
    events from the shared database, load-balancer actions through a local controller on the
    same balancers and journal (the daemon sees their effect on its next read).

    A thread polls the daemon every `poll` seconds, so the UI never waits on the socket or on
    decoding (~100 ms at 10,000 nodes); `snapshot()` returns the newest one at once.
    """

    def __init__(
        self, path: str, db_path: str, lb: LBController | None = None, *, poll: float = 0.5
    ) -> None:
        from ctop.store import Store

        self.path = path
        self.readonly = False
        self.lb = lb
        self.poll = poll
        self._store = Store(db_path, writer=False)
        self._watched: str | None = None
        self._error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._snap = self._fetch()  # the daemon is unreachable: say so now, not in the UI
        self._thread = threading.Thread(target=self._poll_loop, name="ctop-remote", daemon=True)
        self._thread.start()

    def _fetch(self) -> Snapshot:
        request = f"ui {self._watched}" if self._watched else "ui"
        data = _exchange(self.path, request)
        try:
            return unpack_compact(data)
        except KeyError:  # an older daemon answers {"error": "unknown request"}
            return from_plain(_request(self.path, "snapshot"))

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
            from dataclasses import replace

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
        return self._store.history(node_id, metrics, seconds)

    def node_events(self, node_id: str, limit: int = 50) -> list[EventView]:
        return self._store.events(node_id, limit)

    async def lb_action(
        self, verb: str, backend: str, service: str, server: str, weight: int | None = None,
        **options: Any,  # ActionRequest's options: force, dry_run, ramp_s, cut_sessions
    ) -> ActionResult:
        if self.lb is None:
            raise RuntimeError("no load balancer configured")
        from ctop.lb.request import ActionRequest, perform

        request = ActionRequest(verb, backend, service, server, weight, **options)
        return await asyncio.to_thread(perform, self.lb, request)
