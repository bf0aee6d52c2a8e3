"""Load-balancer pane: each virtual service, then its real servers with weight, connections,
rate, the share-vs-weight bar and the state. One Line-API widget (a 10,000-node cluster can
have 10,000 real servers); the cursor selects a real server for the action keys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip

from ctop.lb.drainwatch import DrainWatch
from ctop.snapshot import LBServiceView, RealServerView, Snapshot
from ctop.tui.colors import Palette
from ctop.tui.format import BLOCKS, bar, count
from ctop.tui.widgets.cells import pad, text
from ctop.tui.widgets.line_view import LineView, strip

SPARK = 10  # the share-vs-weight sparkline: the last rounds, one cell each

COLUMNS = (
    ("SERVER", 14),
    ("ADDRESS", 16),
    ("W", 4),
    ("ADV", 4),
    ("ACT/INACT", 9),
    ("CONN/S", 6),
    ("SHARE vs WEIGHT", 20),
    ("STATE", 8),
    ("HISTORY", SPARK),
    ("NODE", 12),
)
WIDTH = 2 + sum(w + 1 for _, w in COLUMNS)
RATIO_W = 7  # "×0.80" after the share bar
# A wider pane grows these columns, one cell each in turn, up to these widths: long names and
# IPv6 addresses show whole, and the share bar gets finer.
GROWS = {"SERVER": 24, "ADDRESS": 40, "SHARE vs WEIGHT": 48, "NODE": 24}
_GROW_AT = {i: GROWS[title] for i, (title, _) in enumerate(COLUMNS) if title in GROWS}
_OUT = ("drained", "quiesced", "maint")


@lru_cache(maxsize=8)
def column_widths(width: int) -> tuple[int, ...]:
    """Each column's width when the pane is `width` cells wide (never below COLUMNS')."""
    w = [c[1] for c in COLUMNS]
    extra = width - WIDTH
    while extra > 0:
        grew = False
        for i, top in _GROW_AT.items():
            if extra > 0 and w[i] < top:
                w[i] += 1
                extra -= 1
                grew = True
        if not grew:
            break
    return tuple(w)


@dataclass(frozen=True, slots=True)
class Target:
    """One real server, as the action keys address it."""

    balancer: str
    service: str
    server: RealServerView


class LBPane(LineView):
    sticky = 1
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False, tooltip="select a real server"),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("home", "move(-1000000000)", show=False, tooltip="first / last real server"),
        Binding("end", "move(1000000000)", show=False),
        Binding("enter", "open", "Open node", show=False, tooltip="open the server's node"),
    ]

    class Open(Message):
        def __init__(self, node_id: str) -> None:
            super().__init__()
            self.node_id = node_id

    def __init__(self, *, node_id: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.node_id = node_id  # only this node's entries (node detail screen)
        self.snap: Snapshot | None = None
        self._lines: list[tuple[LBServiceView, RealServerView | None]] = []
        self._servers: list[int] = []  # body lines holding a server
        self._pick = 0  # index into _servers
        self._picked: tuple[str, str] | None = None  # (service, server) kept across ticks
        # drained servers' active connections over the ticks: "3 left, empty in ~12 s"
        self._drains: dict[tuple[str, str, str], DrainWatch] = {}
        self._drain_note: dict[tuple[str, str], str] = {}  # (balancer, service) -> the note
        self._same: tuple[object, ...] | None = None  # the LB views, note and error shown

    def for_node(self, node_id: str | None) -> None:
        """Show another node's entries (the node detail is kept and switches node): the
        selection starts at its first server, as in a new pane."""
        if node_id != self.node_id:
            self.node_id, self._picked, self._pick = node_id, None, 0
            self._same = None  # other lines, from the same views
            self.scroll_to(0, 0, animate=False, immediate=True)

    def show(self, snap: Snapshot) -> None:
        # between LB rounds (2 s) a tick hands out the same views: nothing to rebuild unless
        # a drained server is being followed (its time to empty moves with the tick)
        same = (snap.lb, snap.lb_note, snap.lb_error)
        if same == self._same and not self._drains and self.snap is not None:
            self.snap = snap
            return
        self._same = same
        self.snap = snap
        self._watch_drains(snap)
        lines: list[tuple[LBServiceView, RealServerView | None]] = []
        for svc in snap.lb:
            servers = [
                rs for rs in svc.servers if self.node_id is None or rs.node_id == self.node_id
            ]
            if servers:
                lines.append((svc, None))
                lines += [(svc, rs) for rs in servers]
        self._lines = lines
        self._servers = [i for i, (_, rs) in enumerate(lines) if rs is not None]
        if self._picked is not None:
            for k, i in enumerate(self._servers):
                svc, rs = lines[i]
                if (svc.key, rs.key if rs else "") == self._picked:
                    self._pick = k
                    break
        self._pick = max(0, min(self._pick, len(self._servers) - 1))
        self._remember()
        note = [] if lines else [snap.lb_note or "no load-balancer entries"]
        if lines and "owners: " in snap.lb_note:  # who else owns the tables (ctop.lb.owners)
            note = [snap.lb_note[snap.lb_note.index("owners: "):]]
        self._notes = ([f"error: {snap.lb_error}"] if snap.lb_error else []) + note
        self.set_size(len(lines) + len(self._notes), WIDTH)

    def _watch_drains(self, snap: Snapshot) -> None:
        """Follow each drained server's connections down to 0, with the time to empty."""
        seen: dict[tuple[str, str, str], DrainWatch] = {}
        notes: dict[tuple[str, str], str] = {}
        for svc in snap.lb:
            parts = []
            for rs in svc.servers:
                if rs.state not in _OUT:
                    continue
                key = (svc.balancer, svc.key, rs.key)
                watch = seen[key] = self._drains.get(key) or DrainWatch()
                if not watch.samples or watch.samples[-1][0] != snap.ts:
                    watch.add(snap.ts, rs.active_conns)
                first = max(n for _, n in watch.samples)
                if rs.active_conns:
                    eta = watch.eta()
                    when = f"empty in ~{eta:.0f} s" if eta is not None else "draining"
                    parts.append(f"{rs.key} {rs.active_conns} left, {when}")
                elif first:  # it had connections since we watched: say it emptied
                    parts.append(f"{rs.key} empty")
            if parts:
                notes[(svc.balancer, svc.key)] = "  ⇣ " + "; ".join(parts)
        self._drains, self._drain_note = seen, notes

    def drain_note(self, balancer: str, service: str) -> str:
        return self._drain_note.get((balancer, service), "")

    def _remember(self) -> None:
        t = self.target
        self._picked = (t.service, t.server.key) if t else None

    @property
    def target(self) -> Target | None:
        if not self._servers:
            return None
        svc, rs = self._lines[self._servers[self._pick]]
        assert rs is not None
        return Target(svc.balancer, svc.key, rs)

    # -- drawing -------------------------------------------------------------------------------

    def header_strip(self, width: int) -> Strip:
        segs = [Segment("  ")]
        for (title, _), w in zip(COLUMNS, column_widths(width), strict=True):
            segs += [text(title, w, self.palette.heading), Segment(" ")]
        return strip(segs, width)

    def body_strip(self, line: int, width: int) -> Strip:
        pal = self.palette
        if line >= len(self._lines):
            msg = self._notes[line - len(self._lines)]
            return strip(
                [Segment("  " + msg, pal.fail if msg.startswith("error") else pal.dim)], width
            )
        svc, rs = self._lines[line]
        if rs is None:
            note = self.drain_note(svc.balancer, svc.key)
            return strip(
                [
                    Segment(f"{svc.balancer} ", pal.label),
                    Segment(svc.key, pal.group),
                    Segment(f"  {svc.protocol} {svc.scheduler}", pal.dim),
                    Segment("  imbalance ", pal.dim),
                    Segment(f"{svc.imbalance:.2f}", pal.ratio(1 + svc.imbalance * 2)),
                    Segment("  by conn/s" if svc.basis == "rate" else "  by active conns",
                            pal.dim),
                    *_automation_note(svc, pal),
                    *([Segment(note, pal.warn)] if note else []),
                ],
                width,
            )
        cur = self._servers and self._servers[self._pick] == line
        st = pal.server_state(rs.state)
        addr = f"[{rs.address}]:{rs.port}" if ":" in rs.address else f"{rs.address}:{rs.port}"
        advised = "" if rs.advised_weight in (None, rs.weight) else str(rs.advised_weight)
        w = column_widths(width)
        bar_w = w[6] - RATIO_W
        filled, empty = bar(rs.conn_share, bar_w)
        mark = min(bar_w - 1, int(rs.weight_share * bar_w))
        cells = list(filled + empty)
        cells[mark] = "│" if cells[mark] == "·" else "┃"
        share = "".join(cells)
        ratio = "—" if rs.ratio is None else f"×{rs.ratio:.2f}"
        segs = [
            Segment("▶" if cur else " ", st),
            # ≠: the balancer differs from the journal's intent (R re-applies, L accepts)
            Segment("≠", pal.warn) if rs.drift else Segment(" ", st),
            text(rs.key, w[0], pal.value),
            Segment(" "),
            text(addr, w[1], pal.dim),
            Segment(" "),
            text(str(rs.weight), w[2], pal.value, right=True),
            Segment(" "),
            text(advised, w[3], pal.warn, right=True),
            Segment(" "),
            text(count(rs.active_conns), w[4] - 5, pal.value, right=True),
            text(f"/{count(rs.inactive_conns)}", 5, pal.dim),
            Segment(" "),
            text(f"{rs.conns_per_s:.1f}", w[5], pal.value, right=True),
            Segment(" "),
            Segment(share[: len(filled)], pal.ratio(rs.ratio)),
            Segment(share[len(filled) :], pal.meter_empty),
            text(ratio, RATIO_W, pal.ratio(rs.ratio), right=True),
            Segment(" "),
            text(rs.state, w[7], st),
            Segment(" "),
            *share_spark(svc.share_history.get(rs.key, ()), w[8], pal),
            Segment(" "),
            text(rs.node_id, w[9], pal.dim),
        ]
        segs = pad(segs, width)
        if cur:
            bg = pal.cursor if self.has_focus else pal.cursor_blur
            segs = list(Segment.apply_style(segs, post_style=bg))
        return Strip(segs, width)

    # -- keys ----------------------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        if not self._servers:
            return
        self._pick = max(0, min(self._pick + delta, len(self._servers) - 1))
        self._remember()
        self.scroll_to_line(self._servers[self._pick])
        self.refresh()

    def action_open(self) -> None:
        t = self.target
        if t is not None and t.server.node_id:
            self.post_message(self.Open(t.server.node_id))

    def on_click(self, event: events.Click) -> None:
        line = self.line_at(event.y)
        if line is not None and line in self._servers:
            self._pick = self._servers.index(line)
            self._remember()
            self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def share_spark(
    history: tuple[tuple[float, float], ...], width: int, pal: Palette
) -> list[Segment]:
    """One cell per LB round, newest right: half height = the share its weight asks for, full =
    twice that or more, empty = no load; coloured like the ratio. A server with weight 0 that
    still gets load shows full height."""
    cells = [Segment(" " * max(0, width - len(history)))]
    for share, weight_share in history[-width:]:
        if weight_share > 0:
            ratio: float | None = share / weight_share
            level = min(1.0, ratio / 2)
        else:
            ratio, level = (None, 0.0) if share <= 0 else (2.0, 1.0)
        char = BLOCKS[max(1, round(level * 8))] if share > 0 else "_"
        cells.append(Segment(char, pal.ratio(ratio) if share > 0 or ratio else pal.dim))
    return cells


def _automation_note(svc: LBServiceView, pal: Palette) -> list[Segment]:
    """Auto-quiesce is on but some server has no check that judges it: say so."""
    unjudged = [rs.key for rs in svc.servers if rs.health.endswith("no automation")]
    if not unjudged:
        return []
    why = next(rs.health for rs in svc.servers if rs.key == unjudged[0])
    who = unjudged[0] if len(unjudged) == 1 else f"{len(unjudged)} servers"
    return [Segment(f"  auto-quiesce off for {who}: {why.split(':')[0]}", pal.warn)]
