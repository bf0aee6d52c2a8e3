"""The local control socket of `ctop serve`, and the UI's source that reads from it.

One request per connection, one line each way (the answer length-prefixed msgpack):
`status` or `snapshot` -> the plain snapshot (`ctop.codec.to_plain`, every node's metrics);
`ui [NODE]` -> the compact one an attached UI polls (`ctop.codec.pack_compact`: nodes as rows,
raw metrics only for NODE, the node detail on screen); `plan JSON` -> what a load-balancer
action would do; `action JSON` -> the daemon runs the change (`ctop.lb.request.ActionRequest`)
and answers its result. History is read straight from the shared database.

Who may do what: the daemon reads the caller's uid/gid/pid from the socket (SO_PEERCRED).
Root, the daemon's own user and members of the control group (`[control] group`, else the
daemon's group) may read and change; anyone else is refused. The socket is mode 0660 with
that group, so the file system says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from ctop.codec import from_plain, pack_compact, peek_version, to_plain, unpack_compact
from ctop.snapshot import EventView, Snapshot
from ctop.sockpath import UntrustedPath, check_socket, prepare_directory, remove_stale_socket

if TYPE_CHECKING:
    from ctop.engine import Engine
    from ctop.lb.actions import ActionResult, LBController, Plan
    from ctop.lb.base import Connection
    from ctop.lb.request import ActionRequest

_LEN = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
ACTION_TIMEOUT = 60.0  # an action may wait for another one on the same balancer
MAX_REQUEST = 4096  # bytes of one request line; longer ones are refused, not read on


class ControlError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Peer:
    """The process on the other end of the socket, as the kernel reports it."""

    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        from ctop.lb.journal import user_name

        return user_name(self.uid)

    def groups(self) -> set[int]:
        """Its gid and supplementary groups (/proc: the process's own, not /etc/group's)."""
        out = {self.gid}
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    out.update(int(g) for g in line.split()[1:])
        return out


def peer_of(sock: socket.socket) -> Peer:
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return Peer(pid, uid, gid)


def control_gid(group: str | None) -> int:
    """The gid of `[control] group` (ControlError naming the fix when it does not exist), or
    the daemon's own group."""
    if not group:
        return os.getegid()
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlError(f"[control] group {group!r} does not exist (groupadd {group})") from None


class ControlServer:
    def __init__(self, engine: Engine, path: str, *, group: str | None = None) -> None:
        self.engine, self.path = engine, path
        self.group = group
        self.gid = control_gid(group)  # ControlError naming the fix when it does not exist
        # a socket directory we create belongs to the configured group (none: ours, 0700)
        self._dir_gid = self.gid if group else None
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        try:
            prepare_directory(self.path, self._dir_gid)
            if daemon_running(self.path):
                raise ControlError(f"another ctop serve already listens on {self.path}")
            remove_stale_socket(self.path)  # a crashed daemon's, never a file
        except UntrustedPath as e:
            raise ControlError(str(e)) from None
        self._server = await asyncio.start_unix_server(
            self._handle, self.path, limit=MAX_REQUEST)
        os.chmod(self.path, 0o660)
        if self.group:
            os.chown(self.path, -1, self.gid)  # the control group may connect

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(OSError, UntrustedPath):
                remove_stale_socket(self.path)

    def allowed(self, peer: Peer) -> bool:
        """Root, the daemon's own user, and the control group."""
        return peer.uid in (0, os.geteuid()) or self.gid in peer.groups()

    def _refusal(self, peer: Peer, what: str) -> str:
        group = f"group {self.group!r} ([control] group)" if self.group else (
            f"the daemon's group (gid {self.gid}; set [control] group)")
        return (f"permission denied: {peer.user} (uid {peer.uid}) is neither root nor in "
                f"{group}; {what} refused")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = peer_of(writer.get_extra_info("socket"))
            request = await read_request(reader)
            if request is None:  # too long, not UTF-8, or cut off: answered, not logged
                body = msgpack.packb({"error": "bad request: one UTF-8 line of at most "
                                               f"{MAX_REQUEST} bytes"})
                writer.write(_LEN.pack(len(body)) + body)
                await writer.drain()
                return
            verb, _, arg = request.partition(" ")
            if not self.allowed(peer):
                what = "load-balancer changes are" if verb == "action" else "reading is"
                body = msgpack.packb({"error": self._refusal(peer, what)})
                if verb == "action":  # every operator watching sees the attempt
                    self.engine._note([EventView(time.time(), "action", "",
                                                 f"refused {peer.user} (uid {peer.uid}): "
                                                 "not in the control group")])
            elif request == "hello":  # who am I talking to: cheap, for `ctop lb --no-daemon`
                body = msgpack.packb({"pid": os.getpid(), "readonly": self.engine.readonly})
            elif request in ("status", "snapshot"):
                body = msgpack.packb(to_plain(self.engine.snapshot()))
            elif verb == "ui":
                body = pack_compact(self.engine.snapshot(), [arg] if arg else ())
            elif verb in ("plan", "action"):
                body = msgpack.packb(await self._lb(verb, arg, peer))
            elif verb == "conns":  # a read: the `c` view of an attached UI
                body = msgpack.packb(await self._connections(arg))
            else:
                body = msgpack.packb({"error": f"unknown request {request!r}"})
            writer.write(_LEN.pack(len(body)) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _lb(self, verb: str, arg: str, peer: Peer) -> dict[str, Any]:
        """A plan or an action for a caller that may have it; errors as {"error": text}."""
        from ctop.lb.journal import Actor
        from ctop.lb.request import ActionRequest, plan_to_plain, result_to_plain

        try:
            message = json.loads(arg)
            request = ActionRequest.from_plain(message["request"])
            sudo = message.get("sudo_user")
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"bad {verb} request: {exc}"}
        try:
            if verb == "plan":
                return {"plan": plan_to_plain(await self.engine.lb_plan(request))}
            actor = Actor(peer.user, str(sudo) if sudo else None, peer.uid, peer.pid)
            return {"result": result_to_plain(await self.engine.lb_action(request, actor))}
        except Exception as exc:  # no balancer, a bad value: the caller reads why
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}


    async def _connections(self, arg: str) -> dict[str, Any]:
        """One real server's connections (the daemon's balancer), as plain maps."""
        try:
            where = json.loads(arg)
            backend, service, server = (str(where[k]) for k in ("backend", "service", "server"))
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"bad conns request: {exc}"}
        try:
            conns = await self.engine.lb_connections(backend, service, server)
        except Exception as exc:  # LBError, no balancer: the caller shows why
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
        return {"connections": [dataclasses.asdict(c) for c in conns]}


