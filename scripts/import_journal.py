"""Copy an existing fal Audio journal (the SQLite file in ComfyUI's user folder) into the shared PostgreSQL
database several workers use, so a team that started on one machine keeps its history: kept results to
reuse, requests still with fal to resume, and the spend the daily limit counts. Safe to run again: rows
copied before are not copied twice. Stop that machine's ComfyUI first.

    python scripts/import_journal.py ComfyUI/user/fal-audio/journal.sqlite3 [--url postgresql://...]
    [--worker NAME]

The URL defaults to $FAL_AUDIO_DATABASE_URL; ledger rows that name no worker are booked to --worker
(default: $FAL_AUDIO_WORKER_NAME, else this machine's host name). Needs `pip install "psycopg[binary]"`.
"""

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
PACKAGE = "fal_audio_import"


def money(name: str):
    """A module of the pack's money package, without loading the pack's nodes (no ComfyUI needed)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, PACK_DIR / "__init__.py",
                                                      submodule_search_locations=[str(PACK_DIR)])
        sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)  # its __init__ (the nodes) is not run
    return importlib.import_module(f"{PACKAGE}.money.{name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("journal", type=Path, help="the SQLite journal file (journal.sqlite3)")
    parser.add_argument("--url", default=os.environ.get("FAL_AUDIO_DATABASE_URL", ""),
                        help="the database (default: $FAL_AUDIO_DATABASE_URL)")
    parser.add_argument("--worker", default="", help="the worker name for ledger rows that name none")
    args = parser.parse_args(argv)
    store, journal = money("store"), money("journal")
    if not args.url.startswith(("postgresql://", "postgres://")):
        parser.error("give the database as --url postgresql://... or in FAL_AUDIO_DATABASE_URL")
    book = journal.Journal(url=args.url)
    try:
        copied = book.import_from(args.journal, args.worker)
    except (FileNotFoundError, journal.JournalUnusable) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Copied {copied['requests']} requests, {copied['ledger']} ledger rows and {copied['uploads']} uploads "
          f"from {args.journal} into {store.scrub(args.url)} (rows copied before were left as they are).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
