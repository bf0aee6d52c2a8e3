"""The agent's half of the configuration push: check a pushed datagram, keep the newest one
on disk (so a replay of an older one is refused after a restart too), and say which probes
to run and which processes to watch. The daemon applies both live (agentd/daemon.py)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from agentd.push import Push, PushRefused, decode_push
from agentd.watch import WatchSpec, WatchSpecError, parse_watches

log = logging.getLogger("agentd")


class PushedConfig:
    """The configuration the director pushed to this node, and what was refused."""

    def __init__(self, key: bytes | None, node: str, group: str, state_file: str,
                 allow_commands: bool) -> None:
        self.key = key  # None: no push_key_file, every push is refused (`no_key`)
        self.node, self.group = node, group
        self.state_file = Path(state_file) if state_file else None
        self.allow_commands = allow_commands
        self.current: Push | None = None
        self.specs: tuple[Any, ...] = ()  # the pushed probes, parsed
        self.watch: tuple[WatchSpec, ...] = ()  # the pushed watch list, parsed
        self.refused: Counter[str] = Counter()

    @property
    def version(self) -> tuple[int, str]:
        return (self.current.serial, self.current.digest) if self.current else (0, "")

    def restore(self) -> None:
        """Load the last accepted push (checked again: a tampered file is not applied)."""
        if self.state_file is None or self.key is None or not self.state_file.exists():
            return
        try:
            push = decode_push(self.key, self.state_file.read_bytes())
            self._check(push)
            specs, watch = self._parse(push), self._parse_watch(push)
        except (OSError, PushRefused) as e:
            log.warning("pushed configuration in %s not restored: %s", self.state_file, e)
            return
        self.current, self.specs, self.watch = push, specs, watch
        log.info("restored pushed configuration %s (serial %d)", push.digest, push.serial)

    def accept(self, data: bytes) -> bool:
        """True if `data` is a new configuration to apply; refusals are counted and logged."""
        try:
            if self.key is None:
                raise PushRefused("no_key", "push_key_file is not set")
            push = decode_push(self.key, data)
            self._check(push)
            if self.current is not None and push.digest == self.current.digest:
                return False  # already running it (a second director, or a resend)
            if self.current is not None and push.serial <= self.current.serial:
                raise PushRefused("replay", f"serial {push.serial} is not after the running "
                                  f"{self.current.serial}")
            specs, watch = self._parse(push), self._parse_watch(push)
        except PushRefused as e:
            self.refused[e.reason] += 1
            log.warning("configuration push refused (%s)", e)
            return False
        self._persist(data)
        self.current, self.specs, self.watch = push, specs, watch
        return True

    def _check(self, push: Push) -> None:
        if push.node != self.node or push.group != self.group:
            raise PushRefused("wrong_node", f"for {push.node!r} in group {push.group!r}")

    def _parse(self, push: Push) -> tuple[Any, ...]:
        if not push.probes:
            return ()
        from probes.spec import ProbeSpecError, parse

        try:
            specs = tuple(parse(p) for p in push.probes)
        except ProbeSpecError as e:
            raise PushRefused("bad_probe", str(e)) from None
        commands = [s.name for s in specs if s.type == "command"]
        if commands and not self.allow_commands:
            # No remote code execution unless this node's own file allows it.
            raise PushRefused("command_not_allowed",
                              f"command probe(s) {', '.join(commands)}; set "
                              f"allow_remote_commands = true in agentd.toml to run them")
        return specs

    @staticmethod
    def _parse_watch(push: Push) -> tuple[WatchSpec, ...]:
        try:
            return parse_watches(list(push.watch))
        except WatchSpecError as e:
            raise PushRefused("bad_watch", str(e)) from None

    def _persist(self, data: bytes) -> None:
        if self.state_file is None:
            return
        try:
            tmp = self.state_file.with_suffix(".tmp")
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self.state_file)
        except OSError as e:  # applied anyway; after a restart the director pushes it again
            log.warning("pushed configuration not saved to %s: %s", self.state_file, e)


def merged(local: tuple[Any, ...], pushed: tuple[Any, ...]) -> tuple[Any, ...]:
    """The node's own probes, then the pushed ones; a pushed probe named like a local one is
    left out (the node's file wins)."""
    names = {s.name for s in local}
    return local + tuple(s for s in pushed if s.name not in names)
