"""Copy an existing fal Audio journal (the SQLite file in ComfyUI's user folder) into the shared PostgreSQL
database several workers use, so a team that started on one machine keeps its history: kept results to
reuse, requests still with fal to resume, and the spend the daily limit counts. Safe to run again: rows
copied before are not copied twice. Stop that machine's ComfyUI first.

    python scripts/import_journal.py ComfyUI/user/fal-audio/journal.sqlite3 [--url postgresql://...]
    [--profile NAME] [--worker NAME]

The database is --url, else the one the pack uses for runs with the credentials profile --profile (default:
"default"): $FAL_AUDIO_DATABASE_URL, else that profile's `database_url` in the credentials file (the first of
$FAL_AUDIO_CREDENTIALS, credentials.json beside the journal, fal_credentials.json in the pack's folder). Ledger rows
that name no worker are booked to --worker (default: $FAL_AUDIO_WORKER_NAME, else this machine's host name).
Needs `pip install "psycopg[binary]"`.
"""

import argparse
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_DIR / "scripts"))
from _pack import pack  # noqa: E402 - the pack's modules (money.journal), without its nodes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("journal", type=Path, help="the SQLite journal file (journal.sqlite3)")
    parser.add_argument("--url", default="", help="the database (default: $FAL_AUDIO_DATABASE_URL, else the "
                                                  "database_url of --profile in the credentials file)")
    parser.add_argument("--profile", default="", help='the credentials profile naming the database (default: '
                                                      '"default")')
    parser.add_argument("--worker", default="", help="the worker name for ledger rows that name none")
    args = parser.parse_args(argv)
    # The credentials file of ComfyUI's user folder lies beside the journal (<ComfyUI>/user/fal-audio/).
    os.environ.setdefault("FAL_AUDIO_DATA_DIR", str(args.journal.resolve().parent))
    store, journal = pack("money.store"), pack("money.journal")
    credentials, errors = pack("transport.credentials"), pack("core.errors")
    url, source = args.url, "--url"
    try:
        if not url:
            url, source = (store.url_from_env(), store.ENV_URL) if store.url_from_env() \
                else credentials.database_url(args.profile)
        if not (url or "").startswith(("postgresql://", "postgres://")):
            parser.error("give the database as --url postgresql://..., in FAL_AUDIO_DATABASE_URL, or as the "
                         "database_url of a credentials profile (--profile)")
        copied = journal.Journal(url=url, source=source).import_from(args.journal, args.worker)
    except (FileNotFoundError, journal.JournalUnusable, errors.CredentialsError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Copied {copied['requests']} requests, {copied['ledger']} ledger rows and {copied['uploads']} uploads "
          f"from {args.journal} into {store.scrub(url)} ({source}; rows copied before were left as they are).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
