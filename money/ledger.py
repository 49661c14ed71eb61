"""The spend ledger: what each paid request was estimated to cost and what it settled at.

It lives in the journal's SQLite file (its own table), and follows the journal's story
of a request:

  reserve   the job claimed the request and is about to upload and submit: its estimate
            counts against today's limit from now on (checked and written in one
            transaction, so two nodes at once cannot both slip under the limit)
  accepted  fal returned a request id (the journal hooks this)
  settled   the request completed: paid; per-time units settle with the returned duration
  unpaid    the submit never reached fal, or fal reports the request failed or cancelled:
            $0 (fal bills successful outputs only)
  reused    a kept result was returned instead of a new request: $0

Days are local dates. Spend of a day = settled costs + estimates of requests still
reserved or in flight.
"""

import datetime
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from ..core import comfy, secrets
from ..core.errors import FalAudioError, InvalidInput
from ..core.log import get_logger
from .pricing import Charge, money
from .pricing import units as price_units
from .wal import synced, use_wal

log = get_logger("ledger")

ENV_LIMIT = "FAL_AUDIO_DAILY_LIMIT_USD"
RESERVED, ACCEPTED, SETTLED, UNPAID, REUSED = "reserved", "accepted", "settled", "unpaid", "reused"
OPEN = (RESERVED, ACCEPTED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, endpoint TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT,
    units REAL, unit TEXT, unit_price REAL, price_source TEXT, time_based INTEGER NOT NULL DEFAULT 0,
    round_up INTEGER NOT NULL DEFAULT 0, estimate_usd REAL, cost_usd REAL, detail TEXT,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_day ON ledger (day);
CREATE INDEX IF NOT EXISTS ledger_identity ON ledger (identity, state);
"""


class SpendLimitReached(FalAudioError):
    """A run would take today's spend past the daily limit: refused before anything is sent."""


def today() -> str:
    return datetime.date.today().isoformat()


def limit_from_env() -> float:
    """The daily limit for nodes without a fal Client: $FAL_AUDIO_DAILY_LIMIT_USD, 0 = none."""
    text = os.environ.get(ENV_LIMIT, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"The environment variable {ENV_LIMIT} must be a number of US dollars "
                           f"(0 = no limit), not {text[:20]!r}. Nothing was sent to fal.") from None
    return check_limit(value, f"the environment variable {ENV_LIMIT}")


def check_limit(value: float, field: str) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value < 0:
        raise InvalidInput(f"{field} must be 0 (no limit) or a positive number of US dollars, not {value!r}. "
                           "Nothing was sent to fal.")
    return float(value)


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        # This process's requests as the ledger last saw them: identity -> (state, estimate, cost, request_id).
        # The final status of a run reads it (no database access in an error path).
        self._recent: Dict[str, tuple] = {}
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                use_wal(conn)
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return synced(conn, follows=True)

    def _note(self, identity: str, state: str, **fields) -> None:
        with self._lock:
            old = self._recent.get(identity, (None, None, None, None))
            self._recent[identity] = (state, fields.get("estimate", old[1]), fields.get("cost", old[2]),
                                      fields.get("request_id", old[3]))

    def _moves(self, identity: str, states) -> bool:
        with self._lock:
            return self._recent.get(identity, (None,))[0] in states

    # -- spend -------------------------------------------------------------------------------

    def _spent(self, conn, day: str) -> float:
        row = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN state=? THEN cost_usd WHEN state IN (?, ?) THEN estimate_usd ELSE 0 END), 0)"
            " FROM ledger WHERE day=?", (SETTLED, RESERVED, ACCEPTED, day)).fetchone()
        return float(row[0] or 0.0)

    def spent_today(self) -> float:
        return self._spent(self._connect(), today())

    @staticmethod
    def _refusal(endpoint: str, spent: float, estimate: Optional[float], limit: float) -> str:
        if estimate is None:
            return (f"{endpoint}: the price of this run is unknown (fal's pricing API did not give one and the "
                    f"pack's price table has none), so the daily spend limit of {money(limit)} cannot be "
                    f"checked. Today's recorded spend is {money(spent)}. Set daily_spend_limit_usd on the fal "
                    f"Client (or {ENV_LIMIT}) to 0 to run it without a limit. Nothing was sent to fal.")
        return (f"{endpoint}: this run is estimated at {money(estimate)}; with today's recorded spend of "
                f"{money(spent)} that would pass the daily spend limit of {money(limit)}. Raise "
                f"daily_spend_limit_usd on the fal Client (or {ENV_LIMIT}), or wait until tomorrow. "
                "Nothing was sent to fal.")

    def check(self, endpoint: str, estimate: Optional[float], limit: float) -> None:
        """Refuse a whole run up front if it cannot fit under the limit (nothing is written)."""
        if not limit:
            return
        spent = self.spent_today()
        if estimate is None or spent + estimate > limit + 1e-9:
            raise SpendLimitReached(self._refusal(endpoint, spent, estimate, limit))

    def reserve(self, identity: str, charge: Optional[Charge], endpoint: str, limit: float) -> None:
        """Record a request about to be submitted; refuse it if it would pass the limit.

        Check and write are one IMMEDIATE transaction: of two nodes racing for the last
        dollars, the second sees the first one's reservation."""
        estimate = charge.usd if charge is not None else None
        price = charge.price if charge is not None else None
        conn = self._connect()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A reservation left by a submit that never happened (a crash) is replaced by this one.
            conn.execute("DELETE FROM ledger WHERE identity=? AND state=?", (identity, RESERVED))
            day = today()
            if limit:
                spent = self._spent(conn, day)
                if estimate is None or spent + estimate > limit + 1e-9:
                    raise SpendLimitReached(self._refusal(endpoint, spent, estimate, limit))
            conn.execute(
                "INSERT INTO ledger (identity, endpoint, day, state, units, unit, unit_price, price_source, time_based,"
                " round_up, estimate_usd, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (identity, endpoint, day, RESERVED, charge.units if charge else None, price.unit if price else None,
                 price.unit_price if price else None, price.source if price else "unknown",
                 int(bool(charge and charge.time_based)), int(bool(price and price.round_up)), estimate, now, now))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._note(identity, RESERVED, estimate=estimate, cost=None, request_id=None)

    def reused(self, identity: str, endpoint: str, request_id: Optional[str]) -> None:
        now = time.time()
        self._connect().execute(
            "INSERT INTO ledger (identity, endpoint, day, state, request_id, estimate_usd, cost_usd, detail, created,"
            " updated) VALUES (?, ?, ?, ?, ?, 0, 0, 'kept result reused', ?, ?)",
            (identity, endpoint, today(), REUSED, request_id, now, now))
        self._note(identity, REUSED, estimate=0.0, cost=0.0, request_id=request_id)

    # -- transitions the journal reports ---------------------------------------------------------

    def accepted(self, identity: str, request_id: str) -> None:
        self._connect().execute(
            "UPDATE ledger SET state=?, request_id=?, updated=? WHERE identity=? AND state=?",
            (ACCEPTED, request_id, time.time(), identity, RESERVED))
        if self._moves(identity, (RESERVED,)):
            self._note(identity, ACCEPTED, request_id=request_id)

    def completed(self, identity: str) -> None:
        """fal finished the request: it is paid for, at the estimate until settle() refines it."""
        self._connect().execute(
            "UPDATE ledger SET state=?, cost_usd=estimate_usd, updated=? WHERE identity=? AND state IN (?, ?)",
            (SETTLED, time.time(), identity, *OPEN))
        if self._moves(identity, OPEN):
            self._note(identity, SETTLED, cost=self._recent[identity][1])

    def unpaid(self, identity: str, detail: str) -> None:
        """The submit never reached fal, or fal failed/cancelled the request: nothing is billed."""
        self._connect().execute(
            "UPDATE ledger SET state=?, cost_usd=0, detail=?, updated=? WHERE identity=? AND state IN (?, ?)",
            (UNPAID, secrets.redact(detail)[:500], time.time(), identity, *OPEN))
        if self._moves(identity, OPEN):
            self._note(identity, UNPAID, cost=0.0)

    def settle(self, identity: str, charge: Optional[Charge], returned_seconds: Optional[float]) -> Optional[float]:
        """Refine the settled cost of a completed request with what fal returned; returns its cost."""
        conn = self._connect()
        row = conn.execute(
            "SELECT id, estimate_usd, cost_usd FROM ledger WHERE identity=? AND state=? ORDER BY id DESC LIMIT 1",
            (identity, SETTLED)).fetchone()
        if row is None:
            return charge.usd if charge is not None else None
        cost = charge.settled_usd(returned_seconds) if charge is not None else row[2]
        units = None
        if charge is not None and charge.time_based and returned_seconds is not None:
            units = price_units(charge.price, {"seconds": returned_seconds})
        conn.execute("UPDATE ledger SET cost_usd=?, units=COALESCE(?, units), updated=? WHERE id=?",
                     (cost, units, time.time(), row[0]))
        self._note(identity, SETTLED, cost=cost)
        return cost

    def state_of(self, identity: str) -> Optional[tuple]:
        """(state, estimate_usd, cost_usd, request_id) of this request as this process last saw it, from
        memory (None if this process has not handled it)."""
        with self._lock:
            return self._recent.get(identity)

    # -- report ------------------------------------------------------------------------------------

    def summary(self, days: int = 7) -> Dict[str, object]:
        conn = self._connect()
        first = (datetime.date.today() - datetime.timedelta(days=days - 1)).isoformat()
        rows = conn.execute(
            "SELECT day, endpoint, state, estimate_usd, cost_usd FROM ledger WHERE day>=? ORDER BY id", (first,)
        ).fetchall()
        return {"first_day": first, "today": today(), "rows": rows}


