"""The ledger's running totals (issue 22: the daily limit and the fal Spend report cost the same however many
rows the ledger holds) always equal a count of the rows themselves, after every kind of step, on both homes
of the books (tests/money/conftest.py: BOTH); a journal from before the totals gets them counted from its rows, once."""

import datetime
import sqlite3

import pytest

from books import books, journal_at
from support import pack_module

journal, ledger, pricing = (pack_module(f"money.{name}") for name in ("journal", "ledger", "pricing"))
PAID_STATES = ("settled", "reserved", "accepted", "uncertain")


def charge(usd, endpoint="fal-ai/x", per_second=False):
    if per_second:  # $0.01 a second, 10 s asked for
        return pricing.Charge(endpoint, pricing.Price(endpoint, 0.01, "second", "test"), 10.0, usd)
    return pricing.Charge(endpoint, pricing.Price(endpoint, usd, "request", "test"), 1.0, usd)


def recount(book) -> dict:
    """The totals as the rows themselves give them: (day, endpoint, worker, state) -> (requests, nano-dollars,
    rows at an unknown price), counted here, apart from the pack's own sums."""
    counted = {}
    rows = books("SELECT day, endpoint, worker, state, estimate_usd, cost_usd FROM ledger", (), book)
    for day, endpoint, worker, state, estimate, cost in rows:
        usd = cost if state == "settled" else estimate if state in PAID_STATES else 0.0
        requests, nano, unknown = counted.get((day, endpoint, worker or "", state), (0, 0, 0))
        counted[(day, endpoint, worker or "", state)] = (requests + 1, nano + round((usd or 0.0) * 1e9),
                                                        unknown + (usd is None))
    return counted


def exact(rows) -> float:
    """The spend of ledger rows (day, endpoint, state, estimate_usd, cost_usd, ...) summed in whole nano-dollars."""
    spent = [(cost if state == "settled" else estimate) for _, _, state, estimate, cost, *_ in rows
             if state in PAID_STATES]
    return sum(ledger.nano(usd) for usd in spent if usd is not None) / ledger.NANO


def stored(book) -> dict:
    rows = books("SELECT day, endpoint, worker, state, requests, nano_usd, unknown FROM ledger_totals", (), book)
    assert all(row[4:] == (0, 0, 0) for row in rows if row[4] == 0), rows  # an emptied group counts nothing
    return {tuple(row[:4]): tuple(int(value) for value in row[4:]) for row in rows if row[4]}


def check(book) -> None:
    """The stored totals equal the rows' count, and what the pack reads from them equals the rows' own sums."""
    spent = book.spent_today()
    assert stored(book) == recount(book)
    rows = books("SELECT day, endpoint, state, estimate_usd, cost_usd, worker FROM ledger", (), book)
    today = ledger.today()
    todays = [row for row in rows if row[0] == today]
    by_hand = sum((row[4] if row[2] == "settled" else row[3]) or 0.0 for row in todays if row[2] in PAID_STATES)
    assert spent == pytest.approx(by_hand, abs=1e-12)
    assert book.spent_today() == exact(todays)  # the rows' sum in whole nano-dollars, to the last bit
    assert book.spend_report()[1] == round(exact(todays), 6)


def on_day(monkeypatch, day: datetime.date) -> None:
    class Then(datetime.date):
        @classmethod
        def today(cls):
            return day

    monkeypatch.setattr(ledger.datetime, "date", Then)


