"""Opening the silences (ctop.silences) of a history database: its file, its migrations."""

from __future__ import annotations

from ctop.silences import SilenceBook
from ctop.store.schema import connect, migrate


def open_book(path: str) -> SilenceBook:
    """The silences of the history database at `path` (created and migrated if need be)."""
    db = connect(path)
    migrate(db)
    return SilenceBook(db)
