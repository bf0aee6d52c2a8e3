"""The `/` filter box: Textual's Input without a whole-screen layout per key stroke.

Input sets its virtual size on every change of its value, and a virtual size is a layout
reactive: each key typed would re-lay out the whole screen (at 10,000 nodes, tens of ms per
key). The box has a fixed size (styles.tcss) and no scrollbars, so the new virtual size only
moves its own horizontal scroll, which this does first, without a layout pass; Input then
finds the size already set and does the rest (suggestion, validation, Changed) as always.
"""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Input


class FilterBox(Input):
    def _watch_value(self, value: str) -> None:
        size = Size(self.content_width, 1)
        if not self.styles.auto_dimensions and size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)  # scroll clamped, as a layout pass would
        super()._watch_value(value)
