#!/usr/bin/env python
"""The books' own speed on both backends (issue 22): SQLite (a temp file) and PostgreSQL (a private
server started for the run, tests/pg_server.py, or --url).

    python bench/books.py [--rows 100000] [--days 365] [--samples 500] [--url postgresql://...]

With `--rows` recorded requests (completed, each with its settled ledger row, spread evenly over the last
`--days` days; then checkpointed, and on PostgreSQL vacuumed and analysed, as a database that grew over
time is): the reuse lookup of a recorded request (Journal.get), a claim of a new request with the daily
limit checked, the whole claim-to-submit path of the journal (claim, sending, submitted: what the pack
writes before and right after fal's answer), and the fal Spend report. Each step runs as the job runner
runs it (Journal._attempt in this thread: a claim synced as the pack syncs it, the accepted request id at
once). Figures: median and 99th percentile in ms, as a Markdown table on stdout; then the statements
(PostgreSQL: round trips) of each step, and what one fsync of this machine's disk takes (what a synced
commit waits for). A measurement, not a test.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import support  # noqa: E402
from pg_server import PostgresServer  # noqa: E402


def fill(book, rows: int, days: int) -> list:
    """`rows` completed requests with their settled ledger rows; returns their identities."""
    keys = [uuid.uuid4().hex for _ in range(rows)]
    today = datetime.date.today()
    now = time.time()

    def write(conn):
        conn.executemany("INSERT INTO requests (identity, endpoint, state, request_id, response, file_path, files,"
                         " created, updated) VALUES (?, 'fal-ai/lyria2', 'completed', ?, '{}', '/k.wav',"
                         " '{\"audio\": \"/k.wav\"}', ?, ?)", [(key, key, now, now) for key in keys])
        conn.executemany("INSERT INTO ledger (identity, endpoint, day, state, request_id, estimate_usd, cost_usd,"
                         " created, updated, worker) VALUES (?, 'fal-ai/lyria2', ?, 'settled', ?, 0.1, 0.1, ?, ?,"
                         " 'bench')", [(key, (today - datetime.timedelta(days=i % days)).isoformat(), key, now, now)
                                       for i, key in enumerate(keys)])

    book._step(write)
    if book.path:
        book._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        for statement in ("VACUUM ANALYZE", "CHECKPOINT"):
            book._connect().execute(statement)
    return keys


def timed(samples: int, step) -> tuple:
    times = []
    for index in range(samples):
        started = time.perf_counter()
        step(index)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def measure(book, rows: int, days: int, samples: int, unsynced: bool = False) -> tuple:
    """(figures: step -> (median, p99), statements: step -> how many one run of it sends)."""
    journal = support.pack_module("money.journal")
    pricing = support.pack_module("money.pricing")
    keys = fill(book, rows, days)
    if unsynced and book.path:  # no checkpoint (its sync of the database file) during the timed steps
        book._connect().execute("PRAGMA wal_autocheckpoint=0")
    price = pricing.Price("fal-ai/lyria2", 0.1, "request", "bench")
    charge = pricing.Charge("fal-ai/lyria2", price, 1.0, 0.1)
    new = [uuid.uuid4().hex for _ in range(samples)]
    flow = [uuid.uuid4().hex for _ in range(samples)]

    def step(op, *args, paid=False):  # as Journal.call runs it in the journal's thread
        return book._attempt(op, args, paid)

    def claim(key):
        return step(book.claim, key, "fal-ai/lyria2", charge, 1e9)

    def claim_to_submit(i):
        claim(flow[i])
        step(book.sending, flow[i])
        step(book.submitted, flow[i], f"req-{i}", paid=True)

    figures = {
        "reuse lookup (get)": timed(samples, lambda i: step(book.get, keys[(i * 7919) % len(keys)])),
        "claim (limit checked)": timed(samples, lambda i: claim(new[i])),
        "claim → sending → submitted": timed(samples, claim_to_submit),
        "fal Spend report": timed(max(5, samples // 50), lambda i: step(book.spend_report, 1e9)),
    }
    extra = uuid.uuid4().hex
    statements = {
        "claim": sent(book, lambda: claim(extra)),
        "sending": sent(book, lambda: step(book.sending, extra)),
        "submitted": sent(book, lambda: step(book.submitted, extra, "req-extra", paid=True)),
    }
    for key in new + flow + [extra]:
        journal._active.discard((book.place, key))
    return figures, statements


def sent(book, run) -> int:
    """How many statements `run` sends on this thread's connection (each one round trip to PostgreSQL; not
    counting those a trigger runs, nor SQLite's sync level)."""
    conn, count = book._connect(), [0]
    if book.path:  # a trigger's statements are traced with its outer statement's text: counted once
        texts = []
        conn.set_trace_callback(lambda text: texts.append(text) if texts[-1:] != [text] else None)
        run()
        conn.set_trace_callback(None)
        return sum(not text.startswith("PRAGMA") for text in texts)
    real = conn.execute

    def counted(*args):
        count[0] += 1
        return real(*args)

    conn.execute = counted
    try:
        run()
    finally:
        del conn.execute
    return count[0]


def fsync_ms(folder: Path, samples: int) -> tuple:
    """One 4 KB write and fsync in `folder`: what every synced commit on this machine waits for at least."""
    path = folder / "fsync-probe"
    with open(path, "wb") as handle:
        def write(_):
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())

        return timed(samples, write)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--url", default="")
    parser.add_argument("--unsynced", action="store_true",
                        help="what the steps cost without the disk: SQLite without its WAL checkpoints, the private "
                             "PostgreSQL server without fsync (not how the pack runs)")
    args = parser.parse_args()
    journal = support.pack_module("money.journal")
    results, statements, server = {}, {}, None
    with tempfile.TemporaryDirectory() as folder:
        sqlite_book = journal.Journal(Path(folder) / "journal.sqlite3")
        results["SQLite"], statements["SQLite"] = measure(sqlite_book, args.rows, args.days, args.samples,
                                                          args.unsynced)
        fsync = fsync_ms(Path(folder), args.samples)
    url = args.url
    try:
        if not url:
            server = PostgresServer(durable=not args.unsynced)
            url = server.start()
        results["PostgreSQL"], statements["PostgreSQL"] = measure(journal.Journal(url=url), args.rows, args.days,
                                                                  args.samples, args.unsynced)
    except RuntimeError as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    finally:
        if server:
            server.remove()
    print(f"With {args.rows:,} recorded requests over {args.days} days; {args.samples} samples each (the report: "
          "fewer); ms. " + ("UNSYNCED (--unsynced): SQLite without WAL checkpoints, PostgreSQL 15 with fsync off"
                           if args.unsynced else "SQLite: WAL, synced as the pack syncs; PostgreSQL 15 on this machine "
                           "(fsync on)") + ", over TCP on 127.0.0.1.\n")
    print("| step | " + " | ".join(f"{name} median | {name} p99" for name in results) + " |")
    print("|---|" + "---:|---:|" * len(results))
    for step in next(iter(results.values())):
        print(f"| {step} | " + " | ".join(f"{results[name][step][0]:.2f} | {results[name][step][1]:.2f}"
                                          for name in results) + " |")
    print("\nStatements sent per step: " + "; ".join(
        f"{name}: " + ", ".join(f"{step} {count}" for step, count in counts.items())
        for name, counts in statements.items()))
    print(f"One 4 KB write + fsync on this disk: median {fsync[0]:.2f} ms, p99 {fsync[1]:.2f} ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