def test_the_totals_follow_every_step_of_a_request(tmp_path, monkeypatch):
    book = journal_at(tmp_path / "journal.sqlite3")
    check(book)
    # reserved, then accepted, then settled at its estimate, then refined by what fal returned
    assert book.claim("a", "fal-ai/x", charge(0.1, per_second=True), 5.0) is None
    check(book)
    book.sending("a")
    book.submitted("a", "req-a")
    check(book)
    book.completed("a", {"audio": {}}, {"audio": tmp_path / "a.wav"})
    check(book)
    assert book.settle("a", charge(0.1, per_second=True), 7.5) == pytest.approx(0.075)
    check(book)
    # failed at fal ($0), released before sending ($0), possibly billed (at its estimate)
    for key in ("b", "c", "d"):
        assert book.claim(key, "fal-ai/y", charge(0.2, "fal-ai/y"), 5.0) is None
    book.submitted("b", "req-b")
    book.failed("b", "GPU fell over")
    book.release("c")
    book.sending("d")
    book.uncertain("d", "connection lost", "may be on fal")
    check(book)
    # a price nobody knows (no limit): counted as unknown, then settled at an unknown price
    assert book.claim("e", "fal-ai/z", None) is None
    book.submitted("e", "req-e")
    check(book)
    book.completed("e", {}, {})
    check(book)
    # reused and fetched results ($0 rows), a request fal does not know
    book.reused("a", "fal-ai/x", "req-a")
    book.fetched("f", "fal-ai/x", "req-f", {}, {})
    assert book.claim("g", "fal-ai/x", charge(0.3), 5.0) is None
    book.submitted("g", "req-g")
    book.forget("g")
    check(book)
    # a row put right by hand in the database is counted as it is now
    books("UPDATE ledger SET cost_usd=0.05 WHERE identity='a' AND state='settled'", (), book)
    check(book)
    text, today = book.spend_report(5.0)
    assert today == pytest.approx(0.05 + 0.2)
    assert "Today (" in text and "$0.25 in 3 paid requests (1 possibly billed, counted at its estimate; " \
        "1 at an unknown price, not counted)" in text
    assert "Free, last 7 days: 2 kept results reused, 3 requests that failed or were cancelled" in text


def test_a_claim_taken_over_and_a_dead_submit_move_their_reservations(tmp_path, monkeypatch):
    book = journal_at(tmp_path / "journal.sqlite3")
    for key in ("left", "sent"):
        assert book.claim(key, "fal-ai/x", charge(0.1), 5.0) is None
    book.sending("sent")
    dead = "v2|another-machine|4242|1234|abcd1234"
    books("UPDATE requests SET owner=?, lease=0", (dead,), book)
    # the claim whose submit never went out is taken over: its reservation replaced by the new one
    assert book.claim("left", "fal-ai/x", charge(0.15), 5.0) is None
    check(book)
    assert books("SELECT estimate_usd FROM ledger WHERE identity='left'", (), book) == [(0.15,)]
    # the one that was sent is booked as possibly billed
    assert book.claim("sent", "fal-ai/x", charge(0.1), 5.0).state == journal.UNCERTAIN
    check(book)
    assert book.spent_today() == pytest.approx(0.25)


def test_a_request_reserved_yesterday_and_completed_today_moves_to_today(tmp_path, monkeypatch):
    real = datetime.date.today()
    on_day(monkeypatch, real - datetime.timedelta(days=1))
    book = journal_at(tmp_path / "journal.sqlite3")
    assert book.claim("k", "fal-ai/x", charge(0.1), 5.0) is None
    book.submitted("k", "req-k")
    assert book.spent_today() == pytest.approx(0.1)
    on_day(monkeypatch, real)
    assert book.spent_today() == 0
    book.completed("k", {}, {})
    check(book)
    assert book.spent_today() == pytest.approx(0.1)
    assert [row[0] for row in stored(book)] == [real.isoformat()]  # yesterday's group is empty


def test_the_daily_limit_reads_the_totals_and_still_refuses_at_the_limit(tmp_path):
    book = journal_at(tmp_path / "journal.sqlite3")
    for n in range(3):
        assert book.claim(f"k{n}", "fal-ai/x", charge(0.1), 0.3) is None
    with pytest.raises(ledger.SpendLimitReached, match=r"today's recorded spend of \$0\.30"):
        book.claim("k3", "fal-ai/x", charge(0.1), 0.3)
    book.release("k0")  # $0 now: room for one more
    assert book.claim("k3", "fal-ai/x", charge(0.1), 0.3) is None
    check(book)


def test_models_of_equal_spend_are_listed_by_name(tmp_path):
    book = journal_at(tmp_path / "journal.sqlite3")
    for endpoint in ("fal-ai/zeta", "fal-ai/alpha"):
        assert book.claim(endpoint, endpoint, charge(0.1, endpoint)) is None
    lines = book.spend_report()[0].splitlines()
    start = lines.index("Per model, last 7 days:")
    assert lines[start + 1:start + 3] == ["  fal-ai/alpha: $0.10 in 1 paid", "  fal-ai/zeta: $0.10 in 1 paid"]


