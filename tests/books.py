"""The pack's books as a test reads them: the data folder's SQLite file, or the PostgreSQL database
FAL_AUDIO_DATABASE_URL names (the `postgres` fixture), through a connection of its own."""

import contextlib
import os

from support import pack_module


def journal_at(path):
    """A journal of its own: the SQLite file at `path`, or the test database when the books are there."""
    journal, url = pack_module("money.journal"), os.environ.get("FAL_AUDIO_DATABASE_URL")
    return journal.Journal(url=url) if url else journal.Journal(path)


def books(sql: str, params: tuple = (), book=None) -> list:
    """Run `sql` (SQLite's words, `?` placeholders) on `book` (default: the pack's current books); its
    rows, as tuples."""
    book = book or pack_module("money.journal").current()
    with contextlib.closing(book.store.connect()) as conn:
        cursor = conn.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def stored_text(book=None) -> str:
    """Every row of every table of the books, as text (what a database holds, where no file shows it)."""
    tables = ("requests", "ledger", "uploads")
    return "\n".join(str(row) for table in tables for row in books(f"SELECT * FROM {table}", (), book))