_ledgers: dict = {}


def book(path: Optional[Path] = None) -> Ledger:
    """The ledger inside the journal file (the journal's path, else the data folder's)."""
    path = Path(path) if path else comfy.data_directory() / "journal.sqlite3"
    if path not in _ledgers:
        _ledgers[path] = Ledger(path)
    return _ledgers[path]


def report(limit: float = 0.0) -> tuple:
    """The fal Spend node's text and today's spend in USD."""
    data = book().summary(7)
    day = data["today"]

    def spend(rows):
        total, unknown, flying = 0.0, 0, 0
        for _, _, state, estimate, cost in rows:
            if state == SETTLED:
                if cost is None:
                    unknown += 1
                total += cost or 0.0
            elif state in OPEN:
                flying += 1
                if estimate is None:
                    unknown += 1
                total += estimate or 0.0
        return total, unknown, flying

    paid_states = (SETTLED, RESERVED, ACCEPTED)
    todays = [r for r in data["rows"] if r[0] == day]
    today_usd, today_unknown, today_flying = spend(todays)
    week_usd, week_unknown, _ = spend(data["rows"])

    def line(label, rows, usd, unknown, flying=0):
        paid = sum(1 for r in rows if r[2] in paid_states)
        text = f"{label}: {money(usd)} in {paid} paid request{'s' if paid != 1 else ''}"
        extras = []
        if flying:
            extras.append(f"{flying} not finished yet, counted at its estimate" if flying == 1
                          else f"{flying} not finished yet, counted at their estimates")
        if unknown:
            extras.append(f"{unknown} at an unknown price, not counted")
        return text + (f" ({'; '.join(extras)})" if extras else "")

    lines = ["fal spend (the pack's estimates; fal's dashboard has the exact bill: https://fal.ai/dashboard/usage)"]
    lines.append(line(f"Today ({day})", todays, today_usd, today_unknown, today_flying))
    if limit:
        lines.append(f"Daily limit: {money(limit)}, {money(max(0.0, limit - today_usd))} left today")
    lines.append(line(f"Last 7 days (since {data['first_day']})", data["rows"], week_usd, week_unknown))
    per_model: Dict[str, list] = {}
    for row in data["rows"]:
        per_model.setdefault(row[1], []).append(row)
    if per_model:
        lines.append("Per model, last 7 days:")
        for endpoint, rows in sorted(per_model.items(), key=lambda item: -spend(item[1])[0]):
            usd, unknown, _ = spend(rows)
            paid = sum(1 for r in rows if r[2] in paid_states)
            free = sum(1 for r in rows if r[2] in (UNPAID, REUSED))
            text = f"  {endpoint}: {money(usd)} in {paid} paid"
            if free:
                text += f", {free} free (reused or failed/cancelled)"
            if unknown:
                text += f", {unknown} at an unknown price"
            lines.append(text)
    free_rows = [r for r in data["rows"] if r[2] in (UNPAID, REUSED)]
    if free_rows:
        reused = sum(1 for r in free_rows if r[2] == REUSED)
        lines.append(f"Free, last 7 days: {reused} kept results reused, {len(free_rows) - reused} requests "
                     "that failed or were cancelled ($0: fal bills successful outputs only)")
    return "\n".join(lines), round(today_usd, 6)
