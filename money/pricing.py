"""What a fal request costs: prices from fal's Platform API, cached, with the pack's own
dated table as the fallback, and estimates computed from a request's cost facts.

Prices: GET https://api.fal.ai/v1/models/pricing?endpoint_id=a,b (1-50 ids per call,
the user's key) answers {"prices": [{"endpoint_id", "unit_price", "unit", "currency"}],
"next_cursor", "has_more"}. Answers are cached for 24 h in the pack's data folder (at most
MAX_CACHED endpoints). Ids the table does not list (an any-endpoint node's, whatever a graph
names; jobs/spend.py lets only fal's endpoint-id shape through) are asked for at most
NEW_IDS_PER_MINUTE a minute. When
the API is unreachable, slow (a lookup never waits more than LOOKUP_BUDGET), refuses the
key, answers garbage or does not list an endpoint, the row of data/prices.json is used
and a log line says why. Every Price says where it came from.

Estimates: a node's billing() gives seconds and/or characters per request; the price's
unit turns them into units ("second", "minute", "10 seconds", "1000 characters",
"request", "audio", ...), and units x unit price is the estimate of one request.
"""

import asyncio
import collections
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

from ..core import comfy, secrets
from ..core.log import get_logger
from ..core.tls import ssl_context

log = get_logger("pricing")

PRICING_URL = "https://api.fal.ai/v1/models/pricing"
TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "prices.json"
CACHE_NAME = "prices-cache.json"
CACHE_SECONDS = 24 * 3600
# A price lookup never delays a run by more than this.
LOOKUP_BUDGET = 2.0
# After the API failed (down, slow, key refused), runs use the table for this long before asking again.
RETRY_AFTER = 600.0
BATCH = 50  # ids per call, fal's limit
# Endpoint ids the pack's table does not list (an any-endpoint node's, a graph's) are asked from fal at most this
# many per minute: a flood of made-up ids never becomes a flood of calls to fal's pricing API (the rest are priced
# from the table, i.e. unknown, until the next minute).
NEW_IDS_PER_MINUTE = 100
# Entries the price cache keeps at most (the table's endpoints first, then the most recently fetched).
MAX_CACHED = 512

# Units billed once per request (one generated clip, song, video, ...).
PER_REQUEST = {"request", "audio", "generation", "video", "clip", "song", "output", "run", "unit", "image", "file"}
TIME_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


@dataclass(frozen=True)
class Price:
    endpoint: str
    unit_price: Optional[float]  # None: no price known
    unit: Optional[str]
    source: str  # "fal API", "fal API (cached)", "pack table (seen ...)", "unknown"
    round_up: bool = False

    @property
    def known(self) -> bool:
        return self.unit_price is not None and parse_unit(self.unit) is not None

    @property
    def per(self) -> str:
        """The unit after a slash: fal's price list says "minutes" or "audios", a price reads $0.10/minute."""
        unit = (self.unit or "").strip()
        return unit[:-1] if unit[:1].isalpha() and unit.endswith("s") else unit

    def describe(self) -> str:
        if not self.known:
            return "price unknown"
        return f"{money(self.unit_price)}/{self.per}"


def money(usd: Optional[float]) -> str:
    """$0.10, $0.0002, $0.024, $12.35: two significant digits below $1, cents above."""
    if usd is None:
        return "$?"
    if usd == 0:
        return "$0"
    if abs(usd) >= 1:
        return f"${usd:,.2f}"
    decimals = min(6, max(2, 1 - math.floor(math.log10(abs(usd)))))
    text = f"{usd:.{decimals}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"${whole}.{fraction}"


def parse_unit(unit: Optional[str]):
    """("second", 10.0) for "10 seconds"; ("request", 1.0) for "audios"; None if not understood."""
    if not isinstance(unit, str):
        return None
    text = unit.strip().lower()
    match = re.fullmatch(r"(?:per\s+)?(\d+(?:\.\d+)?)?\s*([a-z][a-z ]*?)s?", text)
    if not match:
        return None
    count = float(match.group(1)) if match.group(1) else 1.0
    base = match.group(2).strip()
    base = {"sec": "second", "min": "minute", "char": "character", "1k character": "character"}.get(base, base)
    if count <= 0:
        return None
    if base in TIME_UNITS or base == "character" or base in PER_REQUEST:
        return ("request" if base in PER_REQUEST else base), count
    return None  # "compute second", "megapixel", ...: not something a request states up front


def units(price: Price, bill: dict) -> Optional[float]:
    """How many of the price's units one request with these cost facts is billed."""
    parsed = parse_unit(price.unit)
    if parsed is None:
        return None
    base, count = parsed
    if base == "request":
        return 1.0
    if base == "character":
        amount = bill.get("characters")
    else:
        seconds = bill.get("seconds")
        amount = None if seconds is None else seconds / TIME_UNITS[base]
    if amount is None:
        return None
    amount = amount / count
    return float(math.ceil(amount - 1e-9)) if price.round_up else float(amount)


