"""A durable record of every paid request, so nothing is paid twice or lost.

Before a request is submitted its identity (endpoint + a hash of the exact request)
is claimed here; the fal request id is stored as soon as fal returns it, and the kept
file once it is on disk. A later run with the same identity reuses the kept result,
or resumes polling the stored request id if ComfyUI died while it was in flight.

SQLite from the standard library, WAL mode, one short transaction per step: safe for
several prompts (and threads) at once and for a crash at any point.

The job runner reaches it with `await journal.call(...)`: each step runs in the journal's
own thread, in order, so a journal locked by another program never stalls the event loop
and every wait notices ComfyUI's Cancel. A step that records money already spent (an
accepted request id, a result) is retried until it is written. A claim held by another
process is taken over only when that process is dead (money/owner.py; leases below).
A damaged journal file is moved aside and a new one started.

The spend ledger (money/ledger.py) lives in the same file and follows each request's
story from here: accepted (request id stored), paid (completed), or $0 (released,
failed, cancelled, or unknown to fal).
"""

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from ..core import comfy, secrets
from ..core.aio import per_loop
from ..core.errors import FalAudioError
from ..core.log import get_logger
from . import ledger as spend_ledger
from .owner import OWNER, dead_here
from .wal import durable, synced, use_wal
from .wal import locked as _locked

log = get_logger("journal")

# A claim ("submitting") names its owner process and holds a lease the owner renews while
# the claim lives; another process takes it over only when the owner is dead.
LEASE_SECONDS = 30.0
LEASE_RENEW = 5.0
# How long one sqlite step waits for another connection's lock (in the journal's thread, never the loop).
BUSY_TIMEOUT = 30.0
# How often a wait for the journal wakes up to notice ComfyUI's Cancel.
WAIT_CHECK = 0.1
# A write of money already spent, refused because another program holds the lock, is retried this often.
LOCKED_RETRY = 0.5
# fal's storage keeps uploads for a while; reuse an uploaded clip's URL within this time.
UPLOAD_REUSE_SECONDS = 12 * 3600

SUBMITTING, SUBMITTED, COMPLETED, FAILED = "submitting", "submitted", "completed", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    identity TEXT PRIMARY KEY, endpoint TEXT NOT NULL, state TEXT NOT NULL,
    request_id TEXT, owner TEXT, response TEXT, file_path TEXT,
    detail TEXT, created REAL NOT NULL, updated REAL NOT NULL, files TEXT, lease REAL);
CREATE TABLE IF NOT EXISTS uploads (
    content_hash TEXT PRIMARY KEY, url TEXT NOT NULL, uploaded REAL NOT NULL);
