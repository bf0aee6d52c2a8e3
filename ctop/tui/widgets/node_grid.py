"""The panel grid: a compact card per node, drawn as lines of the nodes widget, so it stays
cheap however many nodes there are. Cards flow left to right, a group header above each group;
every card row starts at column 0, so a card's column is the same in every group.

Cards fill the width: as many columns as fit at the narrowest card (but no more than the largest
group needs), then every card widens to share the rest (longer meters and CPU history, and the
load when there is room)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from rich.segment import Segment
from textual.strip import Strip

from ctop.snapshot import NodeView
from ctop.tui.format import count, fit, rate
from ctop.tui.widgets.cells import meter, pad, service_dots, spark
from ctop.tui.widgets.line_view import strip
from ctop.tui.widgets.node_layout import NodeLayout

CARD_W = 26  # narrowest card; one blank column between cards
MAX_CARD_W = 84  # a group of 3 fills 250 columns; wider, a card's meters say nothing more
CARD_LINES = 5  # lines per card; one blank line between card rows
CELL_W, CELL_H = CARD_W + 1, CARD_LINES + 1
WIDE_INNER = 40  # from this inner width the traffic line also shows the load


@dataclass(frozen=True, slots=True)
class Block:
    """A run of lines: a group header (start == end) or one row of cards [start, end)."""

    first_line: int
    group: int
    start: int = 0
    end: int = 0

    @property
    def cards(self) -> int:
        return self.end - self.start


def fits(nodes: int, groups: int, width: int, height: int) -> bool:
    """Would the grid show every node in this area? (else the table is the better default)"""
    cols = max(1, width // CELL_W)
    rows = -(-nodes // cols) + groups  # worst case: every group ends a partial row
    return rows * CELL_H + groups <= height + 1


class GridLayout(NodeLayout):
    def __init__(self, view) -> None:
        super().__init__(view)
        self._blocks: list[Block] = []
        self._starts: list[int] = []  # first line of each block (bisect: line -> block)
        self._rows: list[int] = []  # index into _blocks of each card row, top to bottom
        self._row_starts: list[int] = []  # first node of each card row (bisect: node -> row)
        self._cards: dict[tuple[int, bool, bool], tuple[NodeView, list[list[Segment]]]] = {}
        self._cols = 1
        self._cell_w = CELL_W  # card width + the blank column; the width decides it
        self._want: tuple[int, int] | None = None  # (column kept by up/down, where it led)

    def _fit(self) -> tuple[int, int]:
        """(columns, cell width) for the view's width and the arrangement's largest group."""
        width = self.view.size.width - 1  # the scrollbar's column, whether it shows yet or not
        arr = self.view.arr
        largest = max((end - start for _, start, end in arr.groups), default=0) if arr else 0
        if arr is not None and not arr.groups:
            largest = len(arr.nodes)
        cols = max(1, min(width // CELL_W, largest or 1))
        return cols, max(CELL_W, min(MAX_CARD_W + 1, width // cols))

    @property
    def cols(self) -> int:
        return self._fit()[0]

    def forget(self) -> None:
        self._cards = {}

    def relayout_needed(self) -> bool:
        return self._fit() != (self._cols, self._cell_w)

    def layout(self) -> tuple[int, int]:
        arr = self.view.arr
        assert arr is not None
        cols, cell_w = self._fit()
        if cell_w != self._cell_w:
            self._cards = {}  # drawn at the old width
        self._cols, self._cell_w = cols, cell_w
        blocks: list[Block] = []
        rows: list[int] = []
        line = 0
        groups = arr.groups or (("", 0, len(arr.nodes)),)
        for g, (_, start, end) in enumerate(groups):
            if arr.groups:
                blocks.append(Block(line, g))
                line += 1
            for row in range(start, end, cols):
                rows.append(len(blocks))
                blocks.append(Block(line, g, row, min(row + cols, end)))
                line += CELL_H
        self._blocks, self._rows = blocks, rows
        self._starts = [b.first_line for b in blocks]
        self._row_starts = [blocks[r].start for r in rows]
        return line, cols * cell_w - 1  # (the last card needs no blank column after it)

    def _row_of(self, index: int) -> int:
        """Card row (position in _rows) holding node `index`."""
        return max(0, bisect_right(self._row_starts, index) - 1)

    def line_of(self, index: int) -> int:
        if not self._rows:
            return 0
        return self._blocks[self._rows[self._row_of(index)]].first_line + CARD_LINES - 1

    # -- keys and mouse ------------------------------------------------------------------------

    def move(self, index: int, dx: int, dy: int) -> int:
        if dx or not self._rows:
            return index + dx
        return self._vertical(index, dy)

    def page(self, index: int, direction: int) -> int:
        rows = max(1, self.view.view_height // CELL_H)
        return self._vertical(index, direction * rows)

    def _vertical(self, index: int, rows: int) -> int:
        """The card `rows` card rows up or down, in the same column (group headers skipped).

        A shorter row (a group's last) takes its last card, but the column is remembered, so
        moving on returns to it, as a text editor's cursor does."""
        r = self._row_of(index)
        col = index - self._row_starts[r]
        if self._want is not None and self._want[1] == index:
            col = self._want[0]
        target = max(0, min(r + rows, len(self._rows) - 1))
        blk = self._blocks[self._rows[target]]
        out = blk.start + min(col, blk.cards - 1)
        self._want = (col, out)
        return out

    def index_at(self, line: int, x: int) -> int | None:
        blk = self._blocks[bisect_right(self._starts, line) - 1]
        col = x // self._cell_w
        if blk.cards and col < blk.cards and line - blk.first_line < CARD_LINES:
            return blk.start + col
        return None

    # -- drawing -------------------------------------------------------------------------------

    def body_strip(self, line: int, width: int) -> Strip:
        k = bisect_right(self._starts, line) - 1
        blk = self._blocks[k]
        sub = line - blk.first_line
        if not blk.cards:
            return self._group_strip(blk.group, width)
        if sub >= CARD_LINES:
            return Strip.blank(width)
        segs: list[Segment] = []
        for i in range(blk.start, blk.end):
            segs += self._card(i)[sub]
            segs.append(Segment(" "))
        return strip(segs, width)

    def _group_strip(self, g: int, width: int) -> Strip:
        pal = self.view.palette
        name, shown, totals = self.group_header(g)
        segs = [
            Segment(f"▾ {name or '(no group)'} ", pal.group),
            Segment(f"{shown} nodes", pal.dim),
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
        v = self.view
        assert v.arr is not None
        node = v.arr.nodes[i]
        cur = i == v.cursor
        key = (id(node), cur, cur and v.has_focus)
        hit = self._cards.get(key)
        if hit is not None and hit[0] is node:
            return hit[1]
        lines = self._draw_card(node, cur)
        if len(self._cards) > 4096:
            self._cards.clear()
        self._cards[key] = (node, lines)
        return lines

    def _draw_card(self, n: NodeView, cur: bool) -> list[list[Segment]]:
        v = self.view
        pal = v.palette
        live = pal.liveness(n.liveness)
        edge = Segment("█" if cur else "▌", live)
        inner = self._cell_w - 3
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
                Segment(f"{count(n.conns):<7}", pal.value),
                *([Segment("load ", pal.dim), Segment(f"{n.load1:.2f}", pal.value)]
                  if inner >= WIDE_INNER else []),
            ],
            [
                *service_dots(n.services, 6, pal),
                Segment(" "),
                spark(n.cpu_history, inner - 7, pal.label),
            ],
        ]
        bg = (pal.cursor if v.has_focus else pal.cursor_blur) if cur else pal.card
        out = []
        for segs in lines:
            row = [edge, Segment(" "), *pad(segs, inner)]
            out.append(list(Segment.apply_style(row, post_style=bg)))
        return out
