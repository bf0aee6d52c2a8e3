"""A receiver worker process: `python -m ctop.ingest.worker CONTROL_FD`.

Started by the engine (ctop/ingest/workers.py) with `[receive] workers` > 1, with one end of
a socketpair. Through it, once imported, it receives one of the agents' UDP sockets (bound by
the engine with SO_REUSEPORT: the kernel hashes each source address and port to one socket,
so a node's datagrams reach one worker) and then its settings, keys included (never in argv
or the environment, which other users can read). It then sends the engine a frame of
verified, decoded messages every `FLUSH_EVERY` seconds (ctop/ingest/handoff.py), with the
drops by reason and source since the last frame. It exits when the socketpair closes: the
engine is gone or wants a new worker.

The worker checks order per node too (cheap, and it stops replays early), but the engine
judges order again with its own `Verifier`, whose marks persist: a node whose source port
changes moves to another worker that does not know it, and a restarted worker knows nobody.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import pickle
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

from agentd.beacon import BEACON_TYPE
from agentd.protocol import MAX_DATAGRAM, Header, RawReport, Rejected
from ctop.ingest import handoff
from ctop.ingest.beacons import BeaconVerifier
from ctop.ingest.decode import decode_report
from ctop.ingest.verifier import Mark, Verifier

log = logging.getLogger("ctop.ingest.worker")

READ_BATCH = 512  # datagrams per wake-up before looking at the clock and the control socket
GC_EVERY = 60.0  # seconds between the worker's full collections (it runs without the young ones)


class Worker:
    def __init__(self, udp: socket.socket, control: socket.socket, settings: dict[str, Any]):
        self.udp = udp
        self.control = control
        self.max_age = float(settings["max_age"])
        self.set_keys(settings["key"], settings["master"])
        self.know(settings.get("marks", ()))
        self.packer = handoff.Packer()
        self.entries: list[tuple[Any, ...]] = []
        self.drops: Counter[tuple[str, str]] = Counter()
        self.read = 0  # datagrams read since the last frame
        self.beacons = 0

    def set_keys(self, key: bytes, master: bytes | None) -> None:
        """New keys (the engine re-read its key files): order state starts afresh, which
        only costs the early replay check; the engine's check stands."""
        self.verifier = Verifier(key, max_age=self.max_age, max_skew=self.max_age,
                                 master=master)
        self.beacon_verifier = BeaconVerifier(key, self.max_age,
                                              key_for=self.verifier.key_for)

    def know(self, marks: list[tuple[str, int, float, int, float]]) -> None:
        """The nodes the engine knows, as (node, boot, boot_ts, seq, at): a restarted worker
        refuses their replays early and takes their beacons without waiting for a report
        (beacons come 4x as often: a node would look silent for up to an interval)."""
        self.verifier.restore([Mark(*m) for m in marks])
        note = self.beacon_verifier.note
        for node, boot, _, seq, at in marks:
            note(Header(node, boot, seq, at), at)

    def run(self, inbox: bytearray) -> None:
        """Until the engine closes the socketpair. `inbox`: what came after the settings."""
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.control, selectors.EVENT_READ, "control")
        self.commands(inbox)
        next_flush = time.monotonic() + handoff.FLUSH_EVERY
        next_gc = time.monotonic() + GC_EVERY
        while True:
            wait = max(0.0, next_flush - time.monotonic()) if self._pending() else None
            # the engine's commands first: a node it forgot is forgotten before the
            # datagrams that arrived meanwhile are judged
            for key, _ in sorted(sel.select(wait), key=lambda ready: ready[0].data != "control"):
                if key.data == "udp":
                    self.drain()
                elif not self.control_input(inbox):
                    return
            if self._pending() and (time.monotonic() >= next_flush
                                    or len(self.entries) >= handoff.FLUSH_ENTRIES):
                self.flush()
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + handoff.FLUSH_EVERY
                if next_flush >= next_gc:
                    next_gc = next_flush + GC_EVERY
                    gc.collect()

    def _pending(self) -> bool:
        return bool(self.entries or self.drops or self.read)

    def control_input(self, inbox: bytearray) -> bool:
        """Messages from the engine; False when it closed the socketpair."""
        data = self.control.recv(1 << 16)
        if not data:
            return False
        inbox += data
        self.commands(inbox)
        return True

    def commands(self, inbox: bytearray) -> None:
        """Each whole command in `inbox`."""
        for body in handoff.split_frames(inbox):
            command = pickle.loads(body)
            if command[0] == "keys":
                self.set_keys(command[1], command[2])
                self.know(command[3])
            elif command[0] == "forget":  # nodes the engine dropped: unknown again
                for node in command[1]:
                    self.beacon_verifier.forget(node)

    def drain(self) -> None:
        recv = self.udp.recvfrom
        verify = self.verifier.verify_deferred
        verify_beacon = self.beacon_verifier.verify
        note = self.beacon_verifier.note
        entries = self.entries
        append = entries.append
        report_entry = self.packer.report_entry
        now = time.time()
        read = 0
        try:
            for _ in range(READ_BATCH):
                try:
                    data, addr = recv(MAX_DATAGRAM + 1)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:  # ICMP errors surfacing on the socket: never fatal
                    log.debug("recvfrom: %s", e)
                    return
                read += 1
                source = addr[0]
                if len(data) > 2 and data[2] == BEACON_TYPE:
                    beacon = verify_beacon(data, now)
                    if type(beacon) is Rejected:
                        self.drops[(str(beacon.reason), source)] += 1
                    else:
                        self.beacons += 1
                        append(handoff.beacon_entry(beacon, source, now))  # type: ignore[arg-type]
                    continue
                result = verify(data)
                if type(result) is Rejected:
                    self.drops[(str(result.reason), source)] += 1
                    continue
                note(result.header, now)
                if type(result) is RawReport:
                    report = decode_report(result)
                    if type(report) is Rejected:
                        self.drops[(str(report.reason), source)] += 1
                        continue
                    append(report_entry(report, source, now))  # type: ignore[arg-type]
                else:
                    append(handoff.other_entry(result, source, now, addr))  # type: ignore[arg-type]
        finally:
            self.read += read

    def flush(self) -> None:
        data = handoff.frame(self.entries, dict(self.drops), (self.read, self.beacons),
                             self.packer.taken())
        self.entries = []
        self.drops = Counter()
        self.read = self.beacons = 0
        self.control.sendall(data)  # blocks while the engine is behind: the UDP buffer waits


