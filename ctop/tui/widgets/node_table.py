"""The dense node table: one line per node, group header lines, sticky column header.

Rows are cached per node by what they show (every value a row draws, its age and LB ratio
included), so a node whose row would look the same is not drawn again, in a new tick too: an
attached UI decodes new NodeView objects every tick, and on an idle cluster nearly every
row stays as it is (LineView then repaints none of them).
"""

from __future__ import annotations

from bisect import bisect_right

from rich.segment import Segment
from textual.strip import Strip

from ctop.anomaly.levels import node_levels
from ctop.snapshot import NodeView
from ctop.tui.format import count, rate, seen
from ctop.tui.widgets.cells import meter, pad, service_dots, spark, text
from ctop.tui.widgets.line_view import strip
from ctop.tui.widgets.node_layout import NodeLayout

# (title, width, sort it belongs to)
COLUMNS = (
    ("NODE", 16, "name"),
    ("GROUP", 8, ""),
    ("STATE", 7, "state"),
    ("CPU", 13, "cpu"),
    ("MEM", 13, "mem"),
    ("LOAD", 5, ""),
    ("NET IN", 7, ""),
    ("NET OUT", 7, ""),
    ("CONNS", 6, "conns"),
    ("RATIO", 6, "ratio"),
    ("SVC", 5, ""),
    ("ANOM", 5, ""),  # the anomaly level touching the node (ctop/anomaly/levels.py)
    ("CPU HISTORY", 12, ""),
    ("SEEN", 5, ""),
    ("ADDRESS", 15, ""),
)
SPARK = next(w for title, w, _ in COLUMNS if title == "CPU HISTORY")
WIDTH = sum(w + 1 for _, w, _ in COLUMNS)  # a cursor mark, then columns one apart
H_STEP = 8  # columns per left/right key


