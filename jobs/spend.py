"""What a node run costs, told to the user: the estimate before paying (and the daily limit
check), then the final status at the end of the run. The node base calls `estimate()`
before its jobs run and `done()`/`stopped()` after; prices come from money.pricing, the
books from money.journal (each job keeps what its last step booked: `job.booked`).
"""

import time
from typing import List, Optional

from ..core import comfy
from ..core.log import get_logger
from ..money.ledger import ACCEPTED, SETTLED, UNCERTAIN
from ..money.pricing import Charge, charge, lookup, money, parse_unit
from ..transport import credentials, endpoint_id

log = get_logger("spend")


def _key(options) -> Optional[str]:
    try:
        return credentials.resolve_key(options.profile)
    except Exception:  # noqa: BLE001 - the job reports a missing key properly; prices fall back to the table
        return None


def describe(charges: List[Charge]) -> str:
    """≈$0.024 · 2 × 60 s × $0.0002/second (fal API)"""
    if not charges:
        return "no paid request"
    total = [c.usd for c in charges]
    first = charges[0]
    count = len(charges)
    if any(usd is None for usd in total):
        why = first.price.describe() if not first.price.known else "length unknown before the run"
        return f"≈$? ({why}; {first.price.source})"
    amount = _amount(first)
    same = all(c.usd == first.usd and c.endpoint == first.endpoint for c in charges)
    detail = (f"{count} × " if count > 1 else "") + (amount if same else "several requests")
    return f"≈{money(sum(total))} · {detail} × {money(first.price.unit_price)}/{first.price.per} ({first.price.source})"


def _amount(c: Charge) -> str:
    """What the request is billed by, in the user's terms: 95 s, 1,234 characters, 1 request."""
    base = parse_unit(c.price.unit)[0]
    if base == "request":
        return "1 request"
    if base == "character":
        return f"{c.bill.get('characters', 0):,} characters"
    seconds = c.bill.get("seconds") or 0.0
    return f"{seconds:g} s"


async def estimate(jobs: list, bills: list, options, progress: comfy.Progress) -> Optional[float]:
    """Price every job (job.charge), say the estimate, refuse the run if it would pass today's limit."""
    if not jobs:
        return 0.0
    started = time.monotonic()
    prices = await lookup({job.endpoint for job in jobs}, _key(options))
    for job, bill in zip(jobs, bills):
        job.charge = charge(prices[job.endpoint], bill or {})
    charges = [job.charge for job in jobs]
    log.info("%s: estimate %s (price lookup %.2f s)", jobs[0].endpoint, describe(charges),
             time.monotonic() - started)
    progress.text(f"Estimate {describe(charges)}")
    limit = options.spend_limit()
    if limit:
        book = options.books()
        try:
            await book.call(book.check_limit, jobs[0].endpoint, [(job.identity, job.charge.usd) for job in jobs],
                            limit)
        finally:
            for notice in book.notices():  # e.g. a damaged journal was moved aside
                progress.text(notice)
    return None if any(c.usd is None for c in charges) else sum(c.usd for c in charges)


def _audio_text(audio) -> str:
    try:
        waveform, rate = audio["waveform"], int(audio["sample_rate"])
    except (TypeError, KeyError):
        return ""
    channels = waveform.shape[-2] if waveform.dim() >= 2 else 1
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels} ch")
    return f"{waveform.shape[-1] / rate:.1f} s {rate / 1000:g} kHz {layout}"


def _ids(ids: list) -> str:
    short = [str(i)[:8] for i in ids if i]
    if len(short) > 3:
        short = short[:3] + ["…"]
    return ", ".join(short)


def done(jobs: list, results: list, started: float) -> str:
    """Done in 12.3 s · 30.0 s 48 kHz stereo · ≈$0.10 · request 764cabcf. Never raises."""
    try:
        return _done(jobs, results, started)
    except Exception:  # noqa: BLE001 - the results are what matters
        log.exception("final status of a finished run")
        return f"Done in {time.monotonic() - started:.1f} s"


def _done(jobs: list, results: list, started: float) -> str:
    parts = [f"Done in {time.monotonic() - started:.1f} s"]
    audio = next((_audio_text(getattr(r, "audio", None)) for r in results if getattr(r, "audio", None) is not None),
                 "")
    if audio:
        parts.append(audio if len(results) == 1 else f"{len(results)} × {audio}")
    fresh = [(job, r) for job, r in zip(jobs, results) if not r.reused]
    kept = [r for r in results if r.reused]
    if fresh:
        costs = [job.cost for job, _ in fresh]
        paid = "≈$?" if any(c is None for c in costs) else f"≈{money(sum(costs))}"
        parts.append(paid)
        parts.append(("request " if len(fresh) == 1 else "requests ") + _ids([r.request_id for _, r in fresh]))
        if kept:
            parts.append(f"$0 · {len(kept)} kept result{'s' if len(kept) > 1 else ''} reused")
    else:
        parts.append("$0 · kept result" + ("s of requests " if len(kept) > 1 else " of request ")
                     + _ids([r.request_id for r in kept]))
    return " · ".join(parts)


