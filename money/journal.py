"""The books of every paid request: the request journal and the spend ledger, with one writer.

Before a request is submitted its identity (endpoint + a hash of the exact request) is
claimed here; fal's request id is stored as soon as fal returns it, and the kept files once
they are on disk. A later run with the same identity reuses the kept result, or resumes
following the stored request id if ComfyUI died while it was in flight.

Each request has a row in `requests` (its story: reuse, resume) and rows in `ledger` (its
money; states in money/ledger.py). Every step below writes both in ONE transaction, so a
crash can never separate them; nothing else writes either table. The ledger's triggers keep its
running totals per day (what the daily limit and the fal Spend report read) in that same transaction:

  claim      requests: submitting (owner, lease)     ledger: reserved at the estimate, refused
                                                     if it would pass today's limit
  sending    requests: sent (the submit goes out now)
  submitted  requests: submitted, fal's request id   ledger: accepted
  completed  requests: completed, response, files    ledger: settled, on the day fal completed it
  settle                                             ledger: the cost refined by the returned length
  failed     requests: failed (fal said so)          ledger: unpaid ($0)
  uncertain  requests: uncertain (may be on fal)     ledger: possibly billed, at the estimate
  release    requests: deleted (nothing was sent)    ledger: unpaid ($0)
  reused                                             ledger: a $0 row for a kept result
  fetched    requests: completed (a result fetched   ledger: a $0 row
             by its request id, no new request)

A claim left "submitting" by a process that died is taken over when nothing was sent yet;
once its submit was sent (`sent`), fal may have it: it is booked as possibly billed, the first
run that finds it stops and says so, and a run after that submits anew.

SQLite from the standard library, WAL mode, one short transaction per step: safe for
several prompts (and threads) at once and for a crash at any point. With FAL_AUDIO_DATABASE_URL
the same steps run on PostgreSQL, shared by several workers (money/store.py: the few words that
differ, and a lock that makes every worker's steps run one at a time, as on a SQLite file). The job runner reaches
it with `await journal.call(...)`: each step runs in the journal's own thread, in order, so a
journal locked by another program never stalls the event loop and every wait notices
ComfyUI's Cancel. A step that records money already spent (an accepted request id, a result,
a possibly billed submit) is synced to disk at its commit and retried until it is written. A
claim held by another process is taken over only when that process is dead (money/owner.py;
leases below). A damaged journal file is moved aside and a new one started, keeping the
spend read back from it (or today's total, from a small note written beside the journal).
"""

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional

from ..core import comfy, secrets
from ..core.log import get_logger
from . import ledger
from .ledger import ACCEPTED, OPEN, RESERVED, REUSED, SETTLED, UNPAID
from .owner import OWNER, dead_here
from .pricing import Charge, money
from .pricing import units as price_units
from .store import ENV_URL, JournalUnusable, Unreachable, open_store, url_from_env, worker_name
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
# The spend note beside a SQLite journal: "day usd", padded to this many characters.
_NOTE_WIDTH = 63
# fal's storage keeps uploads for a while; reuse an uploaded clip's URL within this time.
UPLOAD_REUSE_SECONDS = 12 * 3600

SUBMITTING, SUBMITTED, COMPLETED, FAILED = "submitting", "submitted", "completed", "failed"
UNCERTAIN = ledger.UNCERTAIN  # the submit may have reached fal: a later run submits anew

# The schema's version, kept in `schema_version`: a database written by a newer pack is refused.
# 3: the ledger's running totals (ledger_totals and its triggers), counted from the rows on upgrading.
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    identity TEXT PRIMARY KEY, endpoint TEXT NOT NULL, state TEXT NOT NULL,
    request_id TEXT, owner TEXT, response TEXT, file_path TEXT,
    detail TEXT, created REAL NOT NULL, updated REAL NOT NULL, files TEXT, lease REAL, sent REAL);
CREATE TABLE IF NOT EXISTS uploads (
    content_hash TEXT PRIMARY KEY, url TEXT NOT NULL, uploaded REAL NOT NULL);
