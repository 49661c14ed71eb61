"""The pack's SQLite files (request journal, spend ledger) in WAL mode.

Several connections may open a brand-new file at the same moment (two prompts, two ComfyUI
processes, the journal and the ledger). Switching a new file to WAL then answers "locked" at
once instead of waiting for the busy timeout, so it is retried shortly here.
"""

import sqlite3
import time

ATTEMPTS = 40
RETRY = 0.05


def locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def use_wal(conn: sqlite3.Connection) -> None:
    """Put `conn` in WAL mode with full sync (every committed step survives a crash)."""
    for attempt in range(ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if not locked(exc) or attempt == ATTEMPTS - 1:
                raise
            time.sleep(RETRY)
    conn.execute("PRAGMA synchronous=FULL")
