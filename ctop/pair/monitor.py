"""PairMonitor: this director's VRRP state and its peer's, kept current in one thread.

Sources, each optional but the first:
- keepalived's JSON dump, asked for at start and every `json_every` seconds (the full state:
  roles, priorities, VIPs, last transitions, adverts received);
- keepalived's notify FIFO: each transition the moment it happens (then a dump for the rest);
- the peer's role: from the VRRP adverts our keepalived hears (a BACKUP hearing adverts: the
  peer is MASTER; a MASTER told of a lower-priority master: the peer claims MASTER too), and
  from the peer's ctop (GET /pair) when `peer` is set. `feed_peer()` is the entry for any
  other link between the directors (ctop/nats/roles.py feeds it from NATS);
- `ipvsadm --list --daemon`: the IPVS connection-sync daemons.

`view()` is the newest PairView (immutable, any thread). Transitions are events, handed to
`on_events` (Engine.note). Nothing read from outside may end the thread: each source's
failure becomes the view's error text and the next round tries again.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import httpx

from ctop.pair.config import PairConfig
from ctop.pair.keepalived import NotifyFifo, dump_state
from ctop.pair.peer import PeerError, fetch_peer, instance_roles
from ctop.pair.syncd import SyncDaemonError, read_sync_daemons
from ctop.pair.view import MASTER, UNKNOWN, InstanceView, PairView, summary_role
from ctop.pair.vrrp import RX_LOWER, FifoLine, KeepalivedError
from ctop.snapshot import EventView

log = logging.getLogger(__name__)

STATE_WORDS = {"MASTER", "BACKUP", "FAULT", "STOP", "DELETED"}
AFTER_TRANSITION = 0.3  # seconds from a FIFO transition to the dump that completes it
SYNC_EVERY = 10.0  # seconds between reads of the sync daemons
VRRP_PEER = "vrrp adverts"


@dataclass(frozen=True, slots=True)
class PeerReport:
    roles: Mapping[str, str]  # instance -> the peer's state
    role: str  # the peer's role over all its instances
    source: str
    at: float  # Unix seconds
    ttl: float  # seconds it stays believed


class PairMonitor:
    def __init__(self, cfg: PairConfig, on_events: Callable[[Sequence[EventView]], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.on_events = on_events
        self.clock = clock
        self._lock = threading.Lock()
        self._instances: dict[str, InstanceView] = {}
        self._error = ""  # why the last dump failed
        self._fifo_error = ""  # why the notify FIFO cannot be read (then: dumps only)
        self._read_at = 0.0
        self._adverts: dict[str, int] = {}  # instance -> adverts received at the last dump
        self._rx_lower: dict[str, float] = {}  # instance -> when a lower-prio master was heard
        self._reports: dict[str, PeerReport] = {}  # by kind: "ctop" / "fed", "vrrp"
        self._peer_shown: dict[str, str] = {}  # instance -> peer role last told as an event
        self._sync = PairView(  # only its sync fields are used
            sync_error="" if cfg.sync_daemon else "not read ([pair] sync_daemon = false)")
        self._view = PairView()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fifo: NotifyFifo | None = None
        self._next_dump = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.cfg.notify_fifo:
            try:
                self._fifo = NotifyFifo(self.cfg.notify_fifo)
                # lines keepalived wrote before we read (its FIFO outlives readers) are old
                # news: the first dump says what is true now
                self._fifo.lines()
            except (OSError, KeepalivedError) as e:
                self._fifo_error = f"notify_fifo {self.cfg.notify_fifo}: {e}"
        self._threads = [threading.Thread(target=self._run, name="ctop-pair", daemon=True)]
        if self.cfg.peer:  # its own thread: a peer that does not answer delays nothing here
            self._threads.append(threading.Thread(target=self._run_peer, name="ctop-pair-peer",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._fifo is not None:
            self._fifo.close()

    def view(self) -> PairView:
        return self._view

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_sync = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            for step, due in ((self._read_fifo, True),
                              (self._dump, now >= self._next_dump),
                              (self._read_sync, self.cfg.sync_daemon and now >= next_sync)):
                if due:
                    self._guarded(step)
            if now >= next_sync:
                next_sync = now + SYNC_EVERY
            self._guarded(self._publish)
            # the view is republished at least 4 times a second: the peer's role and the
            # ages of what was heard change without a line on the FIFO
            wait = min(max(0.0, self._next_dump - time.monotonic()), 0.25)
            if self._fifo is not None:
                with contextlib.suppress(OSError, ValueError):
                    select.select([self._fifo.fd], [], [], wait)
            else:
                self._stop.wait(wait)

    def _run_peer(self) -> None:
        with httpx.Client(timeout=min(1.0, self.cfg.peer_every)) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                self._guarded(lambda: self._ask_peer(client))
                self._stop.wait(max(0.0, self.cfg.peer_every - (time.monotonic() - started)))

    @staticmethod
    def _guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # a bug must not end pair awareness: log, go on
            log.exception("pair monitor: %s failed", getattr(step, "__name__", "a step"))

    def _read_fifo(self) -> None:
        if self._fifo is None:
            return
        lines = self._fifo.lines()
        if lines:
            self._on_lines(lines)

    def _on_lines(self, lines: Sequence[FifoLine]) -> None:
        events = []
        now = self.clock()
        for line in lines:
            if line.kind != "INSTANCE":
                continue
            if line.state == RX_LOWER:
                self._rx_lower[line.name] = now
                continue
            with self._lock:
                old = self._instances.get(line.name)
                if line.state not in STATE_WORDS:  # priority changes
                    if old is not None:
                        self._instances[line.name] = replace(old, priority=line.priority)
                    continue
                base = old or InstanceView(line.name, line.state)
                self._instances[line.name] = replace(base, state=line.state,
                                                     priority=line.priority, last_transition=now)
            if old is None or old.state != line.state:
                events.append(self._transition(now, line.name, old.state if old else "",
                                               line.state, line.priority))
        if events:
            self.on_events(events)
        self._next_dump = time.monotonic() + AFTER_TRANSITION  # the VIPs and the rest

    @staticmethod
    def _transition(ts: float, name: str, old: str, new: str, prio: int) -> EventView:
        was = f"{old} → " if old else ""
        return EventView(ts, "pair", "", f"VRRP {name}: this director {was}{new} (prio {prio})")

    def _dump(self) -> None:
        self._next_dump = time.monotonic() + self.cfg.json_every
        now = self.clock()
        try:
            found = dump_state(self.cfg.keepalived_pid_file, self.cfg.json_file,
                               self._read_fifo)
        except KeepalivedError as e:
            self._set_error(now, str(e))
            with self._lock:
                # a stopped keepalived has removed its VIPs: nothing is held
                self._instances = {n: replace(i, state="STOP", vips_held=())
                                   for n, i in self._instances.items()}
            return
        events = []
        with self._lock:
            for inst in found:
                old = self._instances.get(inst.name)
                if old is not None and old.state != inst.state:  # the FIFO missed it (or none)
                    events.append(self._transition(now, inst.name, old.state, inst.state,
                                                   inst.priority))
                elif old is None:
                    events.append(self._transition(now, inst.name, "", inst.state,
                                                   inst.priority))
            self._instances = {i.name: i for i in found}
            self._read_at = now
        self._set_error(now, "")
        self._infer_peer(found, now)
        if events:
            self.on_events(events)

    def _set_error(self, now: float, error: str) -> None:
        if error != self._error:
            text = f"keepalived: {error}" if error else "keepalived: state read again"
            self.on_events([EventView(now, "pair", "", text)])
        self._error = error

    def _infer_peer(self, found: Sequence[InstanceView], now: float) -> None:
        """What the adverts say: a BACKUP hearing a master's adverts has a MASTER peer."""
        roles = {}
        for inst in found:
            before = self._adverts.get(inst.name)
            self._adverts[inst.name] = inst.adverts_received
            # a BACKUP stays one only while a master's adverts arrive (else it takes over
            # within 3 advert intervals); the first dump has no count to compare with
            hearing = inst.adverts_received > before if before is not None \
                else inst.master_priority > 0
            heard_master = now - self._rx_lower.get(inst.name, 0) < 3.0
            if (inst.state == "BACKUP" and hearing) or (inst.state == MASTER and heard_master):
                roles[inst.name] = MASTER
        if roles:
            self._reports["vrrp"] = PeerReport(roles, summary_role(list(roles.values())),
                                               VRRP_PEER, now, 2 * self.cfg.json_every + 1)

    def _ask_peer(self, client: httpx.Client) -> None:
        try:
            data = fetch_peer(client, self.cfg.peer)
        except PeerError as e:
            log.debug("%s", e)
            return
        roles = instance_roles(data)
        self.feed_peer(roles, f"peer ctop {self.cfg.peer}", role=str(data.get("role", "")),
                       ttl=3 * self.cfg.peer_every + 1, kind="ctop")

    def _read_sync(self) -> None:
        try:
            daemons, error = read_sync_daemons(self.cfg.ipvsadm), ""
        except SyncDaemonError as e:
            daemons, error = (), str(e)
        self._sync = PairView(sync_daemons=daemons, sync_error=error)

    # -- the peer --------------------------------------------------------------------------

    def feed_peer(self, roles: Mapping[str, str], source: str, *, role: str = "",
                  at: float | None = None, ttl: float = 5.0, kind: str = "fed") -> None:
        """The peer's instance roles from any link (peer ctop, NATS): believed for `ttl`
        seconds from `at`, above what the VRRP adverts suggest. Any thread."""
        at = self.clock() if at is None else at
        self._reports[kind] = PeerReport(dict(roles), role or summary_role(list(roles.values())),
                                         source, at, ttl)

    def _peer(self, now: float) -> PeerReport | None:
        for kind in ("fed", "ctop", "vrrp"):
            report = self._reports.get(kind)
            if report is not None and now - report.at <= report.ttl:
                return report
        return None

    # -- the view --------------------------------------------------------------------------

    def _publish(self) -> None:
        now = self.clock()
        with self._lock:
            instances = tuple(self._instances.values())
        report = self._peer(now)
        peer: dict[str, str] = dict(report.roles) if report else {}
        if report is not None:  # instances the peer's report leaves out: its overall role
            for inst in instances:
                peer.setdefault(inst.name, report.role if report.source != VRRP_PEER
                                else UNKNOWN)
        self._peer_events(now, peer, report)
        role = summary_role([i.state for i in instances]) if instances else (
            "STOP" if self._error else UNKNOWN)
        self._view = PairView(
            role=role,
            peer_role=report.role if report else UNKNOWN,
            peer_source=report.source if report else "",
            peer_seen=report.at if report else 0.0,
            instances=instances,
            peer_instances=tuple(sorted(peer.items())),
            sync_daemons=self._sync.sync_daemons,
            sync_error=self._sync.sync_error,
            error="; ".join(e for e in (self._error, self._fifo_error) if e),
            read_at=self._read_at,
        )

    def _peer_events(self, now: float, peer: Mapping[str, str],
                     report: PeerReport | None) -> None:
        events = []
        for name in sorted(set(peer) | set(self._peer_shown)):
            new = peer.get(name, UNKNOWN)
            old = self._peer_shown.get(name)
            if old is not None and new != old:
                where = f" ({report.source})" if report else ""
                events.append(EventView(now, "pair", "",
                                        f"VRRP {name}: peer {old} → {new}{where}"))
            self._peer_shown[name] = new
        if events:
            self.on_events(events)
