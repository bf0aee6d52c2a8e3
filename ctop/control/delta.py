"""What an attached UI polls since wire 2 (`ui2 {"have": [ts, tick, content], "node": ID}`):
only what changed since the snapshot the UI holds.

The daemon (DeltaPacker) remembers, for the last few snapshots it served, which nodes' rows
changed in each (a row is made again only for a node whose view is a new object); a UI holding
one of them gets the rows that changed since, every
node's last-seen time as one array of doubles (it moves every report, idle or not: packed
apart so that it alone never makes a row "changed"), the node order when it changed, the
groups, alerts, events and LB view each only when it changed (a big LB view is most of an idle
answer), and the rest (totals, counters: small). A UI holding nothing
or a version the daemon has forgotten gets every row: a full snapshot.

Rows go as separate msgpack frames of CHUNK rows: the UI decodes them one at a time and lets
its event loop run in between (a 10,000-node full snapshot in one `unpackb` would hold the GIL
for 40-60 ms).

Versions: an older daemon answers `ui2` with "unknown request" and the UI falls back to the
compact snapshot of `ui` (ctop.tui.remote); an older UI keeps asking `ui`, which is served
as before. An answer whose "wire" is not WIRE is refused (DeltaError), never guessed at.
"""

from __future__ import annotations

import json
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, replace
from itertools import compress
from operator import is_not
from typing import Any

import msgpack

from ctop.codec import compact_rows, from_plain, nodes_from_rows, pack_default, to_plain
from ctop.snapshot import EMPTY, NodeView, ServiceView, Snapshot

WIRE = 2
CHUNK = 500  # rows per msgpack frame (~2-3 ms of decoding each)
# the parts of a snapshot but its nodes that may be large (a big LB view: thousands of real
# servers with their share history): sent only when changed, as separate frames
SECTIONS = ("groups", "alerts", "events", "lb")
KEEP = 8  # versions the daemon remembers: UIs poll twice a tick, liveness patches add some
_SEEN_AT = NodeView._fields.index("last_seen")
_tuple_new = tuple.__new__

# (ts, tick, content): the engine patches events and LB views into a snapshot between ticks
# without a new ts or tick, so a content number, moved whenever the content does, tells those
# apart
Version = tuple[float, int, int]


class DeltaError(Exception):
    """An answer this UI cannot apply to what it holds: it asks for a full snapshot."""


@dataclass(slots=True)
class _Served:
    """One snapshot as the daemon served it: its node order and the nodes whose row differs
    from the snapshot served before it (but for its last-seen time)."""

    ids: tuple[str, ...]
    seen: bytes  # every node's last_seen, in order, as doubles
    sections: dict[str, bytes]  # SECTIONS, packed
    remade: list[str]  # nodes whose row changed since the snapshot served before this one
    version: Version = (0.0, 0, 0)