@dataclass
class Charge:
    """The estimate of one request: what the ledger records when fal accepts it."""

    endpoint: str
    price: Price
    units: Optional[float]
    usd: Optional[float]
    bill: Optional[dict] = None  # the cost facts it was computed from (billing())

    @property
    def time_based(self) -> bool:
        parsed = parse_unit(self.price.unit)
        return parsed is not None and parsed[0] in TIME_UNITS

    def settled_usd(self, returned_seconds: Optional[float]) -> Optional[float]:
        """Per-time units are settled with the duration fal returned; the rest keep the estimate."""
        if self.time_based and returned_seconds is not None and self.price.unit_price is not None:
            settled = units(self.price, {"seconds": returned_seconds})
            if settled is not None:
                return settled * self.price.unit_price
        return self.usd


def returned_seconds(audio) -> Optional[float]:
    """The length of a returned AUDIO (what per-second prices settle with), None if there is none."""
    try:
        return audio["waveform"].shape[-1] / float(audio["sample_rate"])
    except (TypeError, KeyError, AttributeError, IndexError, ZeroDivisionError):
        return None


def charge(price: Price, bill: dict) -> Charge:
    amount = units(price, bill) if price.known else None
    usd = None if amount is None else amount * price.unit_price
    return Charge(price.endpoint, price, amount, usd, dict(bill))


# -- the shipped table ---------------------------------------------------------------------

_table: Optional[dict] = None


def table() -> dict:
    global _table
    if _table is None:
        try:
            _table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["prices"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("the pack's price table %s could not be read (%s)", TABLE_PATH, type(exc).__name__)
            _table = {}
        # A row of the table with no price found does not hide the price fal's pricing API gave the catalog.
        _table = {**_catalog_prices(), **{e: row for e, row in _table.items()
                                          if not isinstance(row, dict) or row.get("unit_price") is not None}}
    return _table


def _catalog_prices() -> dict:
    """The prices data/catalog.json holds (fal's pricing API when it was built) for endpoints the table lacks."""
    try:
        endpoints = json.loads(TABLE_PATH.with_name("catalog.json").read_text(encoding="utf-8"))["endpoints"]
    except (OSError, ValueError, KeyError):
        return {}
    return {e: s["price"] for e, s in endpoints.items() if (s.get("price") or {}).get("unit_price") is not None}


def table_price(endpoint: str) -> Price:
    row = table().get(endpoint)
    if not isinstance(row, dict) or row.get("unit_price") is None:
        return Price(endpoint, None, None, "unknown (not in fal's pricing API answer nor the pack's table)")
    seen = str(row.get("seen") or "undated").split(" ")[0]
    return Price(endpoint, float(row["unit_price"]), row.get("unit"), f"pack table (seen {seen})",
                 bool(row.get("round_up")))


# -- fal's pricing API and its cache -------------------------------------------------------

_api_down_until = 0.0
_new_ids_asked: collections.deque = collections.deque()  # (monotonic time, how many new ids were asked)


def _cache_path() -> Path:
    return comfy.data_directory() / CACHE_NAME


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_path()
    if len(cache) > MAX_CACHED:
        known = table()
        kept = sorted(cache, key=lambda e: (e in known, _fetched(cache[e])), reverse=True)[:MAX_CACHED]
        cache = {endpoint: cache[endpoint] for endpoint in kept}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("could not write the price cache %s (%s)", path, type(exc).__name__)


def _valid_row(row) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("endpoint_id"), str):
        return False
    price = row.get("unit_price")
    if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
        return False
    return parse_unit(row.get("unit")) is not None and str(row.get("currency", "USD")).upper() == "USD"


async def _fetch(key: str, endpoints: list) -> Dict[str, dict]:
    """Ask fal for these endpoints' prices: {endpoint: row}. Raises on any failure."""
    import httpx

    found: Dict[str, dict] = {}
    async with httpx.AsyncClient(headers={"Authorization": f"Key {key}"}, verify=ssl_context(),
                                 timeout=httpx.Timeout(LOOKUP_BUDGET, connect=LOOKUP_BUDGET)) as client:
        for start in range(0, len(endpoints), BATCH):
            params = {"endpoint_id": ",".join(endpoints[start:start + BATCH])}
            for _ in range(20):  # pages of one batch; a server that never ends is garbage
                response = await client.get(PRICING_URL, params=params)
                if response.status_code != 200:
                    raise PricingUnavailable(f"HTTP {response.status_code}")
                try:
                    body = response.json()
                except ValueError:
                    raise PricingUnavailable("an answer that is not JSON") from None
                if not isinstance(body, dict) or not isinstance(body.get("prices"), list):
                    raise PricingUnavailable("an answer without a 'prices' list")
                for row in body["prices"]:
                    if _valid_row(row):
                        found[row["endpoint_id"]] = row
                    else:
                        log.warning("fal's pricing API sent a price row the pack cannot use: %.200s",
                                    secrets.redact(json.dumps(row, default=str)))
                cursor = body.get("next_cursor")
                if not body.get("has_more") or not isinstance(cursor, str) or not cursor:
                    break
                params = {**params, "cursor": cursor}
    return found


