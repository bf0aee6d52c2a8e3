"""The director's half of the configuration push (agentd/push.py): when a node's join says it
runs an older configuration than its group's, send it the group's, signed with the node's push
key, to the address and port the join came from. Joins come every `join_interval` (10 s), so
a node that lost a push gets it again then; nothing else triggers a send."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentd.protocol import Join
from agentd.push import Push, encode_push, push_key
from ctop.groups import GroupConfig

log = logging.getLogger(__name__)


@dataclass
class NodeConfigState:
    """What the director knows of one node's configuration (for `ctop status`, the UI)."""

    group: str
    running: str  # the content hash the node runs ("" none pushed; None-like "-" old agent)
    serial: int
    refused: int  # pushes the node refused, as its join counts them
    pushes: int = 0  # pushes this director sent it
    current: bool = True


class GroupPusher:
    def __init__(self, groups: tuple[GroupConfig, ...], master: bytes | None,
                 sock: Callable[[], socket.socket | None], clock=time.time) -> None:
        self.groups = {g.name: g for g in groups}
        self.master = master  # None: no push_master_key_file, nothing is pushed
        self._sock = sock
        self._clock = clock
        # Serial of each group's current content: a fresh, larger number than anything a node
        # has seen (agents keep only larger ones), fixed for this director's life.
        self._serials: dict[str, int] = {}
        self.nodes: dict[str, NodeConfigState] = {}
        self.sent = 0
        self.errors = 0

    def serial(self, group: str, seen: int = 0) -> int:
        s = self._serials.get(group, 0)
        if s <= seen:
            s = self._serials[group] = max(int(self._clock() * 1000), seen + 1)
        return s

    def on_join(self, join: Join, addr: tuple[str, int] | None) -> None:
        node, cv = join.header.node, join.config
        group = self.groups.get(join.group)
        if cv is None:  # an agent from before pushes: shown, never sent to
            self.nodes[node] = NodeConfigState(join.group, "-", 0, 0,
                                               current=group is None)
            return
        state = self.nodes.get(node)
        pushes = state.pushes if state is not None and state.group == join.group else 0
        current = group is None or cv.digest == group.version
        self.nodes[node] = state = NodeConfigState(join.group, cv.digest, cv.serial, cv.refused,
                                                   pushes, current)
        if current or group is None or self.master is None or addr is None:
            return
        sock = self._sock()
        if sock is None:
            return
        push = Push(node, group.name, self.serial(group.name, cv.serial), group.version,
                    self._clock(), group.probes, group.watch)
        try:
            sock.sendto(encode_push(push_key(self.master, node), push), addr)
        except (OSError, ValueError) as e:
            self.errors += 1
            log.warning("configuration push to %s (%s) failed: %s", node, addr[0], e)
            return
        state.pushes += 1
        self.sent += 1

    def note(self, node: str) -> str:
        """The node's configuration in a few words, for the UI ("" = nothing to say)."""
        s = self.nodes.get(node)
        if s is None or (s.current and s.running in ("", "-")):
            return ""
        running = "old agent" if s.running == "-" else s.running or "none"
        return f"{running} {'current' if s.current else 'NOT CURRENT'}"

    def forget(self, node: str) -> None:
        self.nodes.pop(node, None)


def groups_status(pusher: GroupPusher) -> dict[str, Any]:
    """What `ctop groups` and `ctop status` show: every group (configured or only named by
    its nodes' joins), its version and nodes, and each node's running version."""
    names = sorted(set(pusher.groups) | {s.group for s in pusher.nodes.values()})
    groups = []
    for name in names:
        g = pusher.groups.get(name)
        members = sorted(n for n, s in pusher.nodes.items() if s.group == name)
        groups.append({
            "name": name,
            "configured": g is not None,
            "version": g.version if g else "",
            "probes": list(g.probe_names) if g else [],
            "watch": list(g.watch) if g else [],
            "nodes": members,
            "current": sum(pusher.nodes[n].current for n in members),
        })
    nodes = {n: {"group": s.group, "running": s.running, "serial": s.serial,
                 "current": s.current, "refused": s.refused, "pushes": s.pushes}
             for n, s in sorted(pusher.nodes.items())}
    return {"push": pusher.master is not None, "sent": pusher.sent, "errors": pusher.errors,
            "groups": groups, "nodes": nodes}
