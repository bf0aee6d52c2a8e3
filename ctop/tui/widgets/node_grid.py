"""The panel grid: a compact card per node, drawn as lines of one Line-API widget, so it stays
cheap however many nodes there are. Cards flow left to right, a group header above each group."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from rich.segment import Segment
from textual import events
from textual.strip import Strip

from ctop.model import NodeView
from ctop.tui.format import count, fit, rate
from ctop.tui.widgets.cells import meter, pad, service_dots, spark
from ctop.tui.widgets.line_view import strip
from ctop.tui.widgets.node_list import NodeList

CARD_W = 26  # card width; one blank column between cards
CARD_LINES = 5  # lines per card; one blank line between card rows
CELL_W, CELL_H = CARD_W + 1, CARD_LINES + 1


@dataclass(frozen=True, slots=True)
class Block:
    """A run of lines: a group header (nodes empty) or one row of cards."""

    first_line: int
    group: int
    nodes: tuple[int, ...] = ()


def fits(nodes: int, groups: int, width: int, height: int) -> bool:
    """Would the grid show every node in this area? (else the table is the better default)"""
    cols = max(1, width // CELL_W)
    rows = -(-nodes // cols) + groups  # worst case: every group ends a partial row
    return rows * CELL_H + groups <= height + 1


class NodeGrid(NodeList):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._blocks: list[Block] = []
        self._starts: list[int] = []
        self._pos: dict[int, tuple[int, int]] = {}  # node index -> (block, column)
        self._cards: dict[tuple[int, bool, bool], tuple[NodeView, list[list[Segment]]]] = {}
        self._cols = 1

    @property
    def cols(self) -> int:
        return max(1, self.scrollable_content_region.width // CELL_W)

    def layout_lines(self) -> None:
        arr = self.arr
        assert arr is not None
        cols = self._cols = self.cols
        blocks: list[Block] = []
        line = 0
        groups = arr.groups or (("", 0, len(arr.nodes)),)
        for g, (_, start, end) in enumerate(groups):
            if arr.groups:
                blocks.append(Block(line, g))
                line += 1
            for row in range(start, end, cols):
                blocks.append(Block(line, g, tuple(range(row, min(row + cols, end)))))
                line += CELL_H
        self._blocks = blocks
        self._starts = [b.first_line for b in blocks]
        self._pos = {i: (b, c) for b, blk in enumerate(blocks) for c, i in enumerate(blk.nodes)}
        self._cards = {}
        self.set_size(line, cols * CELL_W)

    def on_resize(self) -> None:
        if self.arr is not None and self.cols != self._cols:
            self.layout_lines()
            self.scroll_to_line(self.line_of_cursor())

    def line_of_cursor(self) -> int:
        b, _ = self._pos.get(self.cursor, (0, 0))
        return self._blocks[b].first_line + CARD_LINES - 1 if self._blocks else 0

    # -- drawing -------------------------------------------------------------------------------

    def body_strip(self, line: int, width: int) -> Strip:
        k = bisect_right(self._starts, line) - 1
        blk = self._blocks[k]
        sub = line - blk.first_line
        if not blk.nodes:
            return self._group_strip(blk.group, width)
        if sub >= CARD_LINES:
            return Strip.blank(width)
        segs: list[Segment] = []
        for i in blk.nodes:
            segs += self._card(i)[sub]
            segs.append(Segment(" "))
        return strip(segs, width)

    def _group_strip(self, g: int, width: int) -> Strip:
        arr, snap, pal = self.arr, self.snap, self.palette
        assert arr is not None and snap is not None
        name, start, end = arr.groups[g]
        totals = next((gv.totals for gv in snap.groups if gv.name == name), None)
        segs = [
            Segment(f"▾ {name or '(no group)'} ", pal.group),
            Segment(f"{end - start} nodes", pal.dim),
        ]
        if totals is not None:
            segs.append(
                Segment(
                    f"   cpu {totals.cpu_avg:.0f}% avg  mem {totals.mem_avg:.0f}% avg"
                    f"  conns {count(totals.conns)}",
                    pal.label,
                )
            )
        return strip(segs, width)

    def _card(self, i: int) -> list[list[Segment]]:
        assert self.arr is not None
        node = self.arr.nodes[i]
        cur = i == self.cursor
        key = (id(node), cur, cur and self.has_focus)
        hit = self._cards.get(key)
        if hit is not None and hit[0] is node:
            return hit[1]
        lines = self._draw_card(node, cur)
        if len(self._cards) > 4096:
            self._cards.clear()
        self._cards[key] = (node, lines)
        return lines

    def _draw_card(self, n: NodeView, cur: bool) -> list[list[Segment]]:
        pal = self.palette
        live = pal.liveness(n.liveness)
        edge = Segment("█" if cur else "▌", live)
        inner = CARD_W - 2
        up = n.liveness in ("alive", "suspect")
        name = fit(n.node_id, inner - 8)
        lines = [
            [Segment(name, live + pal.heading if up else live), Segment(f"{n.liveness:>8}", live)],
            [Segment("cpu ", pal.label), *meter(n.cpu, inner - 9, pal)],
            [Segment("mem ", pal.label), *meter(n.mem, inner - 9, pal)],
            [
                Segment("↓", pal.dim),
                Segment(f"{rate(n.net_rx_bps):<6}", pal.value),
                Segment("↑", pal.dim),
                Segment(f"{rate(n.net_tx_bps):<6}", pal.value),
                Segment("conns ", pal.dim),
                Segment(count(n.conns), pal.value),
            ],
            [
                *service_dots(n.services, 6, pal),
                Segment(" "),
                spark(n.cpu_history, inner - 7, pal.label),
            ],
        ]
        bg = (pal.cursor if self.has_focus else pal.cursor_blur) if cur else pal.card
        out = []
        for segs in lines:
            row = [edge, Segment(" "), *pad(segs, inner)]
            out.append(list(Segment.apply_style(row, post_style=bg)))
        return out

    # -- keys and mouse ------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        if dx:
            self.select(self.cursor + dx)
            return
        b, c = self._pos.get(self.cursor, (0, 0))
        k = b + dy
        while 0 <= k < len(self._blocks) and not self._blocks[k].nodes:
            k += dy  # skip group headers
        if 0 <= k < len(self._blocks):
            row = self._blocks[k].nodes
            self.select(row[min(c, len(row) - 1)])

    def action_page(self, direction: int) -> None:
        for _ in range(max(1, self.view_height // CELL_H)):
            self.action_move(0, direction)

    def on_click(self, event: events.Click) -> None:
        line = self.line_at(event.y)
        if line is None:
            return
        blk = self._blocks[bisect_right(self._starts, line) - 1]
        col = (event.x + round(self.scroll_offset.x)) // CELL_W
        if blk.nodes and col < len(blk.nodes):
            index = blk.nodes[col]
            if event.chain >= 2 and index == self.cursor:
                self.action_open()
            self.select(index)
