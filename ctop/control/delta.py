"""What an attached UI polls since wire 2 (`ui2 {"have": [ts, tick, content], "node": ID}`):
only what changed since the snapshot the UI holds.

The daemon (DeltaPacker) remembers, for the last few snapshots it served, each node's row
fingerprint; a UI holding one of them gets the rows of the nodes whose row differs, every
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
# without a new ts or tick, so the content's hash tells those apart
Version = tuple[float, int, int]


class DeltaError(Exception):
    """An answer this UI cannot apply to what it holds: it asks for a full snapshot."""


@dataclass(slots=True)
class _Served:
    """One snapshot as the daemon served it: its node order and each row's fingerprint."""

    ids: tuple[str, ...]
    fingerprints: dict[str, int]
    seen: bytes  # every node's last_seen, in order, as doubles
    sections: dict[str, bytes]  # SECTIONS, packed
    version: Version = (0.0, 0, 0)


def _fingerprint(row: tuple[Any, ...]) -> int:
    """The row but its last-seen time, hashed (rows without metrics hold only hashables)."""
    try:
        return hash((*row[:_SEEN_AT], *row[_SEEN_AT + 1:]))
    except TypeError:  # something unhashable: equal to nothing, so always sent
        return id(row)


class DeltaPacker:
    """The daemon's side: answers each `ui2` request with what changed since its `have`."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._served: OrderedDict[Version, _Served] = OrderedDict()
        self._current: tuple[Snapshot, list[tuple[Any, ...]], _Served] | None = None

    def _prepare(self, snap: Snapshot) -> tuple[list[tuple[Any, ...]], _Served]:
        """The snapshot's rows (without metrics) and fingerprints, made once per snapshot."""
        if self._current is not None and self._current[0] is snap:
            return self._current[1], self._current[2]
        rows = compact_rows(snap.nodes)
        ids = tuple(n.node_id for n in snap.nodes)
        plain = to_plain(snap, metrics=False, nodes=False)
        served = _Served(ids, {i: _fingerprint(r) for i, r in zip(ids, rows, strict=True)},
                         array("d", [n.last_seen for n in snap.nodes]).tobytes(),
                         {k: msgpack.packb(plain[k], default=pack_default) for k in SECTIONS})
        version = (snap.ts, snap.tick, hash((
            tuple(served.fingerprints.values()), served.ids, served.seen,
            tuple(served.sections.values()))))
        served.version = version
        self._served[version] = served
        self._served.move_to_end(version)
        while len(self._served) > self.keep:
            self._served.popitem(last=False)
        self._current = (snap, rows, served)
        return rows, served

    @property
    def version(self) -> Version | None:
        """The version of the snapshot packed last."""
        return self._current[2].version if self._current is not None else None

    def pack(self, snap: Snapshot, have: Version | None, watched: str | None) -> bytes:
        rows, served = self._prepare(snap)
        base = self._served.get(have) if have is not None else None
        if base is None:
            send = list(range(len(rows)))
        else:
            old = base.fingerprints
            fps = served.fingerprints
            send = [i for i, nid in enumerate(served.ids) if old.get(nid) != fps[nid]]
        picked = [rows[i] for i in send]
        node = snap.node(watched) if watched else None
        if node is not None:  # the node detail's raw metrics: that row always, with them
            picked = [r for r in picked if r[0] != watched]
            picked.append(compact_rows((node,), (node.node_id,))[0])
        d = to_plain(snap, metrics=False, nodes=False)  # ts and tick first (peek_version)
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
