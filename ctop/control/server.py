"""The control socket of `ctop serve`: the daemon's answers to its UIs and `ctop lb`.

Who may do what: the daemon reads the caller's uid/gid/pid from the socket (SO_PEERCRED).
Root, the daemon's own user and members of the control group (`[control] group`, else the
daemon's group) may read and change; anyone else is refused. The socket is mode 0660 with
that group, so the file system says the same. The requests are in ctop.control.wire.
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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from ctop.codec import pack_compact, to_plain
from ctop.control.client import daemon_running
from ctop.control.delta import DeltaPacker
from ctop.control.wire import LENGTH, MAX_REQUEST, ControlError, read_request
from ctop.grouppush import groups_status
from ctop.lb.journal import Actor, user_name
from ctop.lb.request import ActionRequest, plan_to_plain, result_to_plain
from ctop.silences import silence_request
from ctop.snapshot import EventView
from ctop.sockpath import UntrustedPath, prepare_directory, remove_stale_socket

if TYPE_CHECKING:
    from ctop.engine import Engine

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class Peer:
    """The process on the other end of the socket, as the kernel reports it."""

    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
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
        self._deltas = DeltaPacker()  # what changed since the snapshot a UI holds (`ui2`)

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
                writer.write(LENGTH.pack(len(body)) + body)
                await writer.drain()
                return
            verb, _, arg = request.partition(" ")
            if not self.allowed(peer):
                what = {"action": "load-balancer changes are",
                        "silence": "silences are"}.get(verb, "reading is")
                body = msgpack.packb({"error": self._refusal(peer, what)})
                if verb in ("action", "silence"):  # every operator watching sees the attempt
                    self.engine.note([EventView(time.time(), "action", "",
                                                 f"refused {peer.user} (uid {peer.uid}): "
                                                 "not in the control group")])
            elif request == "hello":  # who am I talking to: cheap, for `ctop lb --no-daemon`
                body = msgpack.packb({"pid": os.getpid(), "readonly": self.engine.readonly})
            elif request in ("status", "snapshot"):
                plain = to_plain(self.engine.snapshot())
                pair = getattr(self.engine, "nats_pair", None)  # [nats]: ctop.nats.pair
                if request == "status":  # and each node's pushed configuration
                    plain["configs"] = groups_status(self.engine.pusher)
                    workers = getattr(self.engine, "workers", None)  # [receive] workers
                    if workers is not None:
                        plain["receivers"] = workers.status()
                    if pair is not None:
                        plain["pair_sync"] = pair.sync.plain()
                body = msgpack.packb(plain)
            elif request == "groups":
                body = msgpack.packb(groups_status(self.engine.pusher))
            elif verb == "ui2":
                body = self._deltas.answer(self.engine.snapshot(), arg)
            elif verb == "ui":  # wire 1: the UIs before ctop.control.delta
                body = pack_compact(self.engine.snapshot(), [arg] if arg else ())
            elif verb in ("plan", "action"):
                body = msgpack.packb(await self._lb(verb, arg, peer))
            elif verb == "silence":  # add, rm, ls: the author is the caller (ctop.silences)
                body = msgpack.packb(silence_request(self.engine, arg, peer.user))
            elif verb == "conns":  # a read: the `c` view of an attached UI
                body = msgpack.packb(await self._connections(arg))
            else:
                body = msgpack.packb({"error": f"unknown request {request!r}"})
            writer.write(LENGTH.pack(len(body)) + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _lb(self, verb: str, arg: str, peer: Peer) -> dict[str, Any]:
        """A plan or an action for a caller that may have it; errors as {"error": text}."""
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
            # "backend": the key older attached UIs send (ctop/lb/plainkeys.py)
            balancer, service, server = (str(where[k]) for k in ("backend", "service", "server"))
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"bad conns request: {exc}"}
        try:
            conns = await self.engine.lb_connections(balancer, service, server)
        except Exception as exc:  # LBError, no balancer: the caller shows why
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
        return {"connections": [dataclasses.asdict(c) for c in conns]}
