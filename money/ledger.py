"""What the spend ledger's rows mean: their states, today's spend, the daily limit, and the
texts the user reads (a refusal, the fal Spend report). The rows themselves are written by the
request journal alone (money/journal.py), in the same transaction as each step of a request:

  reserved  claimed and about to be uploaded and submitted: its estimate counts against today's
            limit from now on (checked and written in one transaction)
  accepted  fal returned a request id
  settled   fal completed it: paid (the estimate, refined with the returned duration for
            per-time prices), booked on the day fal completed it
  uncertain possibly billed: the submit may have reached fal but its answer was lost (a broken
            connection, a process that died mid-submit, a request fal did not know right after
            accepting it): counted at its estimate
  unpaid    never reached fal, or fal reports it failed or was cancelled: $0 (fal bills
            successful outputs only)
  reused    a kept result was returned instead of a new request: $0

Days are local dates. Spend of a day = settled costs + estimates of requests reserved, in
flight or possibly billed. Each row names the worker (ComfyUI machine) that wrote it: on a database
shared by several workers, the spend and the limit are the team's, and the report adds a line per
worker.
"""

import datetime
import math
import os
from typing import Dict, Optional

from ..core.errors import FalAudioError, InvalidInput
from .pricing import money

ENV_LIMIT = "FAL_AUDIO_DAILY_LIMIT_USD"
RESERVED, ACCEPTED, SETTLED, UNPAID, REUSED = "reserved", "accepted", "settled", "unpaid", "reused"
UNCERTAIN = "uncertain"
OPEN = (RESERVED, ACCEPTED)  # rows a later step of the request moves on
AT_ESTIMATE = (RESERVED, ACCEPTED, UNCERTAIN)  # rows counted at their estimate
REPORT_DAYS = 7

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, endpoint TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT,
    units REAL, unit TEXT, unit_price REAL, price_source TEXT, time_based INTEGER NOT NULL DEFAULT 0,
    round_up INTEGER NOT NULL DEFAULT 0, estimate_usd REAL, cost_usd REAL, detail TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, worker TEXT);
CREATE INDEX IF NOT EXISTS ledger_day ON ledger (day);
CREATE INDEX IF NOT EXISTS ledger_identity ON ledger (identity, state);
"""
# Spend of one day (parameter: the day).
SPENT = ("SELECT COALESCE(SUM(CASE WHEN state='settled' THEN cost_usd"
         " WHEN state IN ('reserved', 'accepted', 'uncertain') THEN estimate_usd ELSE 0 END), 0)"
         " FROM ledger WHERE day=?")


class SpendLimitReached(FalAudioError):
    """A run would take today's spend past the daily limit: refused before anything is sent."""


def today() -> str:
    return datetime.date.today().isoformat()


def first_day(days: int = REPORT_DAYS) -> str:
    return (datetime.date.today() - datetime.timedelta(days=days - 1)).isoformat()


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


def refusal(endpoint: str, spent: float, estimate: Optional[float], limit: float) -> SpendLimitReached:
    if estimate is None:
        return SpendLimitReached(
            f"{endpoint}: the price of this run is unknown (fal's pricing API did not give one and the pack's "
            f"price table has none), so the daily spend limit of {money(limit)} cannot be checked. Today's "
            f"recorded spend is {money(spent)}. Set daily_spend_limit_usd on the fal Client (or {ENV_LIMIT}) to 0 "
            "to run it without a limit. Nothing was sent to fal.")
    return SpendLimitReached(
        f"{endpoint}: this run is estimated at {money(estimate)}; with today's recorded spend of {money(spent)} "
        f"that would pass the daily spend limit of {money(limit)}. Raise daily_spend_limit_usd on the fal Client "
        f"(or {ENV_LIMIT}), or wait until tomorrow. Nothing was sent to fal.")


def possibly_billed(estimate: Optional[float]) -> str:
    """The sentence every message about a possibly billed request carries."""
    amount = "price unknown" if estimate is None else f"≈{money(estimate)}"
    return f"It is counted as possibly billed ({amount}) in the pack's spend and against today's spend limit."