def _same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Rows equal but for their last-seen time (it goes apart, in `seen`)."""
    return a[:_SEEN_AT] == b[:_SEEN_AT] and a[_SEEN_AT + 1:] == b[_SEEN_AT + 1:]


class DeltaPacker:
    """The daemon's side: answers each `ui2` request with what changed since its `have`.

    NodeViews are immutable and the engine keeps an unchanged node's view object across
    snapshots, so a node's row is made again only when its view is a new object (one identity
    comparison per node, in C), and compared with the row it replaces. An answer against
    version B sends the rows that changed in the versions after B."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._served: OrderedDict[Version, _Served] = OrderedDict()
        self._current: tuple[Snapshot, dict[str, Any], _Served] | None = None
        # the nodes of the snapshot prepared last, and per node its view and row
        self._nodes: tuple[NodeView, ...] = ()
        self._views: dict[str, NodeView] = {}
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._seen = array("d")
        self._content = 0  # the content part of the versions: a new number per new content

    def _prepare(self, snap: Snapshot) -> tuple[dict[str, Any], _Served]:
        """The snapshot's rows (without metrics), made once per snapshot and changed node."""
        if self._current is not None and self._current[0] is snap:
            return self._current[1], self._current[2]
        nodes, last, views, rows = snap.nodes, self._nodes, self._views, self._rows
        prev = next(reversed(self._served.values())) if self._served else None
        if prev is not None and len(last) == len(nodes):
            at = list(compress(range(len(nodes)), map(is_not, nodes, last)))
            same_order = all(nodes[i].node_id == prev.ids[i] for i in at)
        else:
            at, same_order = [], False
        if same_order and prev is not None:
            ids, changed = prev.ids, [nodes[i] for i in at]
            seen = array("d", self._seen)
            for i in at:
                seen[i] = nodes[i].last_seen
        else:
            ids = tuple(n.node_id for n in nodes)
            changed = [v for v in nodes if views.get(v.node_id) is not v]
            seen = array("d", [n.last_seen for n in nodes])
            if len(views) + len(changed) > len(nodes):  # nodes may be gone: forget their rows
                present = set(ids)
                for nid in [n for n in views if n not in present]:
                    del views[nid], rows[nid]
        remade = []
        for v, row in zip(changed, compact_rows(changed), strict=True):
            nid = v.node_id
            old = rows.get(nid)
            views[nid] = v
            rows[nid] = row
            if old is None or not _same_row(old, row):
                remade.append(nid)
        self._nodes, self._seen = nodes, seen
        plain = to_plain(snap, metrics=False, nodes=False)
        served = _Served(ids, seen.tobytes(),
                         {k: msgpack.packb(plain[k], default=pack_default) for k in SECTIONS},
                         remade)
        if (prev is None or remade or (ids is not prev.ids and ids != prev.ids)
                or served.seen != prev.seen or served.sections != prev.sections):
            self._content += 1
        served.version = (snap.ts, snap.tick, self._content)
        replaced = self._served.get(served.version)
        if replaced is not None:  # the same content again: what it had remade still counts
            served.remade = replaced.remade + served.remade
        self._served[served.version] = served
        self._served.move_to_end(served.version)
        while len(self._served) > self.keep:
            self._served.popitem(last=False)
        self._current = (snap, plain, served)
        return plain, served

    @property
    def version(self) -> Version | None:
        """The version of the snapshot packed last."""
        return self._current[2].version if self._current is not None else None

    def _since(self, base: _Served) -> list[str]:
        """The nodes (still there) whose row changed in a version after `base`, once each."""
        made: dict[str, None] = {}
        after = False
        for s in self._served.values():
            if after:
                made.update(dict.fromkeys(s.remade))
            after = after or s is base
        rows = self._rows
        return [nid for nid in made if nid in rows]

    def pack(self, snap: Snapshot, have: Version | None, watched: str | None) -> bytes:
        plain, served = self._prepare(snap)
        base = self._served.get(have) if have is not None else None
        rows = self._rows
        if base is None:
            picked = [rows[nid] for nid in served.ids]
        elif base is served:
            picked = []
        else:
            picked = [rows[nid] for nid in self._since(base)]
        node = snap.node(watched) if watched else None
        if node is not None:  # the node detail's raw metrics: that row always, with them
            picked = [r for r in picked if r[0] != watched]
            picked.append(compact_rows((node,), (node.node_id,))[0])
        d = dict(plain)  # ts and tick first (peek_version)
        del d["nodes"]
        for k in SECTIONS:  # None: as the UI holds it
            same = base is not None and base.sections[k] == served.sections[k]
            d[k] = None if same else served.sections[k]
        d.update({
            "wire": WIRE,
            "version": list(served.version),
            "base": list(have) if base is not None and have is not None else None,
            "node_fields": list(NodeView._fields),
            "order": None if base is not None and base.ids == served.ids else served.ids,
            "seen": served.seen,
            "chunks": [msgpack.packb(picked[k:k + CHUNK], default=pack_default)
                       for k in range(0, len(picked), CHUNK)],
        })
        return msgpack.packb(d, default=pack_default)

    def answer(self, snap: Snapshot, arg: str) -> bytes:
        """The answer to `ui2 ARG`; a malformed ARG is answered with an error."""
        try:
            request = json.loads(arg) if arg else {}
            have = request.get("have")
            have = (float(have[0]), int(have[1]), int(have[2])) if have else None
            watched = request.get("node")
            watched = str(watched) if watched else None
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            return msgpack.packb({"error": f"bad ui2 request: {exc}"})
        return self.pack(snap, have, watched)


