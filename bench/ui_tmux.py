"""Keys in a real terminal for `bench/ui.py keys --tmux`: a tmux control-mode client, the
main-screen keys with what each puts on the screen, and the timing of one key.

A key's time runs from the moment the bench hands it to tmux (`send-keys`) until tmux's copy
of the pane (`capture-pane`) shows the key's result: the sort in the header, the help, the
node detail's title, the filter's text and its count of rows. It includes what an operator's
terminal adds too: tmux writing the key to the pty, Textual's input thread reading it (and,
for a lone Esc, Textual's wait for the rest of an escape sequence: ESCDELAY), the screen's
output parsed by tmux. What tmux and the polling add on their own is measured apart on a
pane running `cat` (the kernel echoes the key: no program in between): the floor.

Polling goes through one control-mode client (`tmux -C`): a capture is a line written to a
pipe, not a process started, so polling every 2 ms costs the UI being measured next to
nothing.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

Shown = Callable[[str], bool]  # the pane's text -> the key's result is on it


class Control:
    """A tmux control-mode client attached to `session`: commands in, their output back."""

    def __init__(self, tmux: list[str], session: str) -> None:
        self.proc = subprocess.Popen([*tmux, "-C", "attach-session", "-t", session],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        token = f"ctop-bench-sync-{time.monotonic_ns()}"
        self._send(f"display-message -p {token}")
        while token not in self._answer():  # (the attach's own answer comes first)
            pass

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def _answer(self) -> list[str]:
        """The next command's output (between %begin and %end); notifications skipped."""
        assert self.proc.stdout is not None
        out: list[str] | None = None
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                raise RuntimeError("the tmux control client ended")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if out is None:
                if line.startswith("%begin "):
                    out = []
            elif line.startswith("%end "):
                return out
            elif line.startswith("%error "):
                raise RuntimeError("tmux: " + "\n".join(out))
            else:
                out.append(line)

    def run(self, command: str) -> list[str]:
        self._send(command)
        return self._answer()

    def screen(self, target: str) -> str:
        return "\n".join(self.run(f"capture-pane -p -t {target}"))

    def keys(self, target: str, *keys: str, literal: bool = False) -> None:
        flag = " -l" if literal else ""
        self.run(f"send-keys{flag} -t {target} {' '.join(map(shlex.quote, keys))}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far, ns (the scheduler's own count: exact, where
    /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def timed_key(ctl: Control, target: str, key: str, shown: Shown, *, timeout: float = 15.0,
              poll: float = 0.002, pid: int | None = None) -> tuple[float, float]:
    """Milliseconds from handing `key` to tmux until the pane shows its result, and the CPU
    the process `pid` (the UI) used meanwhile (0 without a pid)."""
    before = ctl.screen(target)
    if shown(before):  # the result would be read off a screen from before the key
        raise SystemExit(f"{target}: the result of {key!r} is on the screen before the key:\n"
                         f"{before}")
    cpu = cpu_ns(pid) if pid else 0
    started = time.perf_counter()
    ctl.keys(target, key)
    while True:
        screen = ctl.screen(target)
        if shown(screen):
            took = (time.perf_counter() - started) * 1000
            return took, (cpu_ns(pid) - cpu) / 1e6 if pid else 0.0
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{target}: {key!r} showed no result in {timeout:.0f} s:\n{screen}")
        time.sleep(poll)


def wait_shown(ctl: Control, target: str, shown: Shown, what: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = ctl.screen(target)
        if shown(screen):
            return screen
        time.sleep(0.05)
    raise SystemExit(f"{target}: never showed {what}:\n{screen}")


def floor_ms(ctl: Control, target: str) -> float:
    """One key through tmux to `cat` (the pty echoes it) and back into tmux's screen."""
    count = ctl.screen(target).count("x")
    return timed_key(ctl, target, "x", lambda s: s.count("x") > count)[0]


# -- the keys and what each shows --------------------------------------------------------------


def _header(screen: str) -> str:
    return "\n".join(screen.splitlines()[:2])


def in_header(text: str) -> Shown:
    return lambda s: text in _header(s)


def on_screen(text: str) -> Shown:
    return lambda s: text in s


def not_on_screen(text: str) -> Shown:
    return lambda s: text not in s


def filtered(typed: str, nodes: int) -> Shown:
    """The header counts the rows the filter `typed` leaves (both trees' header)."""
    mark = re.compile(rf"filter “{re.escape(typed)}” \d+/{nodes}\b")
    return lambda s: mark.search(_header(s)) is not None


def main_view(view: str, sort: str, grouped: bool) -> Shown:
    return in_header(f"{view} · sort {sort} · {'grouped' if grouped else 'ungrouped'}")


def key_bar_without(text: str) -> Shown:
    """The last line (the key bar) no longer offers `text` (a focus change took it away)."""
    return lambda s: text not in (s.rstrip("\n").splitlines() or [""])[-1]


class Key(NamedTuple):
    label: str
    key: str  # tmux's name for it
    shown: Shown  # its result is on the screen
    back: str = ""  # pressed after it, untimed, to get back
    back_shown: Shown | None = None


def main_keys(nodes: int, typed: str = "999") -> list[Key]:
    """Every main-screen key, in an order that ends where it started (table, sorted by name,
    grouped, no filter, nodes focused). The filter narrows with each key (node-00999...: the
    bench's node names; its addresses, 127.0.0.1, match no 9)."""
    sorts = ("cpu", "mem", "conns", "ratio", "state", "name")
    main = main_view("table", "name", True)
    keys = [Key(f"s (sort {s})", "s", main_view("table", s, True)) for s in sorts]
    keys += [
        Key("g (ungroup)", "g", main_view("table", "name", False)),
        Key("g (group)", "g", main),
        Key("t (grid)", "t", main_view("grid", "name", True)),
        Key("t (table)", "t", main),
        Key("tab (LB pane)", "Tab", key_bar_without(" Open "), "BTab", on_screen(" Open ")),
        Key("enter (node detail)", "Enter", on_screen(" ago   history: ")),
        Key("escape (back)", "Escape", main),
        Key("a (alerts)", "a", on_screen("Alerts and events"), "Escape", main),
        Key("? (help)", "?", on_screen("drain: no new connections"), "Escape",
            not_on_screen("drain: no new connections")),
        Key("/ (filter box)", "/", on_screen("filter: name, group")),
    ]
    keys += [Key(f"filter key {k + 1} {typed[k]!r}", typed[k], filtered(typed[:k + 1], nodes))
             for k in range(len(typed))]
    keys.append(Key("escape (clear filter)", "Escape",
                    lambda s: main(s) and "filter “" not in _header(s)))
    return keys