def spend(rows: list) -> tuple:
    """(USD, rows at an unknown price, rows not finished yet, rows possibly billed) of ledger rows
    (day, endpoint, state, estimate_usd, cost_usd[, worker]): the one sum behind the report and the editor's panel."""
    total, unknown, flying, possibly = 0.0, 0, 0, 0
    for _, _, state, estimate, cost, *_ in rows:
        if state == SETTLED:
            if cost is None:
                unknown += 1
            total += cost or 0.0
        elif state in AT_ESTIMATE:
            flying += state in OPEN
            possibly += state == UNCERTAIN
            if estimate is None:
                unknown += 1
            total += estimate or 0.0
    return total, unknown, flying, possibly


def report(rows: list, limit: float = 0.0) -> tuple:
    """The fal Spend node's text and today's spend in USD, from the ledger rows of the report's
    days: (day, endpoint, state, estimate_usd, cost_usd[, worker]), oldest first."""
    day, first = today(), first_day()
    paid_states = (SETTLED, *AT_ESTIMATE)

    def paid(rows):
        return sum(1 for r in rows if r[2] in paid_states)

    def line(label, rows):
        usd, unknown, flying, possibly = spend(rows)
        count = paid(rows)
        text = f"{label}: {money(usd)} in {count} paid request{'s' if count != 1 else ''}"
        extras = []
        if flying:
            extras.append(f"{flying} not finished yet, counted at its estimate" if flying == 1
                          else f"{flying} not finished yet, counted at their estimates")
        if possibly:
            extras.append(f"{possibly} possibly billed, counted at "
                          + ("its estimate" if possibly == 1 else "their estimates"))
        if unknown:
            extras.append(f"{unknown} at an unknown price, not counted")
        return text + (f" ({'; '.join(extras)})" if extras else "")

    todays = [r for r in rows if r[0] == day]
    today_usd = spend(todays)[0]
    lines = ["fal spend (the pack's estimates; fal's dashboard has the exact bill: https://fal.ai/dashboard/usage)",
             line(f"Today ({day})", todays)]
    if limit:
        lines.append(f"Daily limit: {money(limit)}, {money(max(0.0, limit - today_usd))} left today")
    lines.append(line(f"Last {REPORT_DAYS} days (since {first})", rows))
    per_model: Dict[str, list] = {}
    for row in rows:
        per_model.setdefault(row[1], []).append(row)
    if per_model:
        lines.append(f"Per model, last {REPORT_DAYS} days:")
        for endpoint, group in sorted(per_model.items(), key=lambda item: -spend(item[1])[0]):
            usd, unknown, _, _ = spend(group)
            text = f"  {endpoint}: {money(usd)} in {paid(group)} paid"
            free = sum(1 for r in group if r[2] in (UNPAID, REUSED))
            if free:
                text += f", {free} free (reused or failed/cancelled)"
            if unknown:
                text += f", {unknown} at an unknown price"
            lines.append(text)
    per_worker: Dict[str, list] = {}
    for row in rows:
        if len(row) > 5 and row[5]:  # rows written before workers were named belong to none
            per_worker.setdefault(row[5], []).append(row)
    if len(per_worker) > 1:
        lines.append(f"Per worker, last {REPORT_DAYS} days:")
        for name, group in sorted(per_worker.items(), key=lambda item: -spend(item[1])[0]):
            usd = spend(group)[0]
            lines.append(f"  {name}: {money(usd)} in {paid(group)} paid, today "
                         f"{money(spend([r for r in group if r[0] == day])[0])}")
    possibly = [r for r in rows if r[2] == UNCERTAIN]
    if possibly:
        lines.append(f"Possibly billed, last {REPORT_DAYS} days: {len(possibly)} request"
                     f"{'s' if len(possibly) != 1 else ''} whose submit may have reached fal without its answer "
                     "being recorded, counted at the estimate (check the requests list at https://fal.ai/dashboard)")
    free_rows = [r for r in rows if r[2] in (UNPAID, REUSED)]
    if free_rows:
        reused = sum(1 for r in free_rows if r[2] == REUSED)
        lines.append(f"Free, last {REPORT_DAYS} days: {reused} kept results reused, {len(free_rows) - reused} "
                     "requests that failed or were cancelled ($0: fal bills successful outputs only)")
    return "\n".join(lines), round(today_usd, 6)