class PricingUnavailable(Exception):
    pass


async def lookup(endpoints: Iterable[str], key: Optional[str]) -> Dict[str, Price]:
    """Prices for these endpoints: fal's API (cached 24 h), else the pack's table.

    Never raises, never waits more than about LOOKUP_BUDGET seconds."""
    global _api_down_until
    wanted = sorted(set(endpoints))
    now = time.time()
    cache = _read_cache()
    prices: Dict[str, Price] = {}
    stale = []
    for endpoint in wanted:
        row = cache.get(endpoint)
        if isinstance(row, dict) and 0 <= now - _fetched(row) < CACHE_SECONDS:
            if row.get("missing"):
                prices[endpoint] = table_price(endpoint)
            elif _valid_row({"endpoint_id": endpoint, **row}):
                prices[endpoint] = _api_price(endpoint, row, "fal API (cached)")
            else:
                stale.append(endpoint)
        else:
            stale.append(endpoint)
    asking = _within_new_id_budget(stale) if stale and key and time.monotonic() >= _api_down_until else []
    if asking:
        try:
            fetched = await asyncio.wait_for(_fetch(key, asking), LOOKUP_BUDGET)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the table
            _api_down_until = time.monotonic() + RETRY_AFTER
            why = ("no answer within %.0f s" % LOOKUP_BUDGET if isinstance(exc, asyncio.TimeoutError)
                   else str(exc) if isinstance(exc, PricingUnavailable) else type(exc).__name__)
            log.warning("fal's pricing API is not usable (%s); using the pack's price table for %s",
                        secrets.redact(why), ", ".join(asking))
        else:
            for endpoint in asking:
                row = fetched.get(endpoint)
                if row is None:
                    log.info("fal's pricing API does not list %s; using the pack's price table", endpoint)
                    cache[endpoint] = {"missing": True, "fetched": now}
                else:
                    cache[endpoint] = {"unit_price": float(row["unit_price"]), "unit": row["unit"],
                                       "currency": str(row.get("currency", "USD")).upper(), "fetched": now}
                    prices[endpoint] = _api_price(endpoint, cache[endpoint], "fal API")
            _write_cache(cache)
    for endpoint in wanted:
        if endpoint not in prices:
            prices[endpoint] = table_price(endpoint)
    return prices


def _fetched(row) -> float:
    try:
        fetched = float(row.get("fetched", 0))
    except (TypeError, ValueError, AttributeError):
        return 0.0
    return fetched if math.isfinite(fetched) else 0.0


def _within_new_id_budget(stale: list) -> list:
    """The stale ids to ask fal for now: all the table's, and the others within NEW_IDS_PER_MINUTE."""
    clock = time.monotonic()
    while _new_ids_asked and clock - _new_ids_asked[0][0] >= 60.0:
        _new_ids_asked.popleft()
    left = NEW_IDS_PER_MINUTE - sum(count for _, count in _new_ids_asked)
    known = table()
    new = [endpoint for endpoint in stale if endpoint not in known]
    asked = new[:max(0, left)]
    if asked:
        _new_ids_asked.append((clock, len(asked)))
    if len(asked) < len(new):
        log.info("%d endpoint ids unknown to the pack are priced as unknown for now: fal's pricing API is asked for "
                 "at most %d new ids a minute", len(new) - len(asked), NEW_IDS_PER_MINUTE)
    return [endpoint for endpoint in stale if endpoint in known] + asked


def _api_price(endpoint: str, row: dict, source: str) -> Price:
    # fal's answer has no rounding rule; the table knows where fal bills started units.
    rounding = bool((table().get(endpoint) or {}).get("round_up"))
    return Price(endpoint, float(row["unit_price"]), str(row["unit"]), source, rounding)


def fetched(endpoint: str) -> Optional[float]:
    """When fal's pricing API last answered for `endpoint` (a Unix time), from the cache; None if never."""
    row = _read_cache().get(endpoint)
    return (_fetched(row) or None) if isinstance(row, dict) else None