class DeltaReader:
    """The UI's side: the snapshot it holds, brought up to date by each answer."""

    def __init__(self) -> None:
        self.version: Version | None = None
        self.snap: Snapshot | None = None
        self._nodes: dict[str, NodeView] = {}
        self._order: tuple[str, ...] = ()
        self._with_metrics: str | None = None

    def reset(self) -> None:
        """Forget what is held: the next request asks for a full snapshot."""
        self.version, self.snap = None, None
        self._nodes, self._order = {}, ()

    def request(self, watched: str | None) -> str:
        return "ui2 " + json.dumps({"have": list(self.version) if self.version else None,
                                    "node": watched})

    def apply(self, data: bytes, watched: str | None = None) -> Snapshot:
        """The snapshot after this answer. DeltaError if it does not fit what is held (the
        caller resets and asks for a full one); DaemonRefused for {"error": text}."""
        d = msgpack.unpackb(data, use_list=False, strict_map_key=False)  # rows stay bytes
        if "error" in d:
            raise DaemonRefused(str(d["error"]))
        if d.get("wire") != WIRE:
            raise DeltaError(f"the daemon speaks ui wire {d.get('wire')!r}, this UI {WIRE}")
        base = d["base"]
        version = tuple(d["version"])
        if base is not None and tuple(base) != self.version:
            raise DeltaError(f"a delta against {base}, this UI holds {self.version}")
        if (base is not None and version == self.version and not d["chunks"]
                and self.snap is not None and watched == self._with_metrics):
            return self.snap  # polled twice a tick: nothing new, nothing decoded
        order = d["order"] if d["order"] is not None else self._order
        if base is None and d["order"] is None:
            raise DeltaError("a full snapshot without its node order")
        seen = array("d")
        seen.frombytes(d["seen"])
        if len(seen) != len(order):
            raise DeltaError(f"{len(seen)} last-seen times for {len(order)} nodes")
        changed: dict[str, NodeView] = {}
        services: dict[Any, ServiceView] = {}
        for k, chunk in enumerate(d["chunks"]):
            if k:
                time.sleep(0)  # the GIL to the event loop between two frames
            rows = msgpack.unpackb(chunk, use_list=False, strict_map_key=False)
            for n in nodes_from_rows(d["node_fields"], rows, services):
                changed[n.node_id] = n
        held = self._nodes if base is not None else {}
        stale = self._with_metrics if self._with_metrics != watched else None
        nodes: list[NodeView] = []
        at, after = _SEEN_AT, _SEEN_AT + 1
        for nid, ts in zip(order, seen, strict=True):
            n = changed.get(nid) or held.get(nid)
            if n is None:
                raise DeltaError(f"node {nid!r} is neither sent nor held")
            if nid == stale and nid not in changed:  # no longer watched: as the daemon
                n = n._replace(metrics=EMPTY)  # sends it to a UI that never watched it
            if n[at] != ts:
                n = _tuple_new(NodeView, (*n[:at], ts, *n[after:]))
            nodes.append(n)
        views = tuple(nodes)
        plain = dict(d)
        kept = {}
        for k in SECTIONS:
            if d[k] is None:
                if base is None or self.snap is None:
                    raise DeltaError(f"a full snapshot without its {k}")
                plain[k], kept[k] = (), getattr(self.snap, k)
            else:
                plain[k] = msgpack.unpackb(d[k], use_list=False, strict_map_key=False)
        snap = from_plain(plain, views)
        if kept:
            snap = replace(snap, **kept)
        self.version, self.snap = version, snap
        self._nodes = dict(zip(order, views, strict=True))
        self._order = tuple(order)
        self._with_metrics = watched
        return snap


class DaemonRefused(Exception):
    """The daemon answered {"error": text} (an older daemon: "unknown request …")."""
