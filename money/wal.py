"""The pack's SQLite file (the request journal and its spend ledger) in WAL mode.

Several connections may open a brand-new file at the same moment (two prompts, two ComfyUI
processes). Switching a new file to WAL then answers "locked" at
once instead of waiting for the busy timeout, so it is retried shortly here.

Durability: in WAL mode every commit survives a crash of ComfyUI whatever the sync level; a
commit also survives a power loss only once the WAL is synced to disk. A step that records
money already spent (an accepted request id, a result: the journal's `paid` steps) is synced
at its commit (synchronous=FULL), which also syncs every commit before it in the same file;
other steps (a claim, a reservation, a refined cost) are left to that next sync
(synchronous=NORMAL), which saves an fsync (~0.4 ms, most of a step) each. A step's ledger
row is written in the step's own transaction: a paid step costs one fsync.
"""

import contextlib
import sqlite3
import threading
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


_levels = threading.local()  # this thread's current step: paid (True/False), or None outside any step


@contextlib.contextmanager
def durable(paid: bool):
    """Commits made by this thread inside the block are synced at once if `paid`, else at the next sync."""
    before = getattr(_levels, "paid", None)
    _levels.paid = paid
    try:
        yield
    finally:
        _levels.paid = before


def synced(conn: sqlite3.Connection) -> sqlite3.Connection:
    """`conn` with the sync level the current step wants (FULL outside any `durable` block)."""
    paid = getattr(_levels, "paid", None)
    conn.execute("PRAGMA synchronous=" + ("NORMAL" if paid is False else "FULL"))  # ~2 µs
    return conn
