"""What the node table and the node grid share: the arrangement, the selection, the messages."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message

from ctop.model import NodeView, Snapshot
from ctop.tui.arrange import Arrangement
from ctop.tui.widgets.line_view import LineView


class NodeList(LineView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(0, -1)", "Up", show=False),
        Binding("down,j", "move(0, 1)", "Down", show=False),
        Binding("left,h", "move(-1, 0)", "Left", show=False),
        Binding("right,l", "move(1, 0)", "Right", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False),
        Binding("end", "edge(1)", show=False),
        Binding("enter", "open", "Open node"),
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

    snap: Snapshot | None = None
    arr: Arrangement | None = None
    cursor = 0  # index into arr.nodes
    selected_id: str | None = None

    def show(self, snap: Snapshot, arr: Arrangement) -> None:
        """New data (once per tick, or after filter/sort/group changed)."""
        self.snap, self.arr = snap, arr
        if self.selected_id is not None and self.selected_id in arr.index:
            self.cursor = arr.index[self.selected_id]
        self.cursor = max(0, min(self.cursor, len(arr.nodes) - 1))
        self.selected_id = arr.nodes[self.cursor].node_id if arr.nodes else None
        self.layout_lines()

    def layout_lines(self) -> None:
        raise NotImplementedError

    def line_of_cursor(self) -> int:
        raise NotImplementedError

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

    def select_id(self, node_id: str) -> None:
        if self.arr is not None and node_id in self.arr.index:
            self.select(self.arr.index[node_id])

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Open(self.selected.node_id))

    def action_edge(self, end: int) -> None:
        if self.arr is not None:
            self.select(len(self.arr.nodes) - 1 if end else 0)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
