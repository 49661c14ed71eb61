#!/usr/bin/env python
"""The books' own speed on both backends (issue 22): SQLite (a temp file) and PostgreSQL (a private
server started for the run, tests/pg_server.py, or --url).

    python bench/books.py [--rows 100000] [--days 365] [--samples 500] [--url postgresql://...]

With `--rows` recorded requests (completed, each with its settled ledger row, spread evenly over the last
`--days` days: a claim sums today's rows, the report reads the last 7 days'):
the reuse lookup of a recorded request (Journal.get), a claim of a new request with the daily limit
checked, the whole claim-to-submit path of the journal (claim, sending, submitted: what the pack writes
before and right after fal's answer), and the fal Spend report. Figures: median and 99th percentile in
ms, as a Markdown table on stdout. A measurement, not a test.
"""

import argparse
import datetime
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
    return keys


def timed(samples: int, step) -> tuple:
    times = []
    for index in range(samples):
        started = time.perf_counter()
        step(index)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def measure(book, rows: int, days: int, samples: int) -> dict:
    journal = support.pack_module("money.journal")
    pricing = support.pack_module("money.pricing")
    keys = fill(book, rows, days)
    price = pricing.Price("fal-ai/lyria2", 0.1, "request", "bench")
    charge = pricing.Charge("fal-ai/lyria2", price, 1.0, 0.1)
    new = [uuid.uuid4().hex for _ in range(samples)]
    flow = [uuid.uuid4().hex for _ in range(samples)]
    figures = {
        "reuse lookup (get)": timed(samples, lambda i: book.get(keys[(i * 7919) % len(keys)])),
        "claim (limit checked)": timed(samples, lambda i: book.claim(new[i], "fal-ai/lyria2", charge, 1e9)),
    }

    def claim_to_submit(i):
        book.claim(flow[i], "fal-ai/lyria2", charge, 1e9)
        book.sending(flow[i])
        book.submitted(flow[i], f"req-{i}")

    figures["claim → sending → submitted"] = timed(samples, claim_to_submit)
    figures["fal Spend report"] = timed(max(5, samples // 50), lambda i: book.spend_report(1e9))
    for key in new + flow:
        journal._active.discard((book.place, key))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    journal = support.pack_module("money.journal")
    results, server = {}, None
    with tempfile.TemporaryDirectory() as folder:
        sqlite_book = journal.Journal(Path(folder) / "journal.sqlite3")
        results["SQLite"] = measure(sqlite_book, args.rows, args.days, args.samples)
    url = args.url
    try:
        if not url:
            server = PostgresServer(durable=True)
            url = server.start()
        results["PostgreSQL"] = measure(journal.Journal(url=url), args.rows, args.days, args.samples)
    except RuntimeError as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    finally:
        if server:
            server.remove()
    print(f"With {args.rows:,} recorded requests over {args.days} days; {args.samples} samples each (the report: "
          "fewer); ms. SQLite: WAL, synced as the pack syncs; PostgreSQL 15 on this machine (fsync on), over TCP on "
          "127.0.0.1.\n")
    print("| step | " + " | ".join(f"{name} median | {name} p99" for name in results) + " |")
    print("|---|" + "---:|---:|" * len(results))
    for step in next(iter(results.values())):
        print(f"| {step} | " + " | ".join(f"{results[name][step][0]:.2f} | {results[name][step][1]:.2f}"
                                          for name in results) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