""" + ledger.SCHEMA
# Columns added since the first journals: (table, column, type); a journal without one gets it on opening.
_ADDED = (("requests", "files", "TEXT"), ("requests", "lease", "REAL"), ("requests", "sent", "REAL"),
          ("ledger", "worker", "TEXT"))
_BOOKED = ("identity, endpoint, day, state, request_id, units, unit, unit_price, price_source, time_based,"
           " round_up, estimate_usd, cost_usd, detail, created, updated")
_LEDGER_COLUMNS = _BOOKED + ", worker"  # the worker that wrote the row
WORKER = worker_name()


def identity(endpoint: str, request: dict) -> str:
    """A stable hash of exactly what would be sent (uploads named by their content hash)."""
    canonical = json.dumps({"endpoint": endpoint, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Claims held by running tasks of this process: (journal path, identity). A "submitting" row of ours
# that is not in here was left by a task that is gone.
_active: set = set()
_active_lock = threading.Lock()
_worker: Optional[ThreadPoolExecutor] = None
_renewer: Optional[threading.Thread] = None
_journals_seen: dict = {}  # path -> Journal, for the lease renewer
_opened: dict = {}  # path -> Journal of the data folder (current())


def current(url: Optional[str] = None, source: str = ENV_URL) -> "Journal":
    """The journal of the database at `url` (written in `source`, e.g. a credentials profile), else of the one
    FAL_AUDIO_DATABASE_URL names, else of the pack's data folder: one per place and process."""
    url = url or url_from_env()
    place = url or comfy.data_directory() / "journal.sqlite3"
    if place not in _opened:
        _opened[place] = Journal(url=url, source=source) if url else Journal(place)
    return _opened[place]


def forget_open() -> None:
    """Open the journal anew at its next use, as a restarted ComfyUI does."""
    _opened.clear()


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
    detail: Optional[str] = None  # uncertain: what the user is told
    sent: Optional[float] = None  # submitting: when the submit went out (None: not yet)


class Booked(NamedTuple):
    """A request's ledger row after a step moved it: what the final status of a run tells."""

    state: str
    estimate: Optional[float]
    cost: Optional[float]
    request_id: Optional[str]


