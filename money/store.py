"""Where the books live: SQLite (the default, a file in the pack's data folder, nothing to set up) or
PostgreSQL (`FAL_AUDIO_DATABASE_URL=postgresql://...`, or a credentials profile's `database_url`), shared by
several ComfyUI workers.

The journal writes its SQL once, in SQLite's words with `?` placeholders; this layer opens a
connection and translates the few things that differ:

- a step's transaction: SQLite's `BEGIN IMMEDIATE` takes the file's one write lock; on PostgreSQL a
  transaction-scoped advisory lock on one constant key does the same for every worker on the
  database, so a claim's limit check and reservation (and the claim of an identity) are never
  interleaved with another worker's;
- placeholders (`%s`), column types (`DOUBLE PRECISION`, an identity column) and the list of a
  table's columns (for upgrades);
- the triggers that keep the ledger's running totals (money/ledger.py), in each one's words.

psycopg (v3) is imported only when the URL is set: `pip install "psycopg[binary]"`.
"""

import functools
import os
import socket
import sqlite3
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ..core.errors import FalAudioError

ENV_URL = "FAL_AUDIO_DATABASE_URL"
ENV_WORKER = "FAL_AUDIO_WORKER_NAME"
# One key for every step of every worker on a database ("falaudio" in ASCII): steps run one at a time.
STEP_LOCK = 0x66616C617564696F
CONNECT_TIMEOUT = 5


def url_from_env() -> Optional[str]:
    return os.environ.get(ENV_URL, "").strip() or None


def worker_name() -> str:
    """How this worker names itself in the ledger: $FAL_AUDIO_WORKER_NAME, else the host name."""
    return os.environ.get(ENV_WORKER, "").strip()[:100] or socket.gethostname()


def scrub(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# Each ledger row is counted in its day's totals by these triggers: a new row added, a deleted one taken away, an
# updated one taken away as it was and added as it is.
_COUNTED = "day, endpoint, worker, state, estimate_usd, cost_usd"  # the columns the totals depend on


class Sqlite:
    kind = "sqlite"
    begin = ("BEGIN IMMEDIATE",)

    @staticmethod
    def triggers(count) -> tuple:
        """The statements that (re)create the totals' triggers; count(row, sign): a statement adding a row."""
        return ("DROP TRIGGER IF EXISTS ledger_counted_in", "DROP TRIGGER IF EXISTS ledger_counted_out",
                "DROP TRIGGER IF EXISTS ledger_counted_again",
                f"CREATE TRIGGER ledger_counted_in AFTER INSERT ON ledger BEGIN {count('NEW', 1)}; END",
                f"CREATE TRIGGER ledger_counted_out AFTER DELETE ON ledger BEGIN {count('OLD', -1)}; END",
                f"CREATE TRIGGER ledger_counted_again AFTER UPDATE OF {_COUNTED} ON ledger"
                f" BEGIN {count('OLD', -1)}; {count('NEW', 1)}; END")

    def __init__(self, path: Path, timeout: float):
        self.path, self.timeout = path, timeout
        self.place = str(path)
        self.errors = (sqlite3.DatabaseError,)

    def connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)

    @staticmethod
    def sql(text: str) -> str:
        return text

    @staticmethod
    def columns(conn, table: str) -> set:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    @staticmethod
    def lost(exc: BaseException) -> bool:
        return False


class _Connection:
    """A psycopg connection that takes the journal's SQL as it is written (`?` placeholders)."""

    def __init__(self, conn, sql):
        self.conn, self.sql = conn, sql

    def execute(self, text: str, params=()):
        return self.conn.execute(self.sql(text), params or None)

    def executemany(self, text: str, rows):
        cursor = self.conn.cursor()
        cursor.executemany(self.sql(text), rows)
        return cursor

    def close(self):
        self.conn.close()


class Postgres:
    kind = "postgres"
    # One round trip (two statements in one simple query): the lock is taken before the step reads anything.
    begin = (f"BEGIN; SELECT pg_advisory_xact_lock({STEP_LOCK})",)

    @staticmethod
    def triggers(count) -> tuple:
        return ("CREATE OR REPLACE FUNCTION fal_audio_ledger_counted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF TG_OP <> 'INSERT' THEN {count('OLD', -1)}; END IF;"
                f" IF TG_OP <> 'DELETE' THEN {count('NEW', 1)}; END IF; RETURN NULL; END $$",
                "DROP TRIGGER IF EXISTS ledger_counted ON ledger",
                f"CREATE TRIGGER ledger_counted AFTER INSERT OR DELETE OR UPDATE OF {_COUNTED} ON ledger"
                " FOR EACH ROW EXECUTE PROCEDURE fal_audio_ledger_counted()")  # PROCEDURE: PostgreSQL 10 too

    def __init__(self, url: str, source: str = ENV_URL):
        """`source`: where the URL is written (FAL_AUDIO_DATABASE_URL, a credentials profile), for messages."""
        self.url, self.source = url, source
        self.place = scrub(url)
        self._psycopg = None

    @property
    def psycopg(self):
        if self._psycopg is None:
            try:
                import psycopg
            except ImportError:
                raise Unreachable(
                    f"The fal Audio database is set ({self.place}, {self.source}), but the PostgreSQL driver is "
                    'not installed: run `pip install "psycopg[binary]"` in ComfyUI\'s Python, or remove the URL to '
                    "keep the books in the user folder. Nothing was sent to fal.") from None
            self._psycopg = psycopg
        return self._psycopg

    @property
    def errors(self):
        return (self.psycopg.Error,)

    def connect(self):
        try:
            conn = self.psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                        application_name="fal-audio")
        except self.psycopg.Error as exc:
            raise self.unreachable(exc) from None
        return _Connection(conn, self.sql)

    def unreachable(self, exc: BaseException) -> "Unreachable":
        problem = str(exc).replace(urlsplit(self.url).password or "\0", "***").strip() or type(exc).__name__
        return Unreachable(f"The fal Audio database at {self.place} ({self.source}) cannot be reached: {problem}. "
                           "Start it or fix the URL. Nothing was sent to fal.")

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def sql(text: str) -> str:
        return (text.replace("?", "%s").replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                                                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                .replace(" REAL", " DOUBLE PRECISION"))

    @staticmethod
    def columns(conn, table: str) -> set:
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name=?"
                            " AND table_schema=current_schema()", (table,)).fetchall()
        return {row[0] for row in rows}

    def lost(self, exc: BaseException) -> bool:
        """The server or the connection to it is gone (the step may be tried again on a new one)."""
        return isinstance(exc, self.psycopg.OperationalError)


class JournalUnusable(FalAudioError):
    """The data folder or its journal cannot be written: said before anything is paid."""


class Unreachable(JournalUnusable):
    """The shared database cannot be reached (or its driver is missing): said before anything is paid."""


def open_store(path: Optional[Path], url: Optional[str], timeout: float, source: str = ENV_URL):
    return Postgres(url, source) if url else Sqlite(path, timeout)
