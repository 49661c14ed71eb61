"""The books' schema is created, upgraded and versioned on opening (issue 22)."""

import sqlite3

import pytest

from books import books, journal_at
from support import pack_module

FIRST_SCHEMA = """
CREATE TABLE requests (identity TEXT PRIMARY KEY, endpoint TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT,
    owner TEXT, response TEXT, file_path TEXT, detail TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, endpoint TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT, units REAL, unit TEXT, unit_price REAL,
    price_source TEXT, time_based INTEGER NOT NULL DEFAULT 0, round_up INTEGER NOT NULL DEFAULT 0,
    estimate_usd REAL, cost_usd REAL, detail TEXT, created REAL NOT NULL, updated REAL NOT NULL);
"""


def test_a_journal_from_before_is_upgraded_and_keeps_its_books(tmp_path):
    journal, ledger = pack_module("money.journal"), pack_module("money.ledger")
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_SCHEMA)
        db.execute("INSERT INTO requests VALUES ('kept', 'fal-ai/x', 'completed', 'req-1', NULL, '{}', '/k.wav', NULL,"
                   " 0, 0)")
        db.execute("INSERT INTO requests VALUES ('left', 'fal-ai/x', 'submitting', NULL, 'v2|gone|1|1|x', NULL, NULL,"
                   " NULL, 0, 5)")
        db.execute("INSERT INTO ledger (identity, endpoint, day, state, estimate_usd, cost_usd, created, updated)"
                   " VALUES ('kept', 'fal-ai/x', ?, 'settled', 0.1, 0.1, 0, 0)", (ledger.today(),))
    book = journal.Journal(path)
    assert book.get("kept").files == {"audio": "/k.wav"} and book.spent_today() == pytest.approx(0.1)
    assert book.get("left").sent == 5  # a claim left by a journal from before may have been sent
    assert books("SELECT version FROM schema_version", (), book) == [(journal.SCHEMA_VERSION,)]
    assert book.claim("new", "fal-ai/x") is None
    assert books("SELECT worker FROM ledger WHERE identity='new'", (), book) == [(journal.WORKER,)]


@pytest.mark.both_books
def test_books_written_by_a_newer_pack_are_refused_before_anything_is_claimed(tmp_path):
    journal = pack_module("money.journal")
    book = journal_at(tmp_path / "journal.sqlite3")
    book.spent_today()
    books("UPDATE schema_version SET version=?", (journal.SCHEMA_VERSION + 1,), book)
    fresh = journal_at(tmp_path / "journal.sqlite3")
    with pytest.raises(journal.JournalUnusable, match=r"written by a newer fal Audio .*update the pack"):
        fresh.claim("k", "fal-ai/x")
    assert books("SELECT * FROM requests", (), book) == []
