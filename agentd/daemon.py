"""The agent's main loop: join, a report every interval with liveness beacons between,
re-announce, reload, leave (sent several times)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agentd import __version__, encoder, facts
from agentd.beacon import encode_beacon
from agentd.collect import Collector
from agentd.config import Config, ConfigError
from agentd.protocol import ConfigVersion, Header, Join, Leave, Message, Report
from agentd.push import is_push
from agentd.pushed import PushedConfig, merged
from agentd.sender import Sender
from agentd.services import Services, describe_changes
from agentd.slowfacts import SlowFacts
from agentd.watch import MAX_WATCHES, WatchSpec, merged_watches

log = logging.getLogger("agentd")

# Keys a SIGHUP does not apply (they are wired into sockets, clocks and the boot identity).
LEAVE_COPIES = 3  # a leave lost on the way would make a clean stop look like a death
LEAVE_SPACING = 0.1  # seconds between the copies: a short burst of loss does not take all


def beacon_slots(interval: float, beacon_interval: float) -> tuple[tuple[float, ...], float]:
    """Offsets after each report at which a beacon goes out, and the longest gap between two
    datagrams that gives (announced in every beacon). 1 s reports, 0.25 s beacons: beacons at
    0.25, 0.5 and 0.75 s, gap 0.25 s. No beacon closer than half a spacing to the next report."""
    if beacon_interval <= 0 or beacon_interval >= interval:
        return (), interval
    slots = []
    m = 1
    while m * beacon_interval <= interval - beacon_interval / 2:
        slots.append(m * beacon_interval)
        m += 1
    if not slots:  # e.g. 0.3 s reports, 0.25 s beacons: no room for one between reports
        return (), interval
    return tuple(slots), max(beacon_interval, interval - slots[-1])


# Everything but the probes and the watch list is fixed for the life of a boot (joins announce
# it): SIGHUP logs it.
_RESTART_KEYS = ("directors", "key_file", "node_id", "group", "interval", "join_interval",
                 "beacon_interval", "addresses", "push_key_file", "push_state_file",
                 "allow_remote_commands")


class Agent:
    """One agent boot: a boot id and a strictly increasing sequence number over all messages."""

    def __init__(
        self,
        cfg: Config,
        key: bytes,
        reload: Callable[[], Config] | None = None,
        push_key: bytes | None = None,
    ) -> None:
        self.cfg = cfg
        self.key = key
        self._reload_config = reload
        self.boot = encoder.new_boot_id()
        self.seq = 0
        self.local_probes = cfg.probes  # the node's own file's; pushed ones are added to them
        self.local_watch = cfg.watch  # likewise
        self.pushed = PushedConfig(push_key, cfg.node_id, cfg.group, cfg.push_state_file,
                                   cfg.allow_remote_commands)
        self.pushed.restore()
        # The saved push's watch list applies from the first scan, as its probes do.
        self.watch: tuple[WatchSpec, ...] = ()
        self.watch = self._merged_watch()
        self.collector = Collector(cfg.interval, watch=self.watch)
        self.cfg = cfg = replace(cfg, probes=merged(cfg.probes, self.pushed.specs))
        self.services = Services(cfg.probes)
        self.sender = Sender(cfg.directors, on_datagram=self._on_datagram)
        self.slow = SlowFacts(cfg.join_interval)
        self._stopping: str | None = None
        self._wake: asyncio.Future[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._last_crash_log = float("-inf")
        self._join_now = False

    # -- messages -------------------------------------------------------------------------

    def _header(self) -> Header:
        self.seq += 1
        return Header(self.cfg.node_id, self.boot, self.seq, time.time())

    def join(self) -> Join:
        return Join(
            self._header(),
            hostname=socket.gethostname(),
            addresses=self.cfg.addresses or facts.addresses(),
            cores=facts.cores(),
            mem_total=facts.mem_total(),
            version=__version__,
            interval=self.cfg.interval,
            group=self.cfg.group,
            probes=self.services.described(),
            config=ConfigVersion(*self.pushed.version, sum(self.pushed.refused.values())),
        )

    def report(self) -> Report:
        metrics = self.collector.sample()
        return Report(
            self._header(), self.cfg.interval, self.cfg.group, metrics, self.services.statuses()
        )

    def thin_report(self) -> Report:
        """A report for the wire: the slow facts only when they changed (agentd/slowfacts.py)."""
        return self.slow.thin_report(self.report(), time.monotonic())

    def beacon(self, gap: float) -> None:
        self.seq += 1
        self.sender.send(encode_beacon(self.key, self.boot, self.seq, gap))

    def _send(self, msg: Message) -> None:
        data = encoder.encode(self.key, msg)
        self.sender.send(data)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent %s seq=%d (%d bytes)", type(msg).__name__, msg.header.seq, len(data))

    def _tick(self, build: Callable[[], Message]) -> None:
        """Build and send one message. A bug in one sample must not stop the agent: log it
        (with its traceback, at most once a minute) and try again next interval."""
        try:
            self._send(build())
        except Exception:
            now = time.monotonic()
            if now - self._last_crash_log >= 60.0:
                self._last_crash_log = now
                log.exception("could not build or send a %s; skipping it", build.__name__)

    # -- signals --------------------------------------------------------------------------

    def stop(self, why: str) -> None:
        if self._stopping is None:
            log.info("%s: leaving", why)
            self._stopping = why
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def reload(self) -> None:
        """SIGHUP: re-read the config and apply its probe list; keep the old one on errors."""
        if self._reload_config is None:
            log.warning("SIGHUP: no config file to reload")
            return
        try:
            new = self._reload_config()
        except ConfigError as e:
            log.error("SIGHUP: config not reloaded, keeping the running one: %s", e)
            return
        ignored = [k for k in _RESTART_KEYS if getattr(new, k) != getattr(self.cfg, k)]
        if ignored:
            log.warning("SIGHUP: %s changed; restart agentd to apply", ", ".join(ignored))
        self.local_probes, self.local_watch = new.probes, new.watch
        self._apply_watch(self._merged_watch(), "SIGHUP")
        self._apply_probes(merged(new.probes, self.pushed.specs), "SIGHUP")

    def _merged_watch(self) -> tuple[WatchSpec, ...]:
        """The node's own watches, then the pushed ones it has no entry for, as one report
        carries them (MAX_WATCHES): a pushed watch left out is said in the log."""
        watch = merged_watches(self.local_watch, self.pushed.watch)
        kept = {s.label for s in watch} | {s.label for s in self.local_watch}
        dropped = [s.label for s in self.pushed.watch if s.label not in kept]
        if dropped:
            log.warning("pushed watch(es) %s not applied: at most %d watches with the node's "
                        "own", ", ".join(dropped), MAX_WATCHES)
        return watch

    def _apply_watch(self, watch: tuple[WatchSpec, ...], why: str) -> None:
        """Replace the watched processes between two scans (the agent has one thread)."""
        if watch == self.watch:
            return
        log.info("%s: watch list now: %s", why, ", ".join(s.label for s in watch) or "none")
        self.watch = watch
        self.collector.set_watch(watch)

    def _apply_probes(self, probes: tuple[Any, ...], why: str) -> asyncio.Task[None]:
        log.info("%s: probes reloaded: %s", why, describe_changes(self.cfg.probes, probes))
        self.cfg = replace(self.cfg, probes=probes)
        self._join_now = True  # the director names probe results from the join's probe list
        task = asyncio.get_running_loop().create_task(self.services.replace(probes))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)
        return task

    def _on_datagram(self, data: bytes) -> None:
        """A datagram from a director: a configuration push, applied like a SIGHUP, and
        announced by a join at once so the director sees the new version."""
        if not is_push(data):
            return
        if self.pushed.accept(data):
            serial, digest = self.pushed.version
            why = f"pushed configuration {digest} (serial {serial})"
            self._apply_watch(self._merged_watch(), why)
            task = self._apply_probes(merged(self.local_probes, self.pushed.specs), why)
            # Announce the new version once the probes run and the watches are set (only
            # then: a flood of forged pushes makes the agent send nothing).
            task.add_done_callback(lambda _: self._tick(self.join))

    # -- the loop -------------------------------------------------------------------------

    async def _sleep_until(self, when: float) -> None:
        """Sleep until loop time `when`, or until stop() wakes us."""
        loop = asyncio.get_running_loop()
        self._wake = fut = loop.create_future()
        handle = loop.call_at(when, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
            self._wake = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, action in (
            (signal.SIGTERM, lambda: self.stop("SIGTERM")),
            (signal.SIGINT, lambda: self.stop("SIGINT")),
            (signal.SIGHUP, self.reload),
        ):
            loop.add_signal_handler(sig, action)
        await self.sender.resolve()
        await self.services.start()
        self.collector.sample()  # prime the counters: the first report has real rates
        self._send(self.join())
        log.info(
            "node %s: reporting every %g s, %d probe(s)",
            self.cfg.node_id,
            self.cfg.interval,
            len(self.cfg.probes),
        )
        interval = self.cfg.interval
        slots, gap = beacon_slots(interval, self.cfg.beacon_interval)
        start = loop.time()
        next_join = start + self.cfg.join_interval
        tick = 0
        try:
            while self._stopping is None:
                # Drift-free: tick k is due at start + k * interval on the monotonic clock. After
                # a stall (suspend, overload) missed ticks are skipped, not sent in a burst.
                tick += 1
                due = start + tick * interval
                now = loop.time()
                if due < now - interval:
                    tick = int((now - start) / interval) + 1
                    due = start + tick * interval
                # Beacons fill the gap after the previous report; a slot already past (after a
                # stall) is skipped.
                for offset in slots:
                    when = due - interval + offset
                    if when <= loop.time():
                        continue
                    await self._sleep_until(when)
                    if self._stopping is not None:
                        break
                    self.beacon(gap)
                if self._stopping is not None:
                    break
                await self._sleep_until(due)
                if self._stopping is not None:
                    break
                if loop.time() >= next_join or self._join_now:
                    if self.sender.unresolved:
                        await self.sender.resolve()
                    if not self._join_now:
                        next_join += self.cfg.join_interval
                    self._join_now = False
                    self._tick(self.join)
                    log.debug("collector costs (CPU s, period s): %s", self.collector.costs())
                self._tick(self.thin_report)
            for copy in range(LEAVE_COPIES):
                if copy:
                    await asyncio.sleep(LEAVE_SPACING)
                self._send(Leave(self._header(), self._stopping or "stopping"))
        finally:
            await self.services.stop()
            self.sender.close()
        return 0


async def once(cfg: Config, wait_for_probes: bool = True) -> dict[str, Any]:
    """One report after one interval (so rates are real), as a JSON-ready dict. No key needed.

    With probes configured it waits (up to their longest timeout) for every probe's first
    result, so the output shows real statuses rather than "unknown".
    """
    agent = Agent(cfg, key=b"")
    await agent.services.start()
    agent.collector.sample()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.interval
    if wait_for_probes and cfg.probes:
        deadline = max(deadline, loop.time() + max(s.timeout for s in cfg.probes) + 0.5)
    await asyncio.sleep(cfg.interval)
    while agent.services.pending() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    report = agent.report()
    await agent.services.stop()
    return encoder.to_plain(report)