def stopped(jobs: list, exc: BaseException, started: float) -> str:
    """The final status of a run that failed or was cancelled: what was paid. Never raises."""
    try:
        return _stopped(jobs, exc, started)
    except Exception:  # noqa: BLE001 - the run's own error is what matters; never mask it
        log.exception("final status of a stopped run")
        return f"Stopped after {time.monotonic() - started:.1f} s"


def _stopped(jobs: list, exc: BaseException, started: float) -> str:
    cancelled = comfy.is_interrupt(exc) or exc.__class__.__name__ in ("CancelledError", "CancelledFromPanel")
    what = "Cancelled" if cancelled else "Failed"
    booked = [job.booked for job in jobs if job.booked is not None]
    paid = sum(b.cost or 0.0 for b in booked if b.state == SETTLED)
    pending = [b for b in booked if b.state == ACCEPTED]
    possibly = [b for b in booked if b.state == UNCERTAIN]

    def amount(rows):
        return "≈$?" if any(b.estimate is None for b in rows) else f"≈{money(sum(b.estimate for b in rows))}"

    text = f"{what} after {time.monotonic() - started:.1f} s · "
    text += f"paid ≈{money(paid)} for finished requests" if paid else "$0 paid (fal bills successful outputs only)"
    if pending:
        text += (f" · {amount(pending)} may be billed for request {_ids([b.request_id for b in pending])} if it "
                 "finishes on fal; the next run with the same inputs picks its result up at no new charge")
    if possibly:
        text += (f" · {amount(possibly)} possibly billed: fal may have taken the request without the pack "
                 "learning its answer (check https://fal.ai/dashboard)")
    return text


# -- the editor's price badges ----------------------------------------------------------------

MAX_BADGES = 500  # nodes per request of the badge route


def endpoint_of(cls, widgets: dict) -> str:
    """The endpoint a node calls: its ENDPOINT, or (any-endpoint node) its well-formed 'endpoint' widget."""
    endpoint = getattr(cls, "ENDPOINT", "")
    if endpoint:
        return endpoint
    typed = widgets.get("endpoint")
    try:
        declared = "endpoint" in cls.INPUT_TYPES().get("required", {})
    except Exception:  # noqa: BLE001 - not a node of ours
        return ""
    if not declared or not isinstance(typed, str):
        return ""
    try:
        return endpoint_id.check(typed, "", "endpoint")  # fal's owner/app[/path] shape only
    except ValueError:
        return ""


def _bill_from_widgets(cls, widgets: dict) -> dict:
    """A node's cost facts from its widget values alone (no clips: those exist only in a run)."""
    node = cls()
    node.REQUIRED_TEXT = ()  # text not typed yet is no error here: the badge prices what is there
    values = {k: v for k, v in widgets.items() if isinstance(v, (str, int, float, bool))}
    try:
        request = node._base_request(values)
    except Exception:  # noqa: BLE001 - a value the run would refuse: price without it
        return {}
    try:
        return node.billing(request, {}) or {}
    except Exception:  # noqa: BLE001 - a billing() that needs a clip: the amount is unknown until the run
        return {}


def badge(cls, widgets: dict, price) -> dict:
    """What the badge on one node says, from its widgets and its endpoint's price."""
    try:
        takes = min(max(int(widgets.get("takes", 1)), 1), 8)
    except (TypeError, ValueError):
        takes = 1
    one = charge(price, _bill_from_widgets(cls, widgets))
    try:
        required = cls.INPUT_TYPES().get("required", {})
    except Exception:  # noqa: BLE001
        required = {}
    # A node that needs an input clip makes one request per clip of the batch connected to it.
    per_clip = " per input clip" if any(s in required for s in getattr(cls, "AUDIO_INPUTS", None) or {}) else ""
    times = f" ({takes} takes)" if takes > 1 else ""
    if one.usd is not None:
        text = f"≈{money(one.usd * takes)}{per_clip}{times}"
    elif price.known:
        base = parse_unit(price.unit)[0]
        text = f"{money(price.unit_price)}/{price.per}" + (" of input" if base != "request" and per_clip else "") \
            + (f" × {takes} takes" if takes > 1 else "")
    else:
        text = "price unknown"
    return {"endpoint": price.endpoint, "text": text, "usd": None if one.usd is None else one.usd * takes,
            "per_request_usd": one.usd, "takes": takes, "unit_price": price.unit_price, "unit": price.unit,
            "source": price.source, "billed_by": one.bill}


async def badges(node_classes: dict, items: list, key_profile: str = "") -> dict:
    """{node id: badge} for the editor's paid nodes ([{"id", "type", "widgets"}]); others are left out.

    Prices: fal's API with the server's own key (cached; never more than ~2 s), else the table.
    Only prices, units and sources are returned: never the key."""
    wanted = []
    for item in items[:MAX_BADGES]:
        if not isinstance(item, dict):
            continue
        cls = node_classes.get(item.get("type"))
        if cls is None:
            continue
        widgets = item.get("widgets") if isinstance(item.get("widgets"), dict) else {}
        endpoint = endpoint_of(cls, widgets)
        if endpoint:
            wanted.append((str(item.get("id")), cls, widgets, endpoint))
    if not wanted:
        return {}

    class _Options:
        profile = key_profile

    prices = await lookup({endpoint for *_, endpoint in wanted}, _key(_Options))
    return {node_id: badge(cls, widgets, prices[endpoint]) for node_id, cls, widgets, endpoint in wanted}
