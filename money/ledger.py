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

The daily limit and the report read running totals per day, model, worker and state
(`ledger_totals`: requests, the spend counted in whole nano-dollars, rows at an unknown price), never
the rows, so they cost the same with a hundred rows or a million. Triggers on `ledger` keep them
(money/store.py), in the transaction of the row they count: an insert, a move to another state or
day, a refined cost, a deletion. Integer sums are exact, so the totals equal the sum of the rows.
"""

import datetime
import math
import os
from typing import Dict, Iterable, NamedTuple, Optional

from ..core.errors import FalAudioError, InvalidInput
from .pricing import money

ENV_LIMIT = "FAL_AUDIO_DAILY_LIMIT_USD"
RESERVED, ACCEPTED, SETTLED, UNPAID, REUSED = "reserved", "accepted", "settled", "unpaid", "reused"
UNCERTAIN = "uncertain"
OPEN = (RESERVED, ACCEPTED)  # rows a later step of the request moves on
AT_ESTIMATE = (RESERVED, ACCEPTED, UNCERTAIN)  # rows counted at their estimate
PAID = (SETTLED, *AT_ESTIMATE)
REPORT_DAYS = 7
NANO = 10 ** 9  # the totals count whole nano-dollars

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, endpoint TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT,
    units REAL, unit TEXT, unit_price REAL, price_source TEXT, time_based INTEGER NOT NULL DEFAULT 0,
    round_up INTEGER NOT NULL DEFAULT 0, estimate_usd REAL, cost_usd REAL, detail TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, worker TEXT);
CREATE INDEX IF NOT EXISTS ledger_day ON ledger (day);
CREATE INDEX IF NOT EXISTS ledger_identity ON ledger (identity, state);
CREATE TABLE IF NOT EXISTS ledger_totals (
    day TEXT NOT NULL, endpoint TEXT NOT NULL, worker TEXT NOT NULL, state TEXT NOT NULL,
    requests BIGINT NOT NULL, nano_usd BIGINT NOT NULL, unknown BIGINT NOT NULL,
    PRIMARY KEY (day, endpoint, worker, state));
"""
# Spend of one day in nano-dollars (parameter: the day).
SPENT = "SELECT COALESCE(SUM(nano_usd), 0) FROM ledger_totals WHERE day=?"
# The totals of the days from one on (parameter: the first day), as report() reads them.
TOTALS = ("SELECT day, endpoint, worker, state, requests, nano_usd, unknown FROM ledger_totals"
          " WHERE day>=? AND requests>0")


def _counted_sql(row: str) -> tuple:
    """SQL of what the ledger row `row` (a table or NEW/OLD) counts: (nano-dollars, 1 if at an unknown price)."""
    usd = (f"CASE WHEN {row}.state='{SETTLED}' THEN {row}.cost_usd"
           f" WHEN {row}.state IN {AT_ESTIMATE} THEN {row}.estimate_usd END")
    return (f"COALESCE(CAST(ROUND(({usd}) * {NANO}) AS BIGINT), 0)",
            f"CASE WHEN {row}.state IN {PAID} AND ({usd}) IS NULL THEN 1 ELSE 0 END")


def count_sql(row: str, sign: int) -> str:
    """The statement (for a trigger) that adds the ledger row `row` (NEW or OLD) to its totals (sign 1) or
    takes it away (-1)."""
    nano, unknown = _counted_sql(row)
    return ("INSERT INTO ledger_totals (day, endpoint, worker, state, requests, nano_usd, unknown) VALUES"
            f" ({row}.day, {row}.endpoint, COALESCE({row}.worker, ''), {row}.state, {sign}, {sign} * {nano},"
            f" {sign} * {unknown}) ON CONFLICT (day, endpoint, worker, state) DO UPDATE SET"
            " requests=ledger_totals.requests+excluded.requests, nano_usd=ledger_totals.nano_usd+excluded.nano_usd,"
            " unknown=ledger_totals.unknown+excluded.unknown")


# The totals counted again from every row (a schema upgrade: once).
RECOUNT = ("INSERT INTO ledger_totals (day, endpoint, worker, state, requests, nano_usd, unknown)"
           " SELECT day, endpoint, COALESCE(worker, ''), state, COUNT(*), SUM({0}), SUM({1}) FROM ledger"
           " GROUP BY day, endpoint, COALESCE(worker, ''), state").format(*_counted_sql("ledger"))


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


