"""Opening the silences (ctop.silences) of a history database: its file, its migrations."""

from __future__ import annotations

from ctop.filemodes import private_database
from ctop.silences import SilenceBook
from ctop.store.schema import connect, migrate


def open_book(path: str) -> SilenceBook:
    """The silences of the history database at `path` (created and migrated if need be)."""
    private_database(path)  # 0640, like the history it is part of (`ctop silence` alone)
    db = connect(path)
    migrate(db)
    return SilenceBook(db)
