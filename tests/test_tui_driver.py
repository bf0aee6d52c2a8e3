"""Esc reaches the app when its escape delay is over, not at Textual's next input tick: the
input thread of ctop's driver on a real pty (raw mode, as a terminal), a lone ESC written."""

from __future__ import annotations

import os
import pty
import signal
import threading
import time
import tty

import pytest
from textual import constants, events
from textual.drivers.linux_driver import LinuxDriver

from ctop.tui.driver import IDLE_WAKE_S, PromptEscapeDriver, wake_in


def test_the_input_thread_wakes_when_a_held_escape_is_due():
    assert wake_in(None, 100.0) == IDLE_WAKE_S  # nothing held: Textual's tick
    assert wake_in(100.02, 100.0) == pytest.approx(0.02)  # held: when it is due
    assert wake_in(99.0, 100.0) == 0.0  # overdue: at once


async def _escape_ms(driver_class: type[LinuxDriver], tries: int = 3) -> float:
    """The fastest of `tries` lone ESC bytes, from the write until the driver's Key."""
    got: list[tuple[float, str]] = []

    class Recording(driver_class):  # type: ignore[misc, valid-type]
        def process_message(self, message: object) -> None:
            if isinstance(message, events.Key):
                got.append((time.monotonic(), message.key))

    master, slave = pty.openpty()
    tty.setraw(slave)
    handlers = signal.getsignal(signal.SIGTSTP), signal.getsignal(signal.SIGCONT)
    try:
        driver = Recording(app=None)  # type: ignore[arg-type]  (the input thread needs none)
        driver.fileno = slave
        thread = threading.Thread(target=driver.run_input_thread, daemon=True)
        thread.start()
        best = float("inf")
        for _ in range(tries):
            time.sleep(0.03)
            got.clear()
            sent = time.monotonic()
            os.write(master, b"\x1b")
            deadline = sent + 2.0
            while not got and time.monotonic() < deadline:
                time.sleep(0.001)
            assert got and got[0][1] == "escape", got
            best = min(best, got[0][0] - sent)
        driver.exit_event.set()
        thread.join(2)
    finally:
        signal.signal(signal.SIGTSTP, handlers[0])
        signal.signal(signal.SIGCONT, handlers[1])
        os.close(master)
        os.close(slave)
    return best * 1000


async def test_a_lone_escape_is_delivered_when_due_not_at_the_next_tick(monkeypatch):
    monkeypatch.setattr(constants, "ESCAPE_DELAY", 0.01)
    # Textual's driver: the held ESC waits for select()'s 0.1 s timeout
    assert await _escape_ms(LinuxDriver) >= 90
    assert await _escape_ms(PromptEscapeDriver) < 60