def request_connections(path: str, backend: str, service: str, server: str) -> list[Connection]:
    """The daemon's reading of one real server's connections (IPVS with templates)."""
    from ctop.lb.base import Connection

    where = json.dumps({"backend": backend, "service": service, "server": server})
    answer = _request(path, "conns " + where, timeout=15.0)
    return [Connection(**c) for c in answer["connections"]]


def request_plan(path: str, request: ActionRequest) -> Plan:
    """The daemon's plan for `request` (what the confirmation dialog shows)."""
    from ctop.lb.request import plan_from_plain

    return plan_from_plain(_request(path, "plan " + _envelope(request))["plan"])


def request_action(path: str, request: ActionRequest) -> ActionResult:
    """The daemon runs `request` (as the caller, whom it reads from the socket)."""
    from ctop.lb.request import result_from_plain

    # A ramp (or a queue on the balancer) may take a while; the answer is the outcome.
    timeout = ACTION_TIMEOUT + float(getattr(request, "ramp_s", 0) or 0)
    answer = _request(path, "action " + _envelope(request), timeout=timeout)
    return result_from_plain(answer["result"])


def _envelope(request: ActionRequest) -> str:
    from ctop.lb.journal import claimed_sudo_user

    return json.dumps({"request": request.to_plain(), "sudo_user": claimed_sudo_user()})


async def read_request(reader: asyncio.StreamReader, timeout: float = 5) -> str | None:
    """One request line (the last may lack its newline), or None if it is longer than
    MAX_REQUEST, not UTF-8, or empty."""
    try:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
        except asyncio.IncompleteReadError as e:  # the client closed after its request
            line = e.partial
        return line.decode().strip() or None
    except (asyncio.LimitOverrunError, ValueError):
        return None  # ValueError: UnicodeDecodeError, or a line past the reader's limit


def _trusted(path: str) -> None:
    """Refuse a socket another user could have planted (ctop.sockpath)."""
    try:
        check_socket(path)
    except FileNotFoundError:
        raise ControlError(f"no ctop daemon: {path} does not exist (start `ctop serve`)"
                           ) from None
    except UntrustedPath as e:
        raise ControlError(f"{e}; not using this control socket") from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None


def _exchange(path: str, what: str, timeout: float = 5.0) -> bytes:
    """One request line out, the answer's msgpack bytes back."""
    if "\n" in what:
        raise ControlError("a request is one line")
    _trusted(path)
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


def hello(path: str) -> dict[str, Any]:
    """The daemon's pid and effective read-only value."""
    return _request(path, "hello", timeout=2.0)


def fetch_status(path: str) -> dict[str, Any]:
    return _request(path, "status")


def daemon_running(path: str) -> bool:
    """True if a daemon listens on `path`; ControlError if what is there is not trusted.
    Permission denied counts as running (it is there; the caller may not use it): nobody then
    works around it with a local controller."""
    if not os.path.lexists(path):
        return False
    _trusted(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(path)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


class RemoteSource:
    """The UI's data source when `ctop serve` runs: snapshots over the socket, history and
    events from the shared database; load-balancer plans and actions are the daemon's (it runs
    them, journals them as this user and publishes them as events every attached UI sees).

    A thread polls the daemon every `poll` seconds, so the UI never waits on the socket or on
    decoding (~100 ms at 10,000 nodes); `snapshot()` returns the newest one at once.
    """

    records_actions = True  # the daemon publishes every action as an event

    def __init__(
        self, path: str, db_path: str, *, readonly: bool = False, poll: float = 0.5
    ) -> None:
        from ctop.store import Store

        self.path = path
        self.readonly = readonly
        self.lb: LBController | None = None  # the daemon owns the balancers
        self.poll = poll
        self._store = Store(db_path, writer=False)
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
        data = _exchange(self.path, request)
        version = peek_version(data)
        if version is not None and (version, watched) == self._decoded:
            return self._snap  # the same snapshot again (two polls a tick): not decoded again
        try:
            snap = unpack_compact(data)
            self._decoded = (version, watched)
            return snap
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

    async def lb_plan(self, request: ActionRequest) -> Plan:
        return await asyncio.to_thread(request_plan, self.path, request)

    async def lb_connections(self, backend: str, service: str, server: str) -> list[Connection]:
        return await asyncio.to_thread(request_connections, self.path, backend, service, server)

    async def lb_action(self, request: ActionRequest) -> ActionResult:
        result = await asyncio.to_thread(request_action, self.path, request)
        self._wake.set()  # the new state and its event with the next snapshot, now
        return result
