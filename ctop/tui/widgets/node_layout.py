"""What a view of the nodes widget must do: turn the arrangement into lines and map keys and
clicks back to nodes. Its own module so the widget (node_list.py) and its two layouts
(node_table.py, node_grid.py) import it without importing each other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.strip import Strip

from ctop.snapshot import Aggregate

if TYPE_CHECKING:
    from ctop.tui.widgets.node_list import NodeList


class NodeLayout:
    """How one view turns the arrangement into lines; reads its data from the widget."""

    sticky = 0  # column header lines

    def __init__(self, view: NodeList) -> None:
        self.view = view

    def forget(self) -> None:
        """A new tick: drop cached lines (they show ages and ratios of the old one)."""

    def layout(self) -> tuple[int, int]:
        """New arrangement or size: (body lines, content width)."""
        raise NotImplementedError

    def relayout_needed(self) -> bool:
        """After a resize: does the layout depend on the width?"""
        return False

    def line_of(self, index: int) -> int:
        """The body line to keep on screen when node `index` is selected."""
        raise NotImplementedError

    def header_strip(self, width: int) -> Strip:
        return Strip.blank(width)

    def group_header(self, g: int) -> tuple[str, int, Aggregate | None]:
        """Group g of the arrangement: its name, how many nodes it shows, and its totals."""
        arr, snap = self.view.arr, self.view.snap
        assert arr is not None and snap is not None
        name, start, end = arr.groups[g]
        totals = next((gv.totals for gv in snap.groups if gv.name == name), None)
        return name, end - start, totals

    def body_strip(self, line: int, width: int) -> Strip:
        raise NotImplementedError

    def move(self, index: int, dx: int, dy: int) -> int | None:
        """The node index an arrow key leads to (None: the key scrolled instead)."""
        raise NotImplementedError

    def page(self, index: int, direction: int) -> int:
        raise NotImplementedError

    def index_at(self, line: int, x: int) -> int | None:
        """Node under body line `line`, content column x (mouse)."""
        raise NotImplementedError