def read_settings(control: socket.socket) -> tuple[dict[str, Any], bytearray]:
    """The settings, and what came after them in the same reads (commands the engine sent
    meanwhile: a key rotation, nodes to forget), for the worker to take next."""
    inbox = bytearray()
    while True:
        data = control.recv(1 << 16)
        if not data:
            raise SystemExit(0)  # the engine went away before we started
        inbox += data
        for body in handoff.split_frames(inbox):
            return pickle.loads(body), inbox


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the engine decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    control = socket.socket(fileno=int(argv[0]))
    control.setblocking(True)
    # A spare waits here, imported, until the engine gives it a dead worker's socket.
    marker, fds, _, _ = socket.recv_fds(control, 1, 1)
    if not marker or not fds:
        return 0  # the engine closed: no socket for us
    udp = socket.socket(fileno=fds[0])
    udp.setblocking(False)
    settings, inbox = read_settings(control)
    # Nothing a worker keeps forms cycles (decoded reports, the pending frame, the order
    # state), and reference counting frees them: young collections over the ~40 containers
    # per report cost it ~30 % (bench/ingest_workers.py). A full pass now and then is the
    # safety net.
    gc.disable()
    # BrokenPipe: the engine closed our socketpair: it is stopping or replacing us
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        Worker(udp, control, settings).run(inbox)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
