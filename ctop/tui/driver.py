"""Esc without waiting for Textual's input tick.

A terminal sends the Escape key as a lone ESC byte, which is also how every escape sequence
(arrows, function keys) starts: Textual holds a lone ESC for ESCDELAY (100 ms) in case more
follows. Its input thread only looks at that timer when select() returns, and it waits up to
0.1 s at a time, so Esc (back, close, clear the filter) reached the app 100-200 ms after the
key in any terminal without the kitty keyboard protocol (tmux, xterm, GNOME Terminal; measured
with `bench/ui.py keys --tmux`). This driver's input thread wakes when a held ESC is due, and
ctop holds it for 50 ms (ctop.tui.launch) unless the operator set ESCDELAY: escape sequences
arrive in one write (a terminal, ssh), so the wait only has to cover a scheduling gap.

The loop is Textual 8.2.8's `LinuxDriver.run_input_thread` (textual is pinned) with the
select timeout from `wake_in`.
"""

from __future__ import annotations

import os
import selectors
from codecs import getincrementaldecoder

from textual._loop import loop_last
from textual._parser import ParseError
from textual._time import get_time  # the parser's clock
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

IDLE_WAKE_S = 0.1  # Textual's select timeout with nothing held


def wake_in(timeout_at: float | None, now: float) -> float:
    """Seconds the input thread may wait in select(): until a held ESC is due, else the idle
    tick."""
    if timeout_at is None:
        return IDLE_WAKE_S
    return min(IDLE_WAKE_S, max(0.0, timeout_at - now))


class PromptEscapeDriver(LinuxDriver):
    def run_input_thread(self) -> None:
        """Wait for input and dispatch events (Textual's loop; see the module's docstring)."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        fileno = self.fileno
        EVENT_READ = selectors.EVENT_READ
        parser = XTermParser(self._debug)
        feed = parser.feed
        tick = parser.tick
        decode = getincrementaldecoder("utf-8")().decode
        read = os.read

        def process_selector_events(
            selector_events: list[tuple[selectors.SelectorKey, int]], final: bool = False
        ) -> None:
            for last, (_selector_key, mask) in loop_last(selector_events):
                if mask & EVENT_READ:
                    unicode_data = decode(read(fileno, 1024 * 4), final=final and last)
                    if not unicode_data:
                        break  # stdin piped
                    for event in feed(unicode_data):
                        self.process_message(event)
            for event in tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                wait = wake_in(parser._timeout_time, get_time())
                process_selector_events(selector.select(wait))
            selector.unregister(self.fileno)
            process_selector_events(selector.select(IDLE_WAKE_S), final=True)
        finally:
            selector.close()
            try:
                for _event in feed(""):
                    pass
            except (EOFError, ParseError):
                pass
