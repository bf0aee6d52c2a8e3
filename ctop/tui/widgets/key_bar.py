"""The key bar at the bottom of every screen: what Textual's `Footer` shows, in one widget.

Textual's Footer is a container of one `FooterKey` widget per binding, and it throws them away
and mounts new ones (CSS matched and applied to each) whenever the screen's bindings change:
on every focus change and every screen switch. At 10,000 nodes that, and laying the keys out,
was most of what `tab`, `enter`, `esc`, `a` and `?` cost (100-300 ms a key, measured with
pyinstrument). This bar draws the same line — " key description " per shown binding, the key
in the theme's footer-key colours, a disabled one dimmed — as one strip, rebuilt only when the
list of keys really changed. A click on a key presses it, as on the Footer.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget

DIM = Style(dim=True)


class Item(NamedTuple):
    """One key on the bar: the binding's key, what is shown, and where."""

    key: str
    label: str  # key display
    description: str
    enabled: bool
    tooltip: str


class KeyBar(Widget, can_focus=False):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-bar--key", "key-bar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom; height: 1;
        color: $footer-foreground; background: $footer-background;
        .key-bar--key {
            color: $footer-key-foreground; background: $footer-key-background; text-style: bold;
        }
        .key-bar--description {
            color: $footer-description-foreground; background: $footer-description-background;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: tuple[Item, ...] = ()
        self._spans: list[tuple[int, int, Item]] = []  # (first column, end column, item)
        self._strip: Strip | None = None
        self._strip_at: tuple[int, Style] | None = None  # (width, base style) it was drawn at

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.show_keys()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            # (published while focus moves: the screen's bindings are settled after refresh)
            self.call_after_refresh(self.show_keys)

    def show_keys(self) -> None:
        """The screen's shown bindings, one per action, in the Footer's order."""
        if not self.is_attached:
            return
        items: dict[str, Item] = {}
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.show and binding.action not in items:
                items[binding.action] = Item(
                    binding.key, self.app.get_key_display(binding), binding.description,
                    active.enabled, active.tooltip or binding.tooltip)
        shown = tuple(items.values())
        if shown != self.items:
            self.items = shown
            self._strip = None
            self.refresh()

    # -- drawing -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width, base = self.size.width, self.rich_style
        if y:
            return Strip.blank(width, base)
        if self._strip is None or self._strip_at != (width, base):
            self._strip, self._strip_at = self._draw(width, base), (width, base)
        return self._strip

    def _draw(self, width: int, base: Style) -> Strip:
        key_style = base + self.get_component_rich_style("key-bar--key")
        text_style = base + self.get_component_rich_style("key-bar--description")
        segments: list[Segment] = []
        self._spans = []
        x = 0
        for item in self.items:
            dim = DIM if not item.enabled else None
            key = Segment(f" {item.label} ", key_style + dim)
            text = Segment(f"{item.description} ", text_style + dim) if item.description else None
            end = x + key.cell_length + (text.cell_length if text else 0)
            segments += [key, text] if text else [key]
            self._spans.append((x, end, item))
            x = end
        return Strip(segments).crop_extend(0, width, base)

    # -- mouse ---------------------------------------------------------------------------------

    def item_at(self, x: int) -> Item | None:
        return next((item for first, end, item in self._spans if first <= x < end), None)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        item = self.item_at(event.x)
        if item is None:
            return
        if item.enabled:
            self.app.simulate_key(item.key)
        else:
            self.app.bell()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        item = self.item_at(event.x)
        tooltip = (item.tooltip or item.description) if item else None
        if tooltip != self.tooltip:
            self.tooltip = tooltip
