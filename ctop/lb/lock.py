"""One change at a time on the balancers, across threads and processes.

`ctop lb` without a daemon, the daemon itself and an embedded UI each hold their own
LBController on the same balancers and journal. Plan, apply, read back and journal must not
interleave between them (two weights at once used to undo each other), so each change holds an
flock on a file next to the database. Reentrant within a thread: a confirmed plan is checked and
then run under the same hold.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


def lock_path(db_path: str | os.PathLike[str]) -> Path | None:
    """The lock file next to the database (None for an in-memory database)."""
    if str(db_path) == ":memory:":
        return None
    return Path(f"{db_path}.lb-lock")


class SharedLock:
    """A reentrant thread lock plus an exclusive flock (when `path` is given)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> SharedLock:
        self._thread_lock.acquire()
        try:
            if self._depth == 0 and self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = _open(self.path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # waits for the other process's change
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._thread_lock.release()


def _open(path: Path) -> int:
    """Read-only is enough for flock, so a member of the control group can take a lock file
    root made; mode 0660 keeps everyone else from holding it (and the changes) up."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o660)