def nano(usd: float) -> int:
    """`usd` in whole nano-dollars, rounded as SQLite's ROUND() does in the totals' triggers (PostgreSQL's
    rounds an exact half to even: a nano-dollar apart at most, on a value no price gives)."""
    scaled = usd * NANO
    return int(scaled + (-0.5 if scaled < 0 else 0.5))


class Tally(NamedTuple):
    usd: float
    paid: int  # requests settled, in flight or possibly billed
    unknown: int  # of those, at an unknown price (not counted)
    flying: int  # reserved or accepted: not finished yet
    possibly: int  # possibly billed
    reused: int  # kept results returned ($0)
    unpaid: int  # never sent, failed or cancelled ($0)


def tally(groups: Iterable) -> Tally:
    """The sums of totals (day, endpoint, worker, state, requests, nano_usd, unknown)."""
    nanos = unknown = 0
    counts = dict.fromkeys((*PAID, UNPAID, REUSED), 0)
    for _, _, _, state, requests, nano_usd, unknown_here in groups:
        nanos += int(nano_usd)
        unknown += int(unknown_here)
        counts[state] = counts.get(state, 0) + int(requests)
    return Tally(nanos / NANO, sum(counts[state] for state in PAID), unknown, counts[RESERVED] + counts[ACCEPTED],
                 counts[UNCERTAIN], counts[REUSED], counts[UNPAID])


def report(groups: list, limit: float = 0.0) -> tuple:
    """The fal Spend node's text and today's spend in USD, from the totals of the report's days: (day,
    endpoint, worker, state, requests, nano_usd, unknown) with requests > 0."""
    day, first = today(), first_day()

    def line(label, groups):
        total = tally(groups)
        text = f"{label}: {money(total.usd)} in {total.paid} paid request{'s' if total.paid != 1 else ''}"
        extras = []
        if total.flying:
            extras.append(f"{total.flying} not finished yet, counted at its estimate" if total.flying == 1
                          else f"{total.flying} not finished yet, counted at their estimates")
        if total.possibly:
            extras.append(f"{total.possibly} possibly billed, counted at "
                          + ("its estimate" if total.possibly == 1 else "their estimates"))
        if total.unknown:
            extras.append(f"{total.unknown} at an unknown price, not counted")
        return text + (f" ({'; '.join(extras)})" if extras else "")

    def by(column):  # name -> (its totals, their tally), the largest spend first (then by name)
        named: Dict[str, list] = {}
        for row in groups:
            if row[column]:  # rows written before workers were named belong to none
                named.setdefault(row[column], []).append(row)
        return sorted(((name, some, tally(some)) for name, some in named.items()), key=lambda x: (-x[2].usd, x[0]))

    todays = [g for g in groups if g[0] == day]
    today_usd = tally(todays).usd
    lines = ["fal spend (the pack's estimates; fal's dashboard has the exact bill: https://fal.ai/dashboard/usage)",
             line(f"Today ({day})", todays)]
    if limit:
        lines.append(f"Daily limit: {money(limit)}, {money(max(0.0, limit - today_usd))} left today")
    lines.append(line(f"Last {REPORT_DAYS} days (since {first})", groups))
    per_model = by(1)
    if per_model:
        lines.append(f"Per model, last {REPORT_DAYS} days:")
        for endpoint, _, total in per_model:
            text = f"  {endpoint}: {money(total.usd)} in {total.paid} paid"
            if total.reused + total.unpaid:
                text += f", {total.reused + total.unpaid} free (reused or failed/cancelled)"
            if total.unknown:
                text += f", {total.unknown} at an unknown price"
            lines.append(text)
    per_worker = by(2)
    if len(per_worker) > 1:
        lines.append(f"Per worker, last {REPORT_DAYS} days:")
        for name, some, total in per_worker:
            lines.append(f"  {name}: {money(total.usd)} in {total.paid} paid, today "
                         f"{money(tally(g for g in some if g[0] == day).usd)}")
    total = tally(groups)
    if total.possibly:
        lines.append(f"Possibly billed, last {REPORT_DAYS} days: {total.possibly} request"
                     f"{'s' if total.possibly != 1 else ''} whose submit may have reached fal without its answer "
                     "being recorded, counted at the estimate (check the requests list at https://fal.ai/dashboard)")
    if total.reused + total.unpaid:
        lines.append(f"Free, last {REPORT_DAYS} days: {total.reused} kept results reused, {total.unpaid} "
                     "requests that failed or were cancelled ($0: fal bills successful outputs only)")
    return "\n".join(lines), round(today_usd, 6)
