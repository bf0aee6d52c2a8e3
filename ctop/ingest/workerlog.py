"""A receiver worker's output, read by the engine instead of reaching the terminal.

A worker (ctop/ingest/worker.py) inherits no terminal: its stdout and stderr are one pipe that
the engine reads in its event loop. While the UI owns the terminal (an embedded engine), text
written there would tear the screen; so each of the worker's log records goes to the engine's
log at its own level (with the UI, warnings become events: ctop/eventlog.py), and anything
else — the traceback of a crash — goes to the log as one record at INFO (`ctop serve`'s
log), its last line kept for the event that reports the death ("exit status 1: ValueError:
…").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re

log = logging.getLogger("ctop.ingest.worker")

# The worker's own records: "LEVEL logger: message" (its logging.basicConfig format).
_RECORD = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: (.*)")
MAX_LINE = 4096  # characters kept of one line
MAX_BLOCK = 200  # lines kept of one block of text that is not records (a traceback)


class OutputRelay:
    """Reads one worker's output pipe without blocking the loop; see the module's text."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, name: str) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self.loop = loop
        self.name = name  # "receiver worker 1", or the spare's until it takes a slot
        self.partial = b""
        self.block: list[str] = []  # lines of text that are not records, not logged yet
        self.last = ""  # the last such line: a traceback ends with its exception
        loop.add_reader(fd, self.read)

    def read(self) -> None:
        """Whatever the pipe holds now; at its end, the reader is removed."""
        fd = self.fd
        if fd is None:
            return
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._end()
                return
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            if len(self.partial) > MAX_LINE:  # a line without end: take it as it is
                lines.append(self.partial)
                self.partial = b""
            for line in lines:
                self._line(line.decode("utf-8", "replace")[:MAX_LINE].rstrip())

    def close(self) -> None:
        """The process has ended: take what it wrote last, then let the pipe go."""
        self.read()
        self._end()

    def _end(self) -> None:
        if self.partial:
            self._line(self.partial.decode("utf-8", "replace")[:MAX_LINE].rstrip())
            self.partial = b""
        self._flush()
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _line(self, line: str) -> None:
        if not line:
            return
        record = _RECORD.fullmatch(line)
        if record is None:
            self.last = line.strip()
            if len(self.block) < MAX_BLOCK:
                self.block.append(line)
            return
        self._flush()
        log.log(logging.getLevelName(record.group(1)), "%s: %s", self.name, record.group(2))

    def _flush(self) -> None:
        if self.block:
            log.info("%s wrote:\n%s", self.name, "\n".join(self.block))
            self.block = []