class Journal:
    def __init__(self, path: Optional[Path] = None, url: Optional[str] = None, source: str = ENV_URL):
        """The SQLite journal at `path` (default: the data folder's), or the PostgreSQL database at `url` (named
        in `source`)."""
        self.path = None if url else Path(path) if path else comfy.data_directory() / "journal.sqlite3"
        self.store = open_store(self.path, url, BUSY_TIMEOUT, source)
        self.place = self.store.place  # the file, or the URL without its password: for claims held and messages
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
        return synced(conn) if self.path else conn

    def _open(self):
        try:
            conn = self.store.connect()
        except (OSError, sqlite3.OperationalError) as exc:
            raise self._unusable(exc) from None
        try:
            if self.path:
                use_wal(conn)
            self._step_on(conn, self._upgrade)
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade(self, conn) -> None:
        """Create the tables, or add what an older pack's journal lacks; refuse one from a newer pack."""
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if version is not None and version > SCHEMA_VERSION:
            raise JournalUnusable(f"The request journal at {self.place} was written by a newer fal Audio (schema "
                                  f"{version}, this one knows {SCHEMA_VERSION}): update the pack on this worker. "
                                  "Nothing was sent to fal.")
        columns = {table: self.store.columns(conn, table) for table in ("requests", "ledger")}
        for table, column, kind in _ADDED:
            if column not in columns[table]:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if column == "sent":  # a journal from before: a claim it left may have been sent
                    conn.execute("UPDATE requests SET sent=updated WHERE state=?", (SUBMITTING,))
        if version != SCHEMA_VERSION:
            for statement in self.store.triggers(ledger.count_sql):
                conn.execute(statement)
            conn.execute("DELETE FROM ledger_totals")
            conn.execute(ledger.RECOUNT)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _unusable(self, exc: BaseException) -> JournalUnusable:
        if not self.path:
            return self.store.unreachable(exc)
        return JournalUnusable(
            f"The pack's data folder {self.path.parent} cannot hold its request journal ({type(exc).__name__}: "
            f"{exc}). Make it a writable folder, or point FAL_AUDIO_DATA_DIR at one. Nothing was sent to fal.")

    def _set_aside(self, exc: BaseException) -> None:
        """Move a damaged journal file aside (with a timestamp) so a new one starts, keeping its spend; say so."""
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
        notice = (f"The request journal was damaged ({exc}); it was moved to {aside.name} and a new one started. "
                  f"Results kept before are not reused automatically. {self._carry_spend_over(aside)}")
        log.warning("%s: %s", self.path, notice)
        self._notices.append(notice)

    def _carry_spend_over(self, aside: Path) -> str:
        """Copy the ledger rows of the report's days from the damaged file into the new one, else a row
        of today's total from the spend note, so the daily limit goes on counting them. Says what it did."""
        try:
            with contextlib.closing(sqlite3.connect(aside)) as old:
                rows = [(*row, WORKER) for row in old.execute(f"SELECT {_BOOKED} FROM ledger WHERE day>=?",
                                                              (ledger.first_day(),))]
            how = "read back from the damaged file"
        except sqlite3.DatabaseError:
            total, now = self._noted_spend(), time.time()
            if total is None:
                return ("Today's earlier spend could not be read back, so the daily limit counts from $0 again: "
                        "check https://fal.ai/dashboard/usage.")
            rows = [("carried-over", "(before the damaged journal)", ledger.today(), SETTLED, None, None, None,
                     None, "spend note", 0, 0, total, total, "today's spend noted before the journal was damaged",
                     now, now, WORKER)] if total else []
            how = "from the spend note beside the journal"

        def write(conn):
            conn.executemany(f"INSERT INTO ledger ({_LEDGER_COLUMNS}) VALUES ({', '.join('?' * 17)})", rows)
            return _spent(conn, ledger.today())

        spent = self._step(write)
        self._note_spend(self._connect())
        return f"Today's spend of {money(spent)} was kept ({how}), so the daily limit still counts it."

    @property
    def _spend_note(self) -> Path:
        return self.path.with_name(self.path.name + ".spend")

    def _note_spend(self, conn) -> None:
        """Write today's spend beside the journal (no sync: a crash of ComfyUI keeps it), for a journal
        damaged beyond reading. (A shared database has no file to note it beside.) One fixed-width record
        written over the last in place: a rename or a truncation would make the file system flush it at once
        (ext4 does), most of a claim's time."""
        if not self.path:
            return
        day = ledger.today()
        record = f"{day} {_spent(conn, day)!r}".ljust(_NOTE_WIDTH).encode("ascii") + b"\n"
        try:
            with open(self._spend_note, "r+b" if self._spend_note.exists() else "wb") as note:
                note.write(record)
        except OSError as exc:
            log.debug("%s: spend note not written (%s)", self.path, type(exc).__name__)

    def _noted_spend(self) -> Optional[float]:
        try:
            day, usd = self._spend_note.read_text(encoding="ascii").split()
            return float(usd) if day == ledger.today() else 0.0
        except (OSError, ValueError):
            return None

    def notices(self) -> list:
        """What the journal has to tell the user (e.g. it was damaged and replaced), once."""
        said, self._notices = self._notices, []
        return said

    def _attempt(self, op: Callable, args: tuple, paid: bool):
        """Run one step; a damaged file is set aside once; a locked journal, or a shared database out of
        reach, is retried while the step records money already spent."""
        set_aside, waited = False, False
        while True:
            try:
                with durable(paid):  # a record of money spent is synced to disk at its commit
                    return op(*args)
            except Unreachable:
                if not paid:
                    raise
                waited = self._wait_for_database(op, waited)
            except self.store.errors as exc:
                if self.store.lost(exc):
                    self._drop()
                    if not paid:
                        raise self.store.unreachable(exc) from None
                    waited = self._wait_for_database(op, waited)
                    continue
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

    def _wait_for_database(self, op: Callable, warned: bool) -> bool:
        if not warned:
            log.warning("%s cannot be reached; still trying to record %s", self.place,
                        getattr(op, "__name__", "a step"))
        time.sleep(LOCKED_RETRY)
        return True

    def _drop(self) -> None:
        """Forget this thread's connection (its server went away): the next step opens a new one."""
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

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

    def _step(self, write: Callable, *args):
        return self._step_on(self._connect(), write, *args)

    def _step_on(self, conn, write: Callable, *args):
        """One transaction around `write(conn, *args)` that holds the write lock from its start (SQLite:
        IMMEDIATE; PostgreSQL: the advisory lock every worker's steps take): all of it is written, or none."""
        try:
            for statement in self.store.begin:
                conn.execute(statement)
            result = write(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(*self.store.errors):  # a connection that is gone has nothing to roll back
                conn.execute("ROLLBACK")
            raise
        return result

    # -- rows ----------------------------------------------------------------------------------

    def _row(self, conn, key: str) -> Optional[Entry]:
        return _entry(conn.execute(f"SELECT {_ENTRY} FROM requests r WHERE identity=?", (key,)).fetchone())

    def get(self, key: str) -> Optional[Entry]:
        return self._row(self._connect(), key)

    def _held_by_a_live_owner(self, conn, key: str, owner: Optional[str]) -> bool:
        if owner == OWNER:
            with _active_lock:
                return (self.place, key) in _active  # else: left by a task of ours that is gone
        if dead_here(owner):
            return False  # a process of this machine that no longer runs
        (lease,) = conn.execute("SELECT lease FROM requests WHERE identity=?", (key,)).fetchone()
        return lease is not None and lease > time.time()

    def claim(self, key: str, endpoint: str, charge: Optional[Charge] = None, limit: float = 0.0,
              held: Optional[dict] = None) -> Optional[Entry]:
        """Claim the right to submit `key`, reserving its estimate (refused with SpendLimitReached if it
        would pass today's `limit`). Returns None if the caller must submit, else the existing entry
        (completed: reuse; submitted: resume; submitting by a live owner: wait; uncertain: stop, its
        `detail` says why).

        held: this prompt's submits that may have reached fal (identity -> message): an identical
        node of the same prompt must not send them again; a later prompt (a re-run) may."""
        claimed = []

        def write(conn):
            day = ledger.today()
            # Today's spend and the request's row in one read (one round trip to a database).
            spent, *row = conn.execute(f"SELECT ({ledger.SPENT}), {_ENTRY} FROM (SELECT 1) AS one"
                                       " LEFT JOIN requests r ON r.identity=?", (day, key)).fetchone()
            entry = _entry(row if row[0] is not None else None)
            if held is not None and key in held:
                return Entry(key, endpoint, UNCERTAIN, None, None, None, None, detail=held[key])
            if entry is not None and (entry.state in (COMPLETED, SUBMITTED) or (
                    entry.state == SUBMITTING and self._held_by_a_live_owner(conn, key, entry.owner))):
                return entry
            if entry is not None and entry.state == SUBMITTING and entry.sent is not None:
                return self._found_sent(conn, entry, held)
            if entry is not None and entry.state == SUBMITTING:
                log.warning("%s: taking over the claim of %s, whose process is gone", endpoint, entry.owner)
            now, spent = time.time(), int(spent) / ledger.NANO
            if entry is not None:  # a failed, uncertain or left claim
                # A reservation left by a claim whose submit never went out is replaced by this one.
                conn.execute("DELETE FROM ledger WHERE identity=? AND state=?", (key, RESERVED))
                conn.execute("DELETE FROM requests WHERE identity=?", (key,))
                spent = _spent(conn, day) if limit else spent
            self._reserve(conn, key, endpoint, charge, limit, now, day, spent)
            conn.execute(
                "INSERT INTO requests (identity, endpoint, state, owner, created, updated, lease)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", (key, endpoint, SUBMITTING, OWNER, now, now, now + LEASE_SECONDS))
            # Held before the commit: from the moment another connection of this process can see the
            # claim, it must find it held by a live task of ours, not "left by a task that is gone".
            self._hold(key)
            claimed.append(key)
            return None

        try:
            entry = self._step(write)
        except BaseException:
            if claimed:
                self._let_go(key)
            raise
        if claimed:
            self._note_spend(self._connect())
        return entry

    def _reserve(self, conn, key: str, endpoint: str, charge: Optional[Charge], limit: float, now: float, day: str,
                 spent: float) -> None:
        """Book the claim's estimate on `day`, unless it would take the day's `spent` past `limit`."""
        estimate = charge.usd if charge is not None else None
        price = charge.price if charge is not None else None
        if limit and (estimate is None or spent + estimate > limit + 1e-9):
            raise ledger.refusal(endpoint, spent, estimate, limit)
        conn.execute(
            "INSERT INTO ledger (identity, endpoint, day, state, units, unit, unit_price, price_source, time_based,"
            " round_up, estimate_usd, created, updated, worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, endpoint, day, RESERVED, charge.units if charge else None, price.unit if price else None,
             price.unit_price if price else None, price.source if price else "unknown",
             int(bool(charge and charge.time_based)), int(bool(price and price.round_up)), estimate, now, now, WORKER))

    def _found_sent(self, conn, entry: Entry, held: Optional[dict]) -> Entry:
        """A claim whose process died after sending its submit and before recording fal's answer: fal
        may have it. Booked as possibly billed; this run stops and says so; a later run submits anew."""
        log.warning("%s: the process %s died after sending its submit; booking it as possibly billed",
                    entry.endpoint, entry.owner)
        row = conn.execute("SELECT estimate_usd FROM ledger WHERE identity=? AND state IN (?, ?) ORDER BY id DESC",
                           (entry.identity, *OPEN)).fetchone()
        message = (f"{entry.endpoint}: an earlier run may have been billed for this request: it sent the request to "
                   "fal and stopped (ComfyUI closed or crashed) before fal's answer was recorded. "
                   f"{ledger.possibly_billed(row[0] if row else None)} Nothing was sent now. Check your requests at "
                   "https://fal.ai/dashboard (the requests list), and run the node again to submit anew.")
        self._uncertain(conn, entry.identity, "the process died after sending the submit", message, held)
        return Entry(entry.identity, entry.endpoint, UNCERTAIN, None, entry.owner, None, None, detail=message)

    def _hold(self, key: str) -> None:
        global _renewer
        with _active_lock:
            _active.add((self.place, key))
            _journals_seen[self.place] = self
            if _renewer is None:
                _renewer = threading.Thread(target=_renew_leases, name="fal-audio-journal-leases", daemon=True)
                _renewer.start()

    def _let_go(self, key: str) -> None:
        with _active_lock:
            _active.discard((self.place, key))

    def renew(self) -> None:
        """Extend the lease of every claim this process holds in this journal."""
        with _active_lock:
            keys = [key for path, key in _active if path == self.place]
        if keys:
            self._connect().executemany(
                "UPDATE requests SET lease=? WHERE identity=? AND owner=? AND state=?",
                [(time.time() + LEASE_SECONDS, key, OWNER, SUBMITTING) for key in keys])

    # -- the steps of a request: its journal row and its ledger row, in one transaction ---------------

    def _update(self, conn, key: str, **fields) -> None:
        # fal's answers (error text, responses) may echo the key: nothing secret reaches the disk.
        fields = {name: secrets.redact(value) if isinstance(value, str) else value for name, value in fields.items()}
        fields["updated"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        conn.execute(f"UPDATE requests SET {assignments} WHERE identity=?", (*fields.values(), key))
        self._let_go(key)

    def _book(self, conn, key: str, state: str, paid: bool = False, **fields) -> Optional[Booked]:
        """Move the request's open ledger row (reserved or accepted) to `state` (paid: at its estimate);
        None if it has none (e.g. a kept result fetched again, whose row settled in an earlier run)."""
        row = conn.execute("SELECT id, estimate_usd, cost_usd, request_id FROM ledger WHERE identity=? AND state IN"
                           " (?, ?) ORDER BY id DESC LIMIT 1", (key, *OPEN)).fetchone()
        if row is None:
            return None
        if paid:
            fields["cost_usd"] = row[1]
        fields.update(state=state, updated=time.time())
        assignments = ", ".join(f"{name}=?" for name in fields)
        conn.execute(f"UPDATE ledger SET {assignments} WHERE id=?", (*fields.values(), row[0]))
        cost = fields.get("cost_usd", row[2])
        return Booked(state, row[1], None if cost is None else float(cost), fields.get("request_id", row[3]))

    def sending(self, key: str) -> None:
        """The submit goes out now: from here a claim left by a dead process may be on fal."""
        self._connect().execute("UPDATE requests SET sent=? WHERE identity=? AND state=? AND owner=?",
                                (time.time(), key, SUBMITTING, OWNER))

    def submitted(self, key: str, request_id: str) -> Optional[Booked]:
        def write(conn):
            self._update(conn, key, state=SUBMITTED, request_id=request_id)
            return self._book(conn, key, ACCEPTED, request_id=request_id)

        return self._step(write)

    def completed(self, key: str, response: dict, files: Dict[str, Path]) -> Optional[Booked]:
        """The result is in: fal's response and every kept file (output name -> path; {} for text only).
        Paid: at the estimate until settle() refines it, on the day fal completed it."""
        paths = {name: str(path) for name, path in files.items()}

        def write(conn):
            self._update(conn, key, state=COMPLETED, response=json.dumps(response),
                         file_path=next(iter(paths.values()), None), files=json.dumps(paths))
            return self._book(conn, key, SETTLED, paid=True, day=ledger.today())

        booked = self._step(write)
        self._note_spend(self._connect())
        return booked

    def settle(self, key: str, charge: Optional[Charge], returned_seconds: Optional[float]) -> Optional[float]:
        """Refine the settled cost of a completed request with what fal returned; returns its cost."""
        conn = self._connect()
        row = conn.execute(
            "SELECT id, cost_usd FROM ledger WHERE identity=? AND state=? ORDER BY id DESC LIMIT 1",
            (key, SETTLED)).fetchone()
        if row is None:
            return charge.usd if charge is not None else None
        cost = charge.settled_usd(returned_seconds) if charge is not None else row[1]
        units = None
        if charge is not None and charge.time_based and returned_seconds is not None:
            units = price_units(charge.price, {"seconds": returned_seconds})
        conn.execute("UPDATE ledger SET cost_usd=?, units=COALESCE(?, units), updated=? WHERE id=?",
                     (cost, units, time.time(), row[0]))
        if cost != row[1]:
            self._note_spend(conn)
        return cost

    def failed(self, key: str, detail: str) -> Optional[Booked]:
        """fal reported the request failed or cancelled: never reuse it; $0."""
        def write(conn):
            self._update(conn, key, state=FAILED, detail=detail)
            said = secrets.redact(f"failed or cancelled: {detail}")[:500]
            return self._book(conn, key, UNPAID, cost_usd=0, detail=said)

        return self._step(write)

    def uncertain(self, key: str, detail: str, message: str, held: Optional[dict] = None) -> Optional[Booked]:
        """The submit may have reached fal and its answer was lost: booked as possibly billed, at its
        estimate. `message` (what the user is told) is kept in `held` for the rest of the prompt."""
        return self._step(self._uncertain, key, detail, message, held)

    def _uncertain(self, conn, key: str, detail: str, message: str, held: Optional[dict]) -> Optional[Booked]:
        self._update(conn, key, state=UNCERTAIN, detail=detail)
        if held is not None:
            held[key] = message
        return self._book(conn, key, UNCERTAIN, detail=secrets.redact(detail)[:500])

    def release(self, key: str) -> Optional[Booked]:
        """Forget a claim whose submit never reached fal (so nothing was paid)."""
        def write(conn):
            conn.execute("DELETE FROM requests WHERE identity=? AND state=? AND owner=?", (key, SUBMITTING, OWNER))
            self._let_go(key)
            return self._book(conn, key, UNPAID, cost_usd=0, detail="the submit never reached fal")

        return self._step(write)

    def forget(self, key: str) -> None:
        def write(conn):
            conn.execute("DELETE FROM requests WHERE identity=?", (key,))
            self._let_go(key)
            self._book(conn, key, UNPAID, cost_usd=0, detail="fal does not know the request")  # a paid row stays

        self._step(write)

    def reused(self, key: str, endpoint: str, request_id: Optional[str]) -> Booked:
        now = time.time()
        self._connect().execute(
            "INSERT INTO ledger (identity, endpoint, day, state, request_id, estimate_usd, cost_usd, detail, created,"
            " updated, worker) VALUES (?, ?, ?, ?, ?, 0, 0, 'kept result reused', ?, ?, ?)",
            (key, endpoint, ledger.today(), REUSED, request_id, now, now, WORKER))
        return Booked(REUSED, 0.0, 0.0, request_id)

    def fetched(self, key: str, endpoint: str, request_id: str, response: dict, files: Dict[str, Path]) -> Booked:
        """A finished request's result fetched from fal by its id (nothing new paid): kept like any result
        (reused by the next fetch) and booked as a $0 row."""
        now, paths = time.time(), {name: str(path) for name, path in files.items()}

        def write(conn):
            conn.execute("DELETE FROM requests WHERE identity=?", (key,))
            conn.execute("INSERT INTO requests (identity, endpoint, state, request_id, response, file_path, files,"
                         " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, endpoint, COMPLETED, request_id, secrets.redact(json.dumps(response)),
                          next(iter(paths.values()), None), json.dumps(paths), now, now))
            conn.execute("INSERT INTO ledger (identity, endpoint, day, state, request_id, estimate_usd, cost_usd,"
                         " detail, created, updated, worker) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?)",
                         (key, endpoint, ledger.today(), REUSED, request_id, "result fetched by request id", now, now,
                          WORKER))
            return Booked(REUSED, 0.0, 0.0, request_id)

        return self._step(write)

    # -- what the books say: the daily limit, the fal Spend report ---------------------------------------

    def check_limit(self, endpoint: str, planned: list, limit: float) -> None:
        """Refuse a whole run up front if it cannot fit under today's limit (nothing is written).
        planned: (identity, estimate) of its requests; kept results and requests already with fal
        cost nothing new."""
        conn = self._connect()
        new = [usd for key, usd in planned
               if getattr(self._row(conn, key), "state", None) not in (COMPLETED, SUBMITTED)]
        if not limit or not new:
            return
        total = None if any(usd is None for usd in new) else sum(new)
        spent = _spent(conn, ledger.today())
        if total is None or spent + total > limit + 1e-9:
            raise ledger.refusal(endpoint, spent, total, limit)

    def spent_today(self) -> float:
        return _spent(self._connect(), ledger.today())

    def spend_report(self, limit: float = 0.0) -> tuple:
        """The fal Spend node's text and today's spend in USD."""
        return ledger.report(self.spend_totals(), limit)

    def spend_totals(self, days: int = ledger.REPORT_DAYS) -> list:
        """The ledger's running totals of the last `days` days: (day, endpoint, worker, state, requests, nano_usd,
        unknown), as ledger.report() reads them."""
        return self._connect().execute(ledger.TOTALS, (ledger.first_day(days),)).fetchall()

    def results(self, count: int = 50, request_id: Optional[str] = None) -> list:
        """The newest paid or reused results (or those of one request id), newest first: dicts of the ledger
        row (time, endpoint, state, request_id, identity, cost_usd) and the request's kept `files` (name -> path)."""
        one = " AND l.request_id = ?" if request_id else ""
        rows = self._connect().execute(
            "SELECT l.updated, l.endpoint, l.state, l.request_id, l.identity, l.cost_usd, r.files, r.file_path"
            " FROM ledger l LEFT JOIN requests r"
            " ON r.identity = l.identity AND r.request_id = l.request_id AND r.state = ?"
            f" WHERE l.state IN (?, ?) AND l.request_id IS NOT NULL{one} ORDER BY l.id DESC LIMIT ?",
            (COMPLETED, SETTLED, REUSED, *([request_id] if request_id else []), count)).fetchall()
        names = ("time", "endpoint", "state", "request_id", "identity", "cost_usd")
        return [{**dict(zip(names, row[:6])),
                 "files": json.loads(row[6]) if row[6] else ({"audio": row[7]} if row[7] else {})} for row in rows]

    # -- moving over: an existing SQLite journal into this one ----------------------------------------------

    def import_from(self, source: Path, worker: str = "") -> dict:
        """Copy the books of the SQLite journal at `source` into this one (e.g. the shared database), in one
        step: its requests and uploads whose identity is not here yet, and its ledger rows not copied before
        (same identity, state and time). Run again, it copies nothing. Ledger rows that name no worker are
        booked to `worker` (default: this one). Returns how many rows of each table were copied."""
        if not Path(source).is_file():
            raise FileNotFoundError(f"There is no journal at {source}.")
        old = Journal(Path(source))._connect()  # brought up to this schema first, as the pack does on opening it
        requests_columns = ("identity, endpoint, state, request_id, owner, response, file_path, detail, created,"
                            " updated, files, lease, sent")
        tables = {
            "requests": (requests_columns, "SELECT 1 FROM requests WHERE identity=?", (0,)),
            "ledger": (_LEDGER_COLUMNS, "SELECT 1 FROM ledger WHERE identity=? AND state=? AND created=?",
                       (0, 3, 14)),
            "uploads": ("content_hash, url, uploaded", "SELECT 1 FROM uploads WHERE content_hash=?", (0,)),
        }
        rows = {table: old.execute(f"SELECT {columns} FROM {table}").fetchall()
                for table, (columns, _, _) in tables.items()}
        old.close()
        name = worker or WORKER

        def write(conn):
            copied = {}
            for table, (columns, there, key) in tables.items():
                new = [row for row in rows[table] if conn.execute(there, tuple(row[i] for i in key)).fetchone() is None]
                if table == "ledger":
                    new = [(*row[:-1], row[-1] or name) for row in new]
                if new:
                    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(new[0]))})", new)
                copied[table] = len(new)
            return copied

        return self._step(write)

    # -- uploads -----------------------------------------------------------------------------------------

    def upload_url(self, content_hash: str) -> Optional[str]:
        row = self._connect().execute(
            "SELECT url, uploaded FROM uploads WHERE content_hash=?", (content_hash,)
        ).fetchone()
        if row and time.time() - row[1] < UPLOAD_REUSE_SECONDS:
            return row[0]
        return None

    def remember_upload(self, content_hash: str, url: str) -> None:
        def write(conn):
            conn.execute("DELETE FROM uploads WHERE content_hash=?", (content_hash,))
            conn.execute("INSERT INTO uploads (content_hash, url, uploaded) VALUES (?, ?, ?)",
                         (content_hash, secrets.redact(url), time.time()))

        self._step(write)


def _spent(conn, day: str) -> float:
    """The spend booked on `day` in USD, from the ledger's running totals."""
    return int(conn.execute(ledger.SPENT, (day,)).fetchone()[0]) / ledger.NANO


_ENTRY = "r.identity, r.endpoint, r.state, r.request_id, r.owner, r.response, r.file_path, r.files, r.detail, r.sent"


def _entry(row) -> Optional[Entry]:
    """The Entry of a requests row read as _ENTRY, or None."""
    if row is None:
        return None
    files = json.loads(row[7]) if row[7] else ({"audio": row[6]} if row[6] else {})
    return Entry(*row[:5], json.loads(row[5]) if row[5] else None, row[6], files, row[8], row[9])


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
                log.debug("%s: could not renew leases (%s)", book.place, type(exc).__name__)