def test_an_imported_journal_is_counted(tmp_path):
    source = journal.Journal(tmp_path / "old.sqlite3")
    assert source.claim("a", "fal-ai/x", charge(0.1), 0) is None
    source.submitted("a", "req-a")
    source.completed("a", {}, {})
    assert source.claim("b", "fal-ai/x", charge(0.2), 0) is None
    book = journal_at(tmp_path / "journal.sqlite3")
    assert book.import_from(tmp_path / "old.sqlite3", worker="old-box")["ledger"] == 2
    check(book)
    assert book.spent_today() == pytest.approx(0.3)


def test_books_from_before_the_totals_are_counted_from_their_rows_once(tmp_path):
    """A schema-2 journal or database (no totals) gets its totals counted on opening; opened again, they stay."""
    book = journal_at(tmp_path / "journal.sqlite3")
    assert book.claim("a", "fal-ai/x", charge(0.1), 0) is None
    book.submitted("a", "req-a")
    book.completed("a", {}, {})
    assert book.claim("b", "fal-ai/y", None, 0) is None
    # as a pack before the totals left it: no totals, no triggers, schema 2; and a row written then
    triggers = (["ledger_counted ON ledger"] if book.store.kind == "postgres"
                else ["ledger_counted_in", "ledger_counted_out", "ledger_counted_again"])
    for trigger in triggers:
        books(f"DROP TRIGGER {trigger}", (), book)
    books("DROP TABLE ledger_totals", (), book)
    books("UPDATE schema_version SET version=2", (), book)
    books("INSERT INTO ledger (identity, endpoint, day, state, estimate_usd, cost_usd, created, updated, worker)"
          " VALUES ('c', 'fal-ai/x', ?, 'settled', 0.2, 0.25, 0, 0, 'old-box')", (ledger.today(),), book)
    expected = recount(book)
    upgraded = journal_at(tmp_path / "journal.sqlite3")
    assert upgraded.spent_today() == pytest.approx(0.35)
    assert stored(upgraded) == expected
    assert books("SELECT version FROM schema_version", (), upgraded) == [(journal.SCHEMA_VERSION,)]
    again = journal_at(tmp_path / "journal.sqlite3")
    assert again.spent_today() == pytest.approx(0.35) and stored(again) == expected
    assert again.claim("d", "fal-ai/x", charge(0.1), 0) is None  # the triggers count from here on
    check(again)



@pytest.mark.sqlite_only
def test_the_spend_note_written_in_place_keeps_only_the_newest_spend(tmp_path):
    """The note beside the file is overwritten in place (no rename): a shorter figure after a longer one leaves
    nothing of the longer behind, and a journal overwritten beyond reading carries the newest spend over."""
    path = tmp_path / "journal.sqlite3"
    book = journal.Journal(path)
    assert book.claim("a", "fal-ai/x", charge(0.123456789012), 0) is None
    book.release("a")
    assert book.claim("b", "fal-ai/x", charge(0.1), 0) is None
    assert path.with_name("journal.sqlite3.spend").read_text().split() == [ledger.today(), "0.1"]
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"overwritten by something else" * 200)
    fresh = journal.Journal(path)
    with pytest.raises(ledger.SpendLimitReached, match=r"recorded spend of \$0\.10"):
        fresh._attempt(fresh.claim, ("c", "fal-ai/x", charge(0.1), 0.15), False)  # as the job runner claims
    (notice,) = fresh.notices()
    assert "Today's spend of $0.10 was kept (from the spend note beside the journal)" in notice


def test_a_step_that_cannot_take_the_lock_leaves_the_books_fit_for_the_next(tmp_path):
    """Another worker holds the step lock past this one's patience: the step fails, and the same connection
    takes the next step (a failed lock wait left no half-open transaction behind)."""
    path = tmp_path / "journal.sqlite3"
    book = journal_at(path)
    book.spent_today()  # opened (and its schema made) before the lock is held
    if book.store.kind == "postgres":
        import psycopg

        book = journal.Journal(url=book.store.url + "?options=-c%20lock_timeout%3D200")
        book.spent_today()
        holder = psycopg.connect(book.store.url, autocommit=True)
        holder.execute(f"BEGIN; SELECT pg_advisory_xact_lock({pack_module('money.store').STEP_LOCK})")
    else:
        book.store.timeout = 0.2
        book._local.conn = None  # reopened with the shorter wait
        book.spent_today()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(book.store.errors):
        book.claim("k", "fal-ai/x", charge(0.1), 1.0)
    holder.execute("ROLLBACK")
    holder.close()
    assert book.claim("k", "fal-ai/x", charge(0.1), 1.0) is None
    check(book)