class TableLayout(NodeLayout):
    sticky = 1

    def __init__(self, view) -> None:
        super().__init__(view)
        # (node_id, cursor, focus) -> (what the row shows, the row)
        self._rows: dict[tuple[str, bool, bool], tuple[tuple, Strip]] = {}
        self._group_lines: list[int] = []  # body line of each group header
        self._group_starts: list[int] = []  # node index where each group starts
        self._levels: tuple[object, dict[str, str]] = (None, {})  # (alerts, node -> level)

    def forget(self) -> None:
        pass  # rows are checked against what they show, ages and ratios included

    def _level(self, node_id: str) -> str:
        """The node's anomaly level, from the snapshot's alerts (worked out once per set)."""
        snap = self.view.snap
        assert snap is not None
        if self._levels[0] is not snap.alerts:
            found = node_levels(snap.alerts, snap.nodes) if snap.alerts else {}
            self._levels = (snap.alerts, found)
        return self._levels[1].get(node_id, "")

    def _shown(self, n: NodeView) -> tuple:
        """Everything `_row` draws from, but the cursor."""
        v = self.view
        assert v.snap is not None and v.arr is not None
        return (
            n.group, n.liveness, n.cpu, n.mem, n.load1, n.net_rx_bps, n.net_tx_bps, n.conns,
            v.arr.ratios.get(n.node_id), tuple(s.status for s in n.services),
            n.cpu_history[-SPARK:],  # what the spark draws
            seen(n.last_seen, v.snap.ts, n.interval), n.addresses[:1], self._level(n.node_id),
        )

    def layout(self) -> tuple[int, int]:
        arr = self.view.arr
        assert arr is not None
        self._group_starts = [start for _, start, _ in arr.groups]
        self._group_lines = [start + k for k, start in enumerate(self._group_starts)]
        return len(arr.nodes) + len(arr.groups), WIDTH

    def line_of(self, index: int) -> int:
        return index + bisect_right(self._group_starts, index)

    def _node_at(self, line: int) -> int | None:
        """Node index shown on body line `line` (None for a group header)."""
        k = bisect_right(self._group_lines, line)
        if k and self._group_lines[k - 1] == line:
            return None
        return line - k

    # -- keys and mouse ------------------------------------------------------------------------

    def move(self, index: int, dx: int, dy: int) -> int | None:
        if dx:  # the table has no columns of nodes: left/right scroll the wide row
            v = self.view
            v.scroll_to(x=v.scroll_offset.x + dx * H_STEP, animate=False)
            return None
        return index + dy

    def page(self, index: int, direction: int) -> int:
        return index + direction * self.view.view_height

    def index_at(self, line: int, x: int) -> int | None:
        return self._node_at(line)

    # -- drawing -------------------------------------------------------------------------------

    def header_strip(self, width: int) -> Strip:
        pal, sort = self.view.palette, self.view.sort
        segs = [Segment(" ")]
        for title, w, col_sort in COLUMNS:
            mark = " ▼" if col_sort and col_sort == sort and col_sort != "name" else ""
            mark = " ▲" if col_sort == "name" and sort == "name" else mark
            segs.append(text(title + mark, w, pal.heading))
            segs.append(Segment(" "))
        return strip(segs, width)

    def body_strip(self, line: int, width: int) -> Strip:
        v = self.view
        arr = v.arr
        assert arr is not None and v.snap is not None
        index = self._node_at(line)
        if index is None:
            return self._group_strip(bisect_right(self._group_lines, line) - 1, width)
        node = arr.nodes[index]
        cur = index == v.cursor
        key = (node.node_id, cur, cur and v.has_focus)
        shown = self._shown(node)
        hit = self._rows.get(key)
        if hit is not None and hit[0] == shown and hit[1].cell_length == width:
            return hit[1]
        row = self._row(node, width, cur)
        if len(self._rows) > 4096:
            self._rows.clear()
        self._rows[key] = (shown, row)
        return row

    def _group_strip(self, g: int, width: int) -> Strip:
        pal = self.view.palette
        name, shown, totals = self.group_header(g)
        segs = [
            Segment(f" ▾ {name or '(no group)'} ", pal.group),
            Segment(f"{shown} shown", pal.dim),
        ]
        if totals is not None:
            segs += [
                Segment(f"  ● {totals.alive}", pal.alive),
                Segment(f" ● {totals.suspect}", pal.suspect),
                Segment(f" ● {totals.dead}", pal.dead),
                Segment(f" ● {totals.left}", pal.left),
                *([Segment(f" ● {totals.unknown}", pal.unknown)] if totals.unknown else []),
                Segment(
                    f"   cpu {totals.cpu_avg:.0f}% avg {totals.cpu_max:.0f}% max"
                    f"   mem {totals.mem_avg:.0f}% avg {totals.mem_max:.0f}% max"
                    f"   conns {count(totals.conns)}",
                    pal.label,
                ),
            ]
        return strip(segs, width)

    def _row(self, n: NodeView, width: int, cur: bool) -> Strip:
        v = self.view
        pal, snap = v.palette, v.snap
        assert snap is not None and v.arr is not None
        live = pal.liveness(n.liveness)
        ratio = v.arr.ratios.get(n.node_id)
        w = [c[1] for c in COLUMNS]
        segs = [
            Segment("▌" if cur else " ", live),
            text(n.node_id, w[0], live),
            Segment(" "),
            text(n.group, w[1], pal.label),
            Segment(" "),
            text(str(n.liveness), w[2], live),
            Segment(" "),
        ]
        segs += [*meter(n.cpu, w[3] - 5, pal), Segment(" ")]
        segs += [*meter(n.mem, w[4] - 5, pal), Segment(" ")]
        segs += [
            text(f"{n.load1:.1f}", w[5], pal.value, right=True),
            Segment(" "),
            text(rate(n.net_rx_bps), w[6], pal.value, right=True),
            Segment(" "),
            text(rate(n.net_tx_bps), w[7], pal.value, right=True),
            Segment(" "),
            text(count(n.conns), w[8], pal.value, right=True),
            Segment(" "),
            text("—" if ratio is None else f"{ratio:.2f}", w[9], pal.ratio(ratio), right=True),
            Segment(" "),
        ]
        segs += [*service_dots(n.services, w[10], pal), Segment(" ")]
        level = self._level(n.node_id)
        look = pal.fail if level == "group" else pal.warn if level else pal.dim
        segs += [
            text(level or "·", w[11], look),
            Segment(" "),
            spark(n.cpu_history, w[12], pal.label),
            Segment(" "),
            text(seen(n.last_seen, snap.ts, n.interval), w[13], pal.dim, right=True),
            Segment(" "),
            text(n.addresses[0] if n.addresses else "", w[14], pal.dim),
        ]
        segs = pad(segs, width)
        if cur:
            bg = pal.cursor if v.has_focus else pal.cursor_blur
            segs = list(Segment.apply_style(segs, post_style=bg))
        return Strip(segs, width)
