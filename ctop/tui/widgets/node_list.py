"""The nodes widget: one Line-API view that draws the arrangement as a table or as a grid.

Both views live in the same widget, each as a `NodeLayout` (node_layout.py; node_table.py,
node_grid.py), so `t` swaps how lines are drawn without moving focus, remounting the footer or
re-arranging 10,000 nodes; each layout keeps its own line cache across the toggle.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip

from ctop.snapshot import NodeView, Snapshot
from ctop.tui.arrange import Arrangement
from ctop.tui.colors import RICH, Palette
from ctop.tui.widgets.line_view import LineView
from ctop.tui.widgets.node_grid import GridLayout
from ctop.tui.widgets.node_layout import NodeLayout
from ctop.tui.widgets.node_table import TableLayout


class NodeList(LineView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(0, -1)", "Up", show=False,
                tooltip="move (grid: the card above / below; table: ← → scroll)"),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("pageup", "page(-1)", show=False, tooltip="a screenful up / down"),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False, tooltip="first / last node"),
        Binding("end", "edge(1)", show=False),
        # "Open", not "Open node": with every LB key shown, "? Help" must still fit 140 columns
        Binding("enter", "open", "Open", tooltip="open the node's detail"),
    ]

    class Open(Message):
        """The operator asked for a node's detail screen."""

        def __init__(self, node_id: str) -> None:
            super().__init__()
            self.node_id = node_id

    class Selected(Message):
        def __init__(self, node_id: str | None) -> None:
            super().__init__()
            self.node_id = node_id

    def __init__(
        self,
        *,
        mode: str = "table",
        palette: Palette = RICH,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(palette=palette, id=id, classes=classes)
        self.layouts: dict[str, NodeLayout] = {"table": TableLayout(self), "grid": GridLayout(self)}
        self.mode = mode
        self.snap: Snapshot | None = None
        self.arr: Arrangement | None = None
        self.cursor = 0  # index into arr.nodes
        self.selected_id: str | None = None
        self.sort = "name"  # marked in the table's column header

    @property
    def layout(self) -> NodeLayout:
        return self.layouts[self.mode]

    @property
    def sticky(self) -> int:  # type: ignore[override]
        return self.layout.sticky

    def set_mode(self, mode: str) -> None:
        """Table or grid: same arrangement, same selection, other lines."""
        if mode == self.mode:
            return
        self.mode = mode
        self.scroll_to(x=0, animate=False, immediate=True)
        if self.arr is not None:
            self.layout_lines()
            self.scroll_to_line(self.layout.line_of(self.cursor))

    def show(self, snap: Snapshot, arr: Arrangement) -> None:
        """New data (once per tick, or after filter/sort/group changed)."""
        if snap is not self.snap:
            for lay in self.layouts.values():
                lay.forget()
        if self.arr is None or arr.index is not self.arr.index:
            # a new order (sort, filter, grouping, or values that moved nodes): nearly every
            # row differs, so repaint them all rather than draw each row twice to compare
            self._painted.clear()
        self.snap, self.arr = snap, arr
        if self.selected_id is not None and self.selected_id in arr.index:
            self.cursor = arr.index[self.selected_id]
        self.cursor = max(0, min(self.cursor, len(arr.nodes) - 1))
        self.selected_id = arr.nodes[self.cursor].node_id if arr.nodes else None
        self.layout_lines()

    def layout_lines(self) -> None:
        self.set_size(*self.layout.layout())

    def on_resize(self) -> None:
        if self.arr is not None and self.layout.relayout_needed():
            self.layout_lines()
            self.scroll_to_line(self.line_of_cursor())

    def line_of_cursor(self) -> int:
        return self.layout.line_of(self.cursor)

    def header_strip(self, width: int) -> Strip:
        return self.layout.header_strip(width)

    def body_strip(self, line: int, width: int) -> Strip:
        return self.layout.body_strip(line, width)

    @property
    def selected(self) -> NodeView | None:
        if self.arr is None or not self.arr.nodes:
            return None
        return self.arr.nodes[self.cursor]

    def select(self, index: int) -> None:
        if self.arr is None or not self.arr.nodes:
            return
        index = max(0, min(index, len(self.arr.nodes) - 1))
        if index != self.cursor or self.selected_id is None:
            self.cursor = index
            self.selected_id = self.arr.nodes[index].node_id
            self.post_message(self.Selected(self.selected_id))
        self.scroll_to_line(self.line_of_cursor())
        self.refresh()

    # -- keys and mouse ------------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        if self.arr is None or not self.arr.nodes:
            return
        index = self.layout.move(self.cursor, dx, dy)
        if index is not None:
            self.select(index)

    def action_page(self, direction: int) -> None:
        if self.arr is not None and self.arr.nodes:
            self.select(self.layout.page(self.cursor, direction))

    def action_edge(self, end: int) -> None:
        if self.arr is not None:
            self.select(len(self.arr.nodes) - 1 if end else 0)

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Open(self.selected.node_id))

    def on_click(self, event: events.Click) -> None:
        line = self.line_at(event.y)
        if line is None or self.arr is None:
            return
        index = self.layout.index_at(line, event.x + round(self.scroll_offset.x))
        if index is not None:
            if event.chain >= 2 and index == self.cursor:
                self.action_open()
            self.select(index)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
