"""The history database's file modes: 0640, group from `[control] group`.

The database holds every node's history, the events and the load-balancer audit log: no
business of other local users. SQLite creates the -wal and -shm files with the mode and owner
of the database file, so creating that file first, 0640, is enough for all three.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat

DB_MODE = 0o640
DIR_MODE = 0o750


def group_id(name: str | None) -> int | None:
    """The id of group `name` (None or "" -> None). KeyError if there is no such group."""
    return grp.getgrnam(name).gr_gid if name else None


def private_database(path: str, group: int | None = None) -> None:
    """Create the database file (and its directory) before SQLite does, 0640 and of `group`;
    tighten a file an older version made 0644, and its -wal and -shm."""
    if path == ":memory:" or path.startswith("file:"):
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        if group is not None:
            os.chown(directory, -1, group)
    # Only a missing file is opened here: closing any descriptor of a database file drops
    # every POSIX lock this process holds on it, and SQLite's other connections in this
    # process (the store, when the journal opens the same file) would lose theirs; another
    # process then takes itself for the last user and deletes the WAL under them.
    if not os.path.lexists(path):
        with contextlib.suppress(FileExistsError):  # another process was first
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_MODE))
    for name in (path, path + "-wal", path + "-shm"):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            continue
        if st.st_uid != os.geteuid():
            continue  # another user's (root's) database: theirs to mend
        if stat.S_IMODE(st.st_mode) & ~DB_MODE:
            os.chmod(name, stat.S_IMODE(st.st_mode) & DB_MODE)
        if group is not None and st.st_gid != group:
            os.chown(name, -1, group)
