"""Several receiver processes for one director (`[receive] workers`, `ctop serve --receivers`).

The engine binds the agents' UDP port N times with SO_REUSEPORT and gives each socket to a
worker process (ctop/ingest/worker.py). The kernel hashes each datagram's source address and
port to one socket, so one node's datagrams reach one worker, in order. Workers verify and
decode; the engine applies what they hand over (ctop/ingest/handoff.py), judging each
message's order once more with its own `Verifier` (whose marks persist across restarts), and
keeps liveness, the store and the balancers.

The engine keeps the sockets: a worker that dies loses nothing that waits in its socket's
buffer (16 MiB, ~40,000 reports), and the one started in its place reads on from there. A
death is an event; the restart follows at once, then after 1, 2, 4 s while the worker keeps
dying within `STABLE` seconds of its start (a crash at start must not spin a core).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentd.protocol import Join, Leave, Message, RawReport, Reason, Rejected
from ctop.ingest import handoff
from ctop.ingest.workerlog import OutputRelay
from ctop.receiver import BATCH, RECV_BUFFER, Receiver, grow_receive_buffer
from ctop.snapshot import EventView

log = logging.getLogger(__name__)

# A worker that hands nothing over for this long while datagrams wait in its socket is stuck
# (stopped, or looping on some input): it is killed and replaced like a dead one. Frames come
# every 50 ms while there is input; the margin is for a machine so loaded that a process waits
# seconds for a core.
HUNG_AFTER = 5.0
WATCH_EVERY = 1.0  # seconds between those checks
STABLE = 10.0  # seconds a worker must live for its next death to restart it at once
MAX_BACKOFF = 4.0  # seconds, at most, between restarts of a worker that keeps dying
READ_CHUNK = 1 << 20  # bytes read from a worker per wake-up of the loop


@dataclass
class _Slot:
    """One worker: its socket (kept across restarts) and the process reading it now."""

    index: int
    udp: socket.socket
    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    inbox: bytearray = field(default_factory=bytearray)
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    last_frame: float = 0.0  # monotonic clock of its last frame (or its start)
    quick_deaths: int = 0  # deaths in a row, each within STABLE seconds of its start
    datagrams: int = 0  # read by all its processes
    last_exit: str = ""
    sending: asyncio.Task[None] | None = None  # the last send queued to its control socket
    output: OutputRelay | None = None  # its process's stdout and stderr, into our log
    # its process's metric-names tables (ctop/ingest/handoff.py), id -> names; new per process
    names: dict[int, tuple[str, ...]] = field(default_factory=dict)


class WorkerPool:
    """N receiver processes feeding `receiver`'s callbacks and counters (accepted, drops)."""

    def __init__(
        self,
        count: int,
        receiver: Receiver,
        *,
        check_order: Callable[[Message | RawReport], Message | RawReport | Rejected],
        settings: Callable[[], dict[str, Any]],
        on_event: Callable[[list[EventView]], None],
        buffer: int = RECV_BUFFER,
        spare: bool = True,
    ) -> None:
        self.count = count
        self.receiver = receiver
        self.check_order = check_order
        # what a starting worker is told: key, master, max_age, and marks (node, boot,
        # boot_ts, seq, at) so that a restarted worker takes the known nodes' beacons at once
        self.settings = settings
        self.on_event = on_event
        self.buffer = buffer  # each socket's receive buffer (bench/ingest_workers.py: more)
        self.slots: list[_Slot] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.bad_frames = 0
        self.spare = spare
        self._spare: tuple[subprocess.Popen[bytes], socket.socket, OutputRelay] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch_handle: asyncio.TimerHandle | None = None
        self._watched = time.monotonic()  # when _watch last ran

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> tuple[str, int]:
        """Bind the N sockets (OSError if the port is taken) and start the workers."""
        host, port = self.receiver.host, self.receiver.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # First a plain bind: it fails if anyone holds the port, a second director with
        # workers included (its SO_REUSEPORT sockets would otherwise share the port with
        # ours, of the same user, and split the agents' stream without a word).
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, port))
            port = probe.getsockname()[1]
        sockets: list[socket.socket] = []
        try:
            for _ in range(self.count):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                grow_receive_buffer(sock, self.buffer)
                sock.bind((host, port))
                port = sock.getsockname()[1]  # port 0: the others join the one it got
                sockets.append(sock)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        self.receiver.sock = sockets[0]  # configuration pushes go out from the agents' port
        self.receiver.port = port
        self._loop = asyncio.get_running_loop()
        self.slots = [_Slot(i, sock) for i, sock in enumerate(sockets)]
        for slot in self.slots:
            self._start(slot)
        self._watched = time.monotonic()
        self._watch_handle = self._loop.call_later(WATCH_EVERY, self._watch)
        log.info("listening for agents on udp %s:%d with %d receiver processes",
                 host, port, self.count)
        return host, port

    def close(self) -> None:
        self._closing = True
        if self._watch_handle is not None:
            self._watch_handle.cancel()
        for task in self._tasks:
            task.cancel()
        if self._spare is not None:
            self._spare[1].close()  # it sees EOF and exits
            self._spare[0].wait()
            self._spare[2].close()
            self._spare = None
        for slot in self.slots:
            self._stop(slot)
        for slot in self.slots:
            slot.udp.close()
        self.receiver.sock = None

    def set_keys(self, key: bytes, master: bytes | None) -> None:
        """New keys to every worker now (a restarted one reads them from `settings`), with
        the marks, so that their beacon checks know every node again at once. Sent without
        blocking the loop (megabytes of marks at many nodes; a worker may be blocked sending
        us a frame), after whatever was queued for that worker before."""
        command = _command(("keys", key, master, self.settings().get("marks", [])))
        for slot in self.slots:
            if slot.control is not None:
                self._send(slot, command)

    def forget(self, nodes: list[str]) -> None:
        """Nodes the engine dropped (they left long ago): every worker's beacon checks forget
        them too, so their beacons are refused as an unknown node's (`unknown_boot`), as the
        engine's own receiver does. A worker started later is told only the nodes the model
        still holds (the engine's `settings`)."""
        command = _command(("forget", nodes))
        for slot in self.slots:
            if slot.control is not None:
                self._send(slot, command)

    def status(self) -> list[dict[str, Any]]:
        """Each worker, for `ctop status`."""
        return [{
            "worker": s.index,
            "pid": s.process.pid if s.process is not None and s.process.poll() is None else 0,
            "since": s.started,
            "restarts": s.restarts,
            "datagrams": s.datagrams,
            "last_exit": s.last_exit,
        } for s in self.slots]

    def _spawn(self) -> tuple[subprocess.Popen[bytes], socket.socket, OutputRelay]:
        """A worker process that imports itself and waits for its socket and settings. Its
        stdout and stderr are a pipe we read (ctop/ingest/workerlog.py): never the terminal,
        which an embedded UI owns."""
        assert self._loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        output, into = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "ctop.ingest.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=into,
                stderr=into)
        except BaseException:
            ours.close()
            os.close(output)
            raise
        finally:
            theirs.close()
            os.close(into)
        return process, ours, OutputRelay(output, self._loop, "receiver worker (spare)")

    def _spare_up(self) -> None:
        """Keep one spare worker started: a fresh one spends ~0.2 s (1-2 s on a loaded
        2-core machine) importing before it reads, and a beaconing node is suspect after
        ~1.9 s of silence; the spare takes over a dead worker's socket at once."""
        if self._closing or (self._spare is not None and self._spare[0].poll() is None):
            return
        if self._spare is not None:
            self._spare[1].close()
            self._spare[2].close()
        try:
            self._spare = self._spawn()
        except Exception as e:
            self._spare = None
            log.error("cannot start a spare receiver worker: %s", e)

    def _start(self, slot: _Slot) -> None:
        if self._closing:
            return
        spare, self._spare = self._spare, None
        try:
            if spare is not None and spare[0].poll() is None:
                process, ours, output = spare
            else:
                if spare is not None:
                    spare[1].close()
                    spare[2].close()
                process, ours, output = self._spawn()
            output.name = f"receiver worker {slot.index}"
            # its socket first (SCM_RIGHTS, with one byte), then its settings (keys, marks:
            # megabytes at 60,000 nodes, sent without blocking the loop while it imports)
            socket.send_fds(ours, [b"U"], [slot.udp.fileno()])
            ours.setblocking(False)
            settings = _command(self.settings())
        except Exception as e:  # no process now: try again later, never give up
            log.error("cannot start receiver worker %d: %s", slot.index, e)
            self._later(slot, f"cannot start: {e}")
            return
        slot.process = process
        slot.control = ours
        slot.output = output
        slot.inbox.clear()
        slot.names = {}
        slot.started = time.time()
        slot.last_frame = time.monotonic()
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._readable, slot)
        slot.sending = None
        self._send(slot, settings)
        if self.spare:
            self._loop.call_soon(self._spare_up)

    def _send(self, slot: _Slot, data: bytes) -> None:
        """`data` to the worker's control socket in order: after the slot's previous send,
        never blocking the loop (a dead worker's socket fails quietly: _readable sees EOF)."""
        assert self._loop is not None and slot.control is not None
        control, previous, loop = slot.control, slot.sending, self._loop

        async def send() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            with contextlib.suppress(OSError):
                await loop.sock_sendall(control, data)

        task = slot.sending = loop.create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop(self, slot: _Slot) -> None:
        if slot.control is not None:
            if self._loop is not None:
                self._loop.remove_reader(slot.control.fileno())
            slot.control.close()  # the worker sees EOF and exits
            slot.control = None
        process, slot.process = slot.process, None
        if process is not None:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if slot.output is not None:
            slot.output.close()  # the process is gone: what it wrote last is in the pipe

    def _died(self, slot: _Slot, why: str) -> None:
        process = slot.process
        self._stop(slot)
        if self._closing:
            return
        code = process.returncode if process is not None else None
        how = why if code is None else (f"killed by signal {-code}" if code < 0
                                        else f"exit status {code}")
        last = slot.output.last if slot.output is not None else ""
        if last:  # a crash's traceback went to the log; its exception goes in the event
            how = f"{how}: {last}"
        if slot.last_exit == "hung":
            how = f"stuck: read nothing for {HUNG_AFTER:.0f} s with datagrams waiting; {how}"
        slot.last_exit = how
        slot.restarts += 1
        lived = time.time() - slot.started
        slot.quick_deaths = 0 if lived >= STABLE else slot.quick_deaths + 1
        slot.backoff = 0.0 if slot.quick_deaths <= 1 else \
            min(MAX_BACKOFF, 2.0 ** (slot.quick_deaths - 2))
        pid = process.pid if process is not None else 0
        message = (f"receiver worker {slot.index} (pid {pid}) died ({how}); restarting"
                   + (f" in {slot.backoff:.0f} s" if slot.backoff else ""))
        log.warning("%s", message)
        self.on_event([EventView(time.time(), "receiver", "", message)])
        self._later(slot, how)

    def _later(self, slot: _Slot, why: str) -> None:
        assert self._loop is not None
        if slot.backoff:
            self._loop.call_later(slot.backoff, self._start, slot)
        else:
            self._start(slot)

    def _watch(self) -> None:
        """Kill a worker that is stuck; its death then restarts it as any other."""
        now = time.monotonic()
        if now - self._watched > 2 * WATCH_EVERY:  # this loop did not run (stopped, busy):
            for slot in self.slots:  # it cannot tell a stuck worker from its own pause
                slot.last_frame = max(slot.last_frame, now)
        self._watched = now
        for slot in self.slots:
            process = slot.process
            if process is None or now - slot.last_frame < HUNG_AFTER:
                continue
            try:
                waiting = struct.unpack("i", fcntl.ioctl(slot.udp, termios.FIONREAD,
                                                         b"\0\0\0\0"))[0]
            except OSError:
                waiting = 0
            if waiting and process.poll() is None:
                log.warning("receiver worker %d (pid %d) read nothing for %.0f s with "
                            "datagrams waiting: killing it", slot.index, process.pid,
                            now - slot.last_frame)
                slot.last_exit = "hung"  # for _died's event
                process.kill()  # its socketpair closes: _readable restarts it
                slot.last_frame = now  # once per HUNG_AFTER, if the kill itself is slow
        if not self._closing and self._loop is not None:
            self._watch_handle = self._loop.call_later(WATCH_EVERY, self._watch)

    # -- what the workers hand over ------------------------------------------------------

    def _readable(self, slot: _Slot) -> None:
        control = slot.control
        if control is None:
            return
        try:
            data = control.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._died(slot, str(e))
            return
        if not data:
            self._died(slot, "closed its socket")
            return
        slot.inbox += data
        slot.last_frame = time.monotonic()
        try:
            frames = list(handoff.split_frames(slot.inbox))
        except ValueError as e:  # not our framing: a broken worker; a new one starts clean
            self.bad_frames += 1
            self._died(slot, f"sent a broken stream ({e})")
            return
        applied = 0
        for body in frames:
            try:
                applied += self._apply(slot, *handoff.load(body))
            except Exception:  # a frame that does not load, or a bug: never stop the engine
                self.bad_frames += 1
                log.exception("a frame from receiver worker %d failed", slot.index)
        if applied:
            self._fold(applied, drained=len(data) < READ_CHUNK)

    def _fold(self, applied: int, drained: bool) -> None:
        """The receiver's deferred work, as if the engine had read these messages itself:
        `on_busy` once per BATCH of them (report bodies queued long enough ago are folded
        in), `on_idle` once nothing more waits. The tick's fold then finds little left."""
        receiver = self.receiver
        try:
            if receiver.on_busy is not None:
                now = time.time()
                for _ in range(applied // BATCH):
                    receiver.on_busy(now)
            if drained and receiver.on_idle is not None:
                receiver.on_idle()
        except Exception:  # a bug downstream must not stop the engine
            log.exception("folding report bodies failed")

    def _apply(self, slot: _Slot, entries: list[tuple[Any, ...]],
               drops: dict[tuple[str, str], int], counts: tuple[int, int],
               keys: list[tuple[int, tuple[str, ...]]]) -> int:
        """A frame's messages into the engine; returns how many were applied."""
        receiver = self.receiver
        on_message, on_beacon = receiver.on_message, receiver.on_beacon
        check_order = self.check_order
        raw_report, beacon_of = handoff.raw_report, handoff.beacon_of
        REPORT, BEACON = handoff.REPORT, handoff.BEACON
        names = slot.names
        names.update(keys)
        read, beacons = counts
        applied = 0
        slot.datagrams += read
        receiver.accepted += beacons
        receiver.beacons += beacons
        for (reason, source), n in drops.items():
            rejected = Rejected(Reason(reason))
            for _ in range(n):
                receiver.count_drop(rejected, source)
        for e in entries:
            kind = e[0]
            if kind == BEACON:
                if on_beacon is not None:
                    try:
                        on_beacon(beacon_of(e), e[5], e[6])
                    except Exception:
                        log.exception("handling a beacon from %s failed", e[5])
                continue
            msg: RawReport | Join | Leave
            if kind == REPORT:  # its body stays packed until the model folds it in
                msg, source, now = raw_report(e, names), e[6], e[7]
            else:
                msg, source, now = e[1], e[2], e[3]
            checked = check_order(msg)
            if type(checked) is Rejected:  # a node that moved between workers, or a replay
                receiver.count_drop(checked, source)
                continue
            receiver.accepted += 1
            applied += 1
            if kind != REPORT and type(msg) is Join:
                receiver.join_addr = e[4]
            try:
                on_message(msg, source, now)
            except Exception:  # a bug downstream must not stop the engine
                log.exception("handling a message from %s failed", source)
        return applied


def _command(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return handoff.LENGTH.pack(len(body)) + body
