"""The journal and ledger tests run on both homes of the books: the SQLite file (the default) and a
PostgreSQL database (FAL_AUDIO_DATABASE_URL, tests/pg_server.py): every test of the modules in BOTH
but those about the SQLite file itself (marked `sqlite_only`), and the tests of other modules marked
`both_books` (e.g. the ledger's and the daily limit's among the cost tests)."""

import pytest

BOTH = {"test_journal.py", "test_money_safety.py", "test_journal_faults.py", "test_money_round2.py",
        "test_totals.py"}


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: a test of the SQLite journal file itself (not run on PostgreSQL)")
    config.addinivalue_line("markers", "both_books: run on the SQLite file and on PostgreSQL")


def pytest_generate_tests(metafunc):
    marked = metafunc.definition.get_closest_marker
    if marked("both_books") or (not marked("sqlite_only") and metafunc.module.__file__.rsplit("/", 1)[-1] in BOTH):
        metafunc.parametrize("books", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(autouse=True)
def books(request):
    """Where this test's books are: "sqlite" (the data folder's file) or "postgres" (the test server)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        request.getfixturevalue("postgres")
    return backend
