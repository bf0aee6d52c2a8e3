"""A tmux session the end-to-end tests drive: run a command, read the screen, wait for text."""

from __future__ import annotations

import subprocess
import time


class TmuxTerminal:
    def __init__(self, session: str) -> None:
        self.session = session  # other suites may share the tmux server: one name each

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True,
                              timeout=10).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-t", self.session, "-p")

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")
