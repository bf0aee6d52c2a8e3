"""The node detail's store reads (history charts, the node's events) off the event loop, on one
thread kept for the screen's life.

They used to be Textual thread workers, one per read: a `Worker`, its asyncio task, context,
closures and locks form reference cycles that only the cyclic collector frees (~50 objects a
read, measured with gc.DEBUG_SAVEALL), and the charts reload every second at the default span,
so an open node detail made cyclic garbage all the time — what the frozen heap
(ctop/gcpolicy.py) must not get. Here a read is a function call on a long-lived thread and its
result a callback handed to the loop (`call_soon_threadsafe`): nothing cyclic is left behind.
Like an exclusive worker group, a read of a kind still waiting is replaced by a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


class Reads:
    def __init__(self, failed: Failed) -> None:
        self._failed = failed  # on the loop: a read that raised (the thread goes on)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, tuple[Callable[[], Any], Done]] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, kind: str, read: Callable[[], Any], done: Done) -> None:
        """Run `read()` on the reads' thread, then `done(result)` on the event loop. Called
        from the event loop."""
        self._loop = asyncio.get_running_loop()
        with self._wake:
            self._pending[kind] = (read, done)  # a waiting read of this kind is stale now
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="node-detail-reads",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._pending.clear()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                _, (read, done) = self._pending.popitem()
            try:
                result = read()
            except Exception as exc:  # a store that cannot be read: say so, keep reading
                self._hand(self._failed, exc)
                continue
            self._hand(done, result)

    def _hand(self, callback: Callable[[Any], None], value: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the app's loop closed: nobody to show it to
            loop.call_soon_threadsafe(callback, value)
