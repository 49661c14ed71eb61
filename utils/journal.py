"""A durable record of every paid request, so nothing is paid twice or lost.

Before a request is submitted its identity (endpoint + a hash of the exact request)
is claimed here; the fal request id is stored as soon as fal returns it, and the kept
file once it is on disk. A later run with the same identity reuses the kept result,
or resumes polling the stored request id if ComfyUI died while it was in flight.

SQLite from the standard library, WAL mode, one short transaction per step: safe for
several prompts (and threads) at once and for a crash at any point.

The spend ledger (utils/ledger.py) lives in the same file and follows each request's
story from here: accepted (request id stored), paid (completed), or $0 (released,
failed, cancelled, or unknown to fal).
"""

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from . import comfy, secrets

# Who is submitting: a row "submitting" held by another owner belongs to a process
# that died mid-submit (or a second ComfyUI); one held by us belongs to a task running now.
OWNER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
# fal's storage keeps uploads for a while; reuse an uploaded clip's URL within this time.
UPLOAD_REUSE_SECONDS = 12 * 3600

SUBMITTING, SUBMITTED, COMPLETED, FAILED = "submitting", "submitted", "completed", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    identity TEXT PRIMARY KEY, endpoint TEXT NOT NULL, state TEXT NOT NULL,
    request_id TEXT, owner TEXT, response TEXT, file_path TEXT,
    detail TEXT, created REAL NOT NULL, updated REAL NOT NULL, files TEXT);
CREATE TABLE IF NOT EXISTS uploads (
    content_hash TEXT PRIMARY KEY, url TEXT NOT NULL, uploaded REAL NOT NULL);
"""


_held: dict = {}


def hold_for_prompt(key: str, message: str) -> None:
    """Block `key` for the rest of this prompt (this event loop): its submit may or may not have
    reached fal, so an identical node of the same prompt must not submit it again. A later run
    (a new prompt) may: the message told the user to re-run to submit anew."""
    from .gateway import per_loop

    per_loop(_held)[key] = message


def held_for_prompt(key: str) -> Optional[str]:
    """The message of a submit of `key` that may have reached fal earlier in this prompt, if any."""
    from .gateway import per_loop

    return per_loop(_held).get(key)


def identity(endpoint: str, request: dict) -> str:
    """A stable hash of exactly what would be sent (uploads named by their content hash)."""
    canonical = json.dumps({"endpoint": endpoint, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class Entry:
    identity: str
    endpoint: str
    state: str
    request_id: Optional[str]
    owner: Optional[str]
    response: Optional[dict]
    file_path: Optional[str]  # the first kept file (journals written before `files` hold only this)
    files: Optional[Dict[str, str]] = None  # every kept file: output name -> path


class Journal:
    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path else comfy.data_directory() / "journal.sqlite3"
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            if "files" not in {row[1] for row in conn.execute("PRAGMA table_info(requests)")}:
                conn.execute("ALTER TABLE requests ADD COLUMN files TEXT")  # a journal from before several files
            self._local.conn = conn
        return conn

    def _row(self, conn, key: str) -> Optional[Entry]:
        row = conn.execute(
            "SELECT identity, endpoint, state, request_id, owner, response, file_path, files FROM requests"
            " WHERE identity=?", (key,),
        ).fetchone()
        if row is None:
            return None
        files = json.loads(row[7]) if row[7] else ({"audio": row[6]} if row[6] else {})
        return Entry(*row[:5], json.loads(row[5]) if row[5] else None, row[6], files)

    def get(self, key: str) -> Optional[Entry]:
        return self._row(self._connect(), key)

    def claim(self, key: str, endpoint: str) -> Optional[Entry]:
        """Claim the right to submit `key`. Returns None if the caller must submit, else
        the existing entry (completed: reuse; submitted: resume; submitting by us: wait)."""
        conn = self._connect()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            entry = self._row(conn, key)
            reusable = entry is not None and (
                entry.state in (COMPLETED, SUBMITTED) or (entry.state == SUBMITTING and entry.owner == OWNER)
            )
            if not reusable:
                conn.execute(
                    "INSERT OR REPLACE INTO requests (identity, endpoint, state, owner, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key, endpoint, SUBMITTING, OWNER, now, now),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return entry if reusable else None

    def _update(self, key: str, **fields) -> None:
        # fal's answers (error text, responses) may echo the key: nothing secret reaches the disk.
        fields = {name: secrets.redact(value) if isinstance(value, str) else value for name, value in fields.items()}
        fields["updated"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        self._connect().execute(f"UPDATE requests SET {assignments} WHERE identity=?", (*fields.values(), key))

    def ledger(self):
        from .ledger import book

        return book(self.path)

    def submitted(self, key: str, request_id: str) -> None:
        self._update(key, state=SUBMITTED, request_id=request_id)
        self.ledger().accepted(key, request_id)

    def completed(self, key: str, response: dict, files: Dict[str, Path]) -> None:
        """The result is in: fal's response and every kept file (output name -> path; {} for text only)."""
        paths = {name: str(path) for name, path in files.items()}
        self._update(key, state=COMPLETED, response=json.dumps(response),
                     file_path=next(iter(paths.values()), None), files=json.dumps(paths))
        self.ledger().completed(key)

    def failed(self, key: str, detail: str) -> None:
        """fal reported the request failed or cancelled: never reuse it."""
        self._update(key, state=FAILED, detail=detail)
        self.ledger().unpaid(key, f"failed or cancelled: {detail}")

    def release(self, key: str) -> None:
        """Forget a claim whose submit never reached fal (so nothing was paid)."""
        self._connect().execute("DELETE FROM requests WHERE identity=? AND state=?", (key, SUBMITTING))
        self.ledger().unpaid(key, "the submit never reached fal")

    def forget(self, key: str) -> None:
        self._connect().execute("DELETE FROM requests WHERE identity=?", (key,))
        self.ledger().unpaid(key, "fal does not know the request")  # a settled (paid) row stays as it is

    def upload_url(self, content_hash: str) -> Optional[str]:
        row = self._connect().execute(
            "SELECT url, uploaded FROM uploads WHERE content_hash=?", (content_hash,)
        ).fetchone()
        if row and time.time() - row[1] < UPLOAD_REUSE_SECONDS:
            return row[0]
        return None

    def remember_upload(self, content_hash: str, url: str) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO uploads (content_hash, url, uploaded) VALUES (?, ?, ?)",
            (content_hash, url, time.time()),
        )
