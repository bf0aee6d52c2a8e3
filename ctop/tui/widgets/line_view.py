"""Base for every widget whose size grows with the cluster: one Line-API `ScrollView`.

Only visible lines are drawn (`render_line`); subclasses build a line's strip (and cache it).
An optional sticky first line (a column header) stays put while the body scrolls under it;
when the content is wider than the view, the top border says where the rest is (`← → more`),
so the hint never covers a column title.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ctop.tui.colors import RICH, Palette


class LineView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LineView {
        background: $surface; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 0;
        border-title-align: right; border-title-color: $accent; border-title-style: bold;
    }
    """
    sticky = 0  # lines at the top that don't scroll (the column header)

    def __init__(
        self, *, palette: Palette = RICH, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.palette = palette
        self._count = 0  # body lines
        self._width = 0  # content width needed
        # what each widget row shows, and the (scroll x, scroll y, width) it was drawn at:
        # new data repaints only the rows that differ (an idle cluster repaints nothing)
        self._painted: dict[int, Strip] = {}
        self._painted_at: tuple[int, int, int] | None = None

    # -- for subclasses ------------------------------------------------------------------------

    def header_strip(self, width: int) -> Strip:
        return Strip.blank(width)

    def body_strip(self, line: int, width: int) -> Strip:
        raise NotImplementedError

    def set_size(self, lines: int, width: int) -> None:
        self._count, self._width = lines, width
        size = Size(width, lines + self.sticky)
        if size != self.virtual_size:
            if self._same_scrollbars(size):
                # what a layout pass would do for this widget, without re-laying out the
                # whole screen (a filter key at 10,000 nodes changes the line count only)
                self.set_reactive(ScrollView.virtual_size, size)
                self._scroll_update(size)  # scrollbar size and position, scroll clamped
            else:
                self.virtual_size = size  # a scrollbar comes or goes: the layout changes
            self.refresh()
        else:
            self.refresh_changed()

    def _same_scrollbars(self, size: Size) -> bool:
        """Would `size` as the virtual size show the same scrollbars as now?"""
        old = self.virtual_size
        view = self.container_size
        if not self.is_mounted or not view.area or old.width != size.width:
            return False
        return (old.height > view.height) == (size.height > view.height)

    def refresh_changed(self) -> None:
        """Repaint the rows whose line differs from what they show (all of them if the view
        scrolled or resized since they were drawn)."""
        sx, sy = self.scroll_offset
        width = self.scrollable_content_region.width
        if self._painted_at != (sx, sy, width) or not self._painted:
            self._painted.clear()
            self.refresh()
            return
        style = self.rich_style  # (Textual computes it from the DOM on every call)
        for y, shown in list(self._painted.items()):
            if self._line(y, style) != shown:
                del self._painted[y]
                self.refresh(Region(0, y, width, 1))

    # -- drawing -------------------------------------------------------------------------------

    @property
    def view_height(self) -> int:
        """Body lines visible at once."""
        return max(1, self.scrollable_content_region.height - self.sticky)

    def render_line(self, y: int) -> Strip:
        strip = self._line(y, self.rich_style)
        sx, sy = self.scroll_offset
        at = (sx, sy, self.scrollable_content_region.width)
        if at != self._painted_at:
            self._painted.clear()
            self._painted_at = at
        self._painted[y] = strip
        return strip

    def _line(self, y: int, style: Style) -> Strip:
        sx, sy = self.scroll_offset
        width = self.scrollable_content_region.width
        full = max(width, self._width)
        if y == 0:
            self._scroll_hint(sx, width, full)
        if y < self.sticky:
            # the sticky header: cropped once, like a body line (scrolled sideways with it)
            strip = self.header_strip(full)
        else:
            line = sy + y - self.sticky
            strip = self.body_strip(line, full) if 0 <= line < self._count else Strip.blank(full)
        return strip.crop_extend(sx, sx + width, None).apply_style(style)

    def _scroll_hint(self, sx: int, width: int, full: int) -> None:
        """Say in the top border when columns are hidden left or right of the view."""
        left, right = "←" if sx > 0 else "", "→ more" if sx + width < full else ""
        hint = " ".join(filter(None, (left, right)))
        if hint != (self.border_title or ""):
            self.border_title = hint or None

    def scroll_to_line(self, line: int) -> None:
        """Scroll just enough to make body line `line` visible."""
        top, h = round(self.scroll_offset.y), self.view_height
        if line < top:
            self.scroll_to(y=line, animate=False, immediate=True)
        elif line >= top + h:
            self.scroll_to(y=line - h + 1, animate=False, immediate=True)

    def line_at(self, y: int) -> int | None:
        """Body line under widget row y (mouse), if any."""
        line = round(self.scroll_offset.y) + y - self.sticky
        return line if y >= self.sticky and 0 <= line < self._count else None


def strip(segments: list[Segment], width: int) -> Strip:
    return Strip(segments).crop_extend(0, width, None)