"""


_held: dict = {}


def hold_for_prompt(key: str, message: str) -> None:
    """Block `key` for the rest of this prompt (this event loop): its submit may or may not have
    reached fal, so an identical node of the same prompt must not submit it again. A later run
    (a new prompt) may: the message told the user to re-run to submit anew."""
    per_loop(_held)[key] = message


def held_for_prompt(key: str) -> Optional[str]:
    """The message of a submit of `key` that may have reached fal earlier in this prompt, if any."""
    return per_loop(_held).get(key)


def identity(endpoint: str, request: dict) -> str:
    """A stable hash of exactly what would be sent (uploads named by their content hash)."""
    canonical = json.dumps({"endpoint": endpoint, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JournalUnusable(FalAudioError):
    """The data folder or its journal cannot be written: said before anything is paid."""


# Claims held by running tasks of this process: (journal path, identity). A "submitting" row of ours
# that is not in here was left by a task that is gone.
_active: set = set()
_active_lock = threading.Lock()
_worker: Optional[ThreadPoolExecutor] = None
_renewer: Optional[threading.Thread] = None
_journals_seen: dict = {}  # path -> Journal, for the lease renewer


def _damaged(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(
        sign in text for sign in ("malformed", "not a database", "file is encrypted", "database corrupt"))


# sqlite's words for a file or folder it cannot write.
_UNUSABLE = ("readonly", "unable to open", "disk i/o", "disk is full", "permission")


def _worker_pool() -> ThreadPoolExecutor:
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fal-audio-journal")
    return _worker


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
        self._generation = 0  # bumped when a damaged file is moved aside: connections reopen
        self._notices: list = []

    # -- connection, damage, unusable folder ------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", 0) != self._generation:
            conn.close()
            conn = None
        if conn is None:
            conn = self._open()
            self._local.conn, self._local.generation = conn, self._generation
        return synced(conn)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.OperationalError) as exc:
            raise self._unusable(exc) from None
        try:
            use_wal(conn)
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
            if "files" not in columns:
                conn.execute("ALTER TABLE requests ADD COLUMN files TEXT")  # a journal from before several files
            if "lease" not in columns:
                conn.execute("ALTER TABLE requests ADD COLUMN lease REAL")  # a journal from before leases
        except BaseException:
            conn.close()
            raise
        return conn

    def _unusable(self, exc: BaseException) -> JournalUnusable:
        return JournalUnusable(
            f"The pack's data folder {self.path.parent} cannot hold its request journal ({type(exc).__name__}: "
            f"{exc}). Make it a writable folder, or point FAL_AUDIO_DATA_DIR at one. Nothing was sent to fal.")

    def _set_aside(self, exc: BaseException) -> None:
        """Move a damaged journal file aside (with a timestamp) so a new one starts; say so."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        self._generation += 1
        spend_ledger._ledgers.pop(self.path, None)  # the spend ledger lives in the same file: reopen it too
        notice = (f"The request journal was damaged ({exc}); it was moved to {aside.name} and a new one started. "
                  "Results kept before are not reused automatically.")
        log.warning("%s: %s", self.path, notice)
        self._notices.append(notice)

    def notices(self) -> list:
        """What the journal has to tell the user (e.g. it was damaged and replaced), once."""
        said, self._notices = self._notices, []
        return said

    def _attempt(self, op: Callable, args: tuple, paid: bool):
        """Run one step; a damaged file is set aside once; a locked journal is retried while
        the step records money already spent."""
        set_aside = False
        while True:
            try:
                with durable(paid):  # a record of money spent is synced to disk at its commit
                    return op(*args)
            except sqlite3.DatabaseError as exc:
                if _damaged(exc) and not set_aside:
                    self._set_aside(exc)
                    set_aside = True
                    continue
                if _locked(exc) and paid:
                    log.warning("%s is locked by another program; still trying to record %s", self.path,
                                getattr(op, "__name__", "a step"))
                    time.sleep(LOCKED_RETRY)
                    continue
                if any(sign in str(exc).lower() for sign in _UNUSABLE):
                    raise self._unusable(exc) from None
                raise

    # -- waiting without blocking the event loop ----------------------------------------------

    async def call(self, op: Callable, *args, paid: bool = False, undo: Optional[Callable] = None,
                   wait: Optional[float] = None):
        """Run a journal step in the journal's thread, in order with every other step of this
        process, and wait for it while noticing ComfyUI's Cancel every WAIT_CHECK.

        paid: the step records money already spent (an accepted id, a result): it is retried
        until written, even after the caller stopped waiting. undo(result) runs (in order) if
        the caller stops waiting before the step is done, e.g. to release a claim made for a
        cancelled task. wait: stop waiting after this many seconds (the step still runs).
        """
        done = _worker_pool().submit(self._attempt, op, args, paid)
        waiting = asyncio.wrap_future(done)
        deadline = None if wait is None else time.monotonic() + wait
        try:
            while True:
                finished, _ = await asyncio.wait({waiting}, timeout=WAIT_CHECK)
                if finished:
                    return waiting.result()
                if deadline is not None and time.monotonic() > deadline:
                    return None
                comfy.throw_if_interrupted()
        except BaseException:
            if undo is not None and not done.done():
                _worker_pool().submit(self._undo_after, done, undo)
            raise

    def _undo_after(self, done, undo: Callable) -> None:
        if done.exception() is None:
            self._attempt(undo, (done.result(),), False)

    # -- rows ----------------------------------------------------------------------------------

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

    def _held_by_a_live_owner(self, conn, key: str, owner: Optional[str]) -> bool:
        if owner == OWNER:
            with _active_lock:
                return (self.path, key) in _active  # else: left by a task of ours that is gone
        if dead_here(owner):
            return False  # a process of this machine that no longer runs
        (lease,) = conn.execute("SELECT lease FROM requests WHERE identity=?", (key,)).fetchone()
        return lease is not None and lease > time.time()

    def claim(self, key: str, endpoint: str) -> Optional[Entry]:
        """Claim the right to submit `key`. Returns None if the caller must submit, else the
        existing entry (completed: reuse; submitted: resume; submitting by a live owner: wait)."""
        conn = self._connect()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        held = False
        try:
            entry = self._row(conn, key)
            reusable = entry is not None and (
                entry.state in (COMPLETED, SUBMITTED)
                or (entry.state == SUBMITTING and self._held_by_a_live_owner(conn, key, entry.owner))
            )
            if not reusable:
                if entry is not None and entry.state == SUBMITTING:
                    log.warning("%s: taking over the claim of %s, whose process is gone", endpoint, entry.owner)
                conn.execute(
                    "INSERT OR REPLACE INTO requests (identity, endpoint, state, owner, created, updated, lease)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, endpoint, SUBMITTING, OWNER, now, now, now + LEASE_SECONDS),
                )
                # Held before the commit: from the moment another connection of this process can see the
                # claim, it must find it held by a live task of ours, not "left by a task that is gone".
                self._hold(key)
                held = True
            conn.execute("COMMIT")
        except BaseException:
            if held:
                self._let_go(key)
            conn.execute("ROLLBACK")
            raise
        return entry if reusable else None

    def _hold(self, key: str) -> None:
        global _renewer
        with _active_lock:
            _active.add((self.path, key))
            _journals_seen[self.path] = self
            if _renewer is None:
                _renewer = threading.Thread(target=_renew_leases, name="fal-audio-journal-leases", daemon=True)
                _renewer.start()

    def _let_go(self, key: str) -> None:
        with _active_lock:
            _active.discard((self.path, key))

    def renew(self) -> None:
        """Extend the lease of every claim this process holds in this journal."""
        with _active_lock:
            keys = [key for path, key in _active if path == self.path]
        if keys:
            self._connect().executemany(
                "UPDATE requests SET lease=? WHERE identity=? AND owner=? AND state=?",
                [(time.time() + LEASE_SECONDS, key, OWNER, SUBMITTING) for key in keys])

    def _update(self, key: str, **fields) -> None:
        # fal's answers (error text, responses) may echo the key: nothing secret reaches the disk.
        fields = {name: secrets.redact(value) if isinstance(value, str) else value for name, value in fields.items()}
        fields["updated"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        self._connect().execute(f"UPDATE requests SET {assignments} WHERE identity=?", (*fields.values(), key))
        self._let_go(key)

    def ledger(self):
        return spend_ledger.book(self.path)

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
        self._connect().execute("DELETE FROM requests WHERE identity=? AND state=? AND owner=?",
                                (key, SUBMITTING, OWNER))
        self._let_go(key)
        self.ledger().unpaid(key, "the submit never reached fal")

    def forget(self, key: str) -> None:
        self._connect().execute("DELETE FROM requests WHERE identity=?", (key,))
        self._let_go(key)
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
            (content_hash, secrets.redact(url), time.time()),
        )


def _renew_leases() -> None:
    """Keep the leases of this process's claims alive (a daemon thread, one per process)."""
    while True:
        time.sleep(LEASE_RENEW)
        with _active_lock:
            journals = {path: _journals_seen[path] for path, _ in _active if path in _journals_seen}
        for book in journals.values():
            try:
                book.renew()
            except Exception as exc:  # noqa: BLE001 - locked or gone: try again at the next beat
                log.debug("%s: could not renew leases (%s)", book.path, type(exc).__name__)
