"""Stop Textual's `Strip` from caching itself in itself: the UI's cyclic garbage.

`Strip.divide(cuts)` and `Strip.crop_extend(start, end, style)` memoise their result in a small
cache on the strip. When the result is the strip itself (one cut at its own length; a crop of
its whole width), the strip ends up in its own cache: a reference cycle, so the strip, its
seven caches and its segment list are freed only by the cyclic collector. The compositor
divides every line it paints, so every repainted line became cyclic garbage: at 160x50 about
200 strips and 4,800 objects a tick (measured with `gc.DEBUG_SAVEALL`, bench/ui.py --garbage).
With the heap frozen between ticks (ctop/gcpolicy.py) they piled up until a full collection.

`install()` wraps both methods so the identity case returns the strip without caching it; any
other call goes to Textual's own method, unchanged. Results are the same strips as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.style import Style
from textual.strip import Strip

_divide = Strip.divide
_crop_extend = Strip.crop_extend


def _divide_acyclic(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    cuts = list(cuts)  # may be a generator: looked at twice
    length = self.cell_length
    if [cut for cut in cuts if cut <= length] == [length]:
        return [self]  # what Textual returns, minus the self-reference in its cache
    return _divide(self, cuts)


def _crop_extend_acyclic(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start <= 0 and end == self.cell_length:
        return self  # extend and crop would both be no-ops
    return _crop_extend(self, start, end, style)


def install() -> None:
    """Patch `Strip` once (idempotent)."""
    if getattr(Strip.divide, "__name__", "") == _divide_acyclic.__name__:
        return
    Strip.divide = _divide_acyclic  # type: ignore[method-assign]
    Strip.crop_extend = _crop_extend_acyclic  # type: ignore[method-assign]
