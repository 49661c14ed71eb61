"""The editor's fal panel (web/js/fal_panel.js): what is spent, what is in flight on fal, what was kept.

GET  /fal_audio/panel/spend        today's spend, the daily limit and what is left, the last 30 days per day,
                                   the last 7 days per model with where each price comes from, and per
                                   worker once more than one has booked (workers sharing a database); the
                                   books are the newest run's fal Client's (its profile may name a database)
GET  /fal_audio/panel/inflight     every request this ComfyUI has on fal now (jobs/live.py)
POST /fal_audio/panel/cancel       {"request_id"}: cancel it on fal (and the other takes of its node run)
GET  /fal_audio/panel/recent       the last 50 paid or reused results of the journal
GET  /fal_audio/panel/play/{id}    a kept result file (?output=name for a request that kept several)
POST /fal_audio/panel/fetch-again  {"request_id"}: download fal's copy of a kept file that was deleted

Every number comes from the money package's own reads (the books' running totals summed by ledger.tally, as for
the fal Spend node): the panel and the node agree to the cent. Answers are JSON without the key
(scrubbed), reads only touch the journal, the ledger and the kept files; a file is served only if it lies
inside the pack's kept-results folders. The server pushes "fal_audio.panel" events over ComfyUI's websocket
when a request starts, changes state or ends (throttled): {"requests": [...], "spend": {...}}.
"""

import asyncio
import contextlib
import datetime
import json
import os
from pathlib import Path
from typing import Optional

PREFIX = "/fal_audio/panel"
MAX_BODY = 4096  # a cancel or fetch-again body is one request id
RECENT = 50
CHART_DAYS = 30
EVENT = "fal_audio.panel"
PUSH_EVERY = 1.0  # seconds: at most one push per second, however many requests change


def _json(body) -> dict:
    """An answer with nothing secret in it (the server's keys are looked up first, so that redact() knows
    them even before any node ran)."""
    from ..core.secrets import redact
    from ..transport import credentials

    try:
        credentials.resolve_key("")
    except Exception:  # noqa: BLE001 - no key, or a broken credentials file: nothing more to scrub
        pass
    return json.loads(redact(json.dumps(body)))


def _fail(status: int, message: str) -> tuple:
    return status, {"error": message}


# -- spend ------------------------------------------------------------------------------------------------

def _books():
    """The books the panel shows: those of the newest run's fal Client (its profile may name a database), so that
    the spend and the limit shown are one Client's; else (no run yet, or its profile is gone from the credentials
    file since) the default ones, as the fal Spend node without a Client."""
    from ..core.errors import CredentialsError
    from ..jobs import live
    from ..jobs.options import CallOptions

    options = live.latest_options()
    if options is not None:
        with contextlib.suppress(CredentialsError):
            return options.books()
    return CallOptions().books()


def _limit() -> tuple:
    """(daily limit in USD, where it comes from): the fal Client of this process's newest run, else the
    environment (as the fal Spend node without a Client)."""
    from ..core.errors import InvalidInput
    from ..jobs import live
    from ..jobs.options import CallOptions
    from ..money.ledger import ENV_LIMIT

    options = live.latest_options()
    client = options is not None and options.daily_spend_limit_usd is not None
    try:
        limit = (options if client else CallOptions()).spend_limit()
    except InvalidInput as exc:
        return 0.0, str(exc)
    return limit, "the fal Client of the newest run" if client else (ENV_LIMIT if limit else "none set")


async def spend() -> dict:
    """Today against the limit, the last CHART_DAYS days, the last 7 days per model and per worker: from the books'
    running totals (as the fal Spend node), so a push costs the same however many requests the books hold."""
    from ..money import ledger, pricing

    groups = await asyncio.to_thread(_books().spend_totals, CHART_DAYS)
    today, week = ledger.today(), ledger.first_day()
    now = ledger.tally(g for g in groups if g[0] == today)
    limit, limit_source = _limit()
    start = datetime.date.today() - datetime.timedelta(days=CHART_DAYS - 1)
    days = [(start + datetime.timedelta(days=n)).isoformat() for n in range(CHART_DAYS)]
    per_day = {day: ledger.tally(g for g in groups if g[0] == day).usd for day in days}
    models: dict = {}
    workers: dict = {}
    for group in groups:
        if group[0] >= week:
            models.setdefault(group[1], []).append(group)
            if group[2]:  # rows written before workers were named belong to none
                workers.setdefault(group[2], []).append(group)
    prices = await pricing.lookup(models, None)  # no key: the price cache, else the pack's table (no call)
    per_model = []
    for endpoint, found in models.items():
        total = ledger.tally(found)
        price = prices[endpoint]
        fetched = pricing.fetched(endpoint) if price.source.startswith("fal API") else None
        per_model.append({
            "endpoint": endpoint, "usd": round(total.usd, 6), "text": pricing.money(total.usd), "paid": total.paid,
            "free": total.reused + total.unpaid, "unknown": total.unknown,
            "price": {"text": price.describe(), "source": price.source,
                      "fetched": None if fetched is None else
                      datetime.datetime.fromtimestamp(fetched).isoformat(timespec="seconds")}})
    per_model.sort(key=lambda model: (-model["usd"], model["endpoint"]))
    per_worker = []
    for name, found in workers.items():
        total, today_usd = ledger.tally(found), ledger.tally(g for g in found if g[0] == today).usd
        per_worker.append({"worker": name, "usd": round(total.usd, 6), "text": pricing.money(total.usd),
                           "paid": total.paid, "today_usd": round(today_usd, 6),
                           "today_text": pricing.money(today_usd)})
    per_worker.sort(key=lambda worker: (-worker["usd"], worker["worker"]))
    return {"today": {"day": today, "usd": round(now.usd, 6), "text": pricing.money(now.usd),
                      "in_flight": now.flying, "possibly_billed": now.possibly, "unknown_price": now.unknown},
            "limit": {"usd": limit, "text": pricing.money(limit) if limit else "none",
                      "left_usd": round(max(0.0, limit - now.usd), 6) if limit else None,
                      "left_text": pricing.money(max(0.0, limit - now.usd)) if limit else None,
                      "source": limit_source},
            "days": [{"day": day, "usd": round(per_day[day], 6), "text": pricing.money(per_day[day])} for day in days],
            "models": per_model,
            "workers": per_worker if len(per_worker) > 1 else []}  # as the fal Spend node: once two have booked


# -- recent results -----------------------------------------------------------------------------------------

_LENGTHS: dict = {}  # (path, size, mtime) -> seconds of a kept file, for the panel's list of recent results
_LENGTHS_KEPT = 256


def _seconds(path: Path) -> Optional[float]:
    """The length of a kept file as its header states it: a WAV's from media/wav.py's parser (no PyAV), another
    format's from its container (media.audio.stated_seconds: nothing decoded); None when it states none. Cached by
    the file's size and time, so the list does not open fifty files every time it is shown."""
    from ..media import wav
    from ..media.audio import stated_seconds

    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _LENGTHS:
        return _LENGTHS[key]
    layout = None
    try:
        reader = wav.open_reader(path)
        try:
            layout = wav.parse(reader)
        finally:
            reader.close()
    except Exception:  # noqa: BLE001 - not a WAV (or a header the parser leaves to PyAV): the container says
        layout = None
    seconds = layout.frames / layout.rate if layout is not None and layout.rate else stated_seconds(path)
    if len(_LENGTHS) >= _LENGTHS_KEPT:
        _LENGTHS.pop(next(iter(_LENGTHS)))
    _LENGTHS[key] = round(seconds, 2) if seconds else None
    return _LENGTHS[key]


def recent() -> dict:
    from ..money import pricing

    items = []
    for row in _books().results(RECENT):
        files = row["files"]
        first = Path(next(iter(files.values()))) if files else None
        kept = first is not None and first.is_file()
        items.append({"time": datetime.datetime.fromtimestamp(row["time"]).isoformat(timespec="seconds"),
                      "endpoint": row["endpoint"], "request_id": row["request_id"], "reused": row["state"] == "reused",
                      "cost_usd": row["cost_usd"], "cost_text": pricing.money(row["cost_usd"]),
                      "outputs": list(files), "kept": kept, "seconds": _seconds(first) if kept else None})
    return {"results": items}


def _kept_roots() -> list:
    """The pack's kept-results folders, resolved: the default one (or FAL_AUDIO_OUTPUT_DIR) and ComfyUI's output
    folder, inside which every fal Client's output_dir must lie."""
    from ..core import comfy

    return [Path(os.path.realpath(folder)) for folder in (comfy.output_directory(), comfy.output_root())]


def _inside_kept_folders(path: Path) -> Optional[Path]:
    real = Path(os.path.realpath(path))
    return real if any(root in real.parents for root in _kept_roots()) else None


def _request_id(value) -> Optional[str]:
    from ..transport.gateway import valid_request_id

    return value if valid_request_id(value) else None


def _result_of(request_id: str) -> Optional[dict]:
    found = _books().results(1, request_id)
    return found[0] if found and found[0]["files"] else None


def play(request_id: str, output: str = "") -> tuple:
    """(status, JSON error) or (200, the kept file's path)."""
    if _request_id(request_id) is None:
        return _fail(400, "not a fal request id (letters, digits, '-' and '_')")
    result = _result_of(request_id)
    if result is None:
        return _fail(404, f"no kept result of request {request_id} in this ComfyUI's journal")
    name = output or next(iter(result["files"]))
    if name not in result["files"]:
        return _fail(404, f"request {request_id} kept no output named {name[:40]!r}")
    path = _inside_kept_folders(Path(result["files"][name]))
    if path is None:
        return _fail(403, "the kept file lies outside the pack's kept-results folders; it is not served")
    if not path.is_file():
        return _fail(404, "the kept file was deleted: use 'fetch again' to download fal's copy (no new charge)")
    return 200, path


def _urls(value) -> list:
    if isinstance(value, str):
        return [value] if value.startswith(("https://", "http://", "data:")) else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [url for item in items for url in _urls(item)]


async def fetch_again(request_id: str) -> tuple:
    """Download fal's copy of every deleted file of a kept result, to where it was kept (no request, no charge)."""
    from ..core.errors import RequestFailed
    from ..jobs.results import file_name
    from ..transport.gateway import Gateway, http_status

    result = await asyncio.to_thread(_result_of, request_id)
    if result is None:
        return _fail(404, f"no kept result of request {request_id} in this ComfyUI's journal")
    entry = await asyncio.to_thread(_books().get, result["identity"])
    urls = _urls(entry.response if entry is not None else None)
    fetched = []
    for name, kept in result["files"].items():
        path = _inside_kept_folders(Path(kept))
        if path is None:
            return _fail(403, "the kept file lies outside the pack's kept-results folders; it is not written")
        if path.is_file():
            continue
        url = next((u for u in urls if file_name(result["endpoint"], request_id, name, u) == path.name), None)
        if url is None:
            return _fail(409, f"fal's answer for request {request_id} names no file for {name!r}")
        try:
            await Gateway("").download(url, path)  # file URLs are public: no key is sent
        except Exception as exc:  # noqa: BLE001 - told as a message
            if http_status(exc) in (404, 410):
                return _fail(410, f"fal no longer has the result of request {request_id} (fal keeps result files "
                                  "for a limited time); run the node again with a new seed for a new (paid) take")
            why = str(exc) if isinstance(exc, (RequestFailed, ValueError)) else type(exc).__name__
            return _fail(502, f"fal's copy of request {request_id} could not be downloaded ({why}); try again")
        fetched.append(name)
    return 200, {"request_id": request_id, "fetched": fetched,
                 "message": f"downloaded fal's copy again ({len(fetched)} file{'s' if len(fetched) != 1 else ''}; "
                            "no new charge)" if fetched else "the kept file is there: nothing to fetch"}


# -- in flight and cancel ----------------------------------------------------------------------------------

def inflight() -> dict:
    from ..jobs import live
    from ..money.pricing import money

    return {"requests": [{**row, "estimate_text": money(row["estimate_usd"])} for row in live.snapshot()]}


def _request_id_from(raw: Optional[bytes]):
    """(request id, None) from a body {"request_id": ...}, or (None, (status, error)); None: a body past MAX_BODY
    (editor/body.py)."""
    if raw is None or len(raw) > MAX_BODY:
        return None, _fail(413, f"request too large (at most {MAX_BODY} bytes)")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
        return None, _fail(400, 'expected JSON: {"request_id": "<fal request id>"}')
    request_id = _request_id(data["request_id"])
    if request_id is None:
        return None, _fail(400, "request_id is not a fal request id (letters, digits, '-' and '_')")
    return request_id, None


async def cancel(raw: Optional[bytes]) -> tuple:
    from ..jobs import live
    from ..money.journal import SUBMITTED

    request_id, failure = _request_id_from(raw)
    if failure:
        return failure
    job = live.find(request_id)
    entry = None if job is None else await asyncio.to_thread(job.book.get, job.identity)
    if entry is None or entry.request_id != request_id or entry.state != SUBMITTED:
        return _fail(404, f"request {request_id} is not in flight in this ComfyUI (finished, cancelled, or not "
                          "one of its requests)")
    return 200, {"cancelling": live.cancel(job)}


# -- ComfyUI's server: routes and pushed events --------------------------------------------------------------

def register(instance) -> None:
    """Add the panel's routes to ComfyUI's server and push its events (called by editor/routes.py)."""
    from aiohttp import web

    from ..core.log import own_requests
    from ..jobs import live
    from .body import read_body

    def answer(status: int, body) -> web.Response:
        return web.json_response(_json(body), status=status)

    def guarded(handler):
        """Any failure of a route is a JSON 500 naming what failed (logged), never a stack trace."""
        async def route(request):
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - told as JSON
                from ..core.log import get_logger

                get_logger("panel").warning("%s failed (%s: %s)", request.path, type(exc).__name__, exc)
                return answer(500, {"error": f"the fal panel could not answer ({type(exc).__name__}: {exc})"})

        return route

    routes = instance.routes

    @routes.get(PREFIX + "/spend")
    @guarded
    async def _spend(request):
        return answer(200, await spend())

    @routes.get(PREFIX + "/inflight")
    @guarded
    async def _inflight(request):
        return answer(200, inflight())

    @routes.get(PREFIX + "/recent")
    @guarded
    async def _recent(request):
        return answer(200, await asyncio.to_thread(recent))

    @routes.post(PREFIX + "/cancel")
    @guarded
    async def _cancel(request):
        return answer(*await cancel(await read_body(request, MAX_BODY)))

    @routes.get(PREFIX + "/play/{request_id}")
    @guarded
    async def _play(request):
        status, found = await asyncio.to_thread(play, request.match_info["request_id"],
                                                request.query.get("output", "")[:100])
        return web.FileResponse(found) if status == 200 else answer(status, found)

    @routes.post(PREFIX + "/fetch-again")
    @guarded
    async def _fetch_again(request):
        request_id, failure = _request_id_from(await read_body(request, MAX_BODY))
        if failure:
            return answer(*failure)
        with own_requests():
            return answer(*await fetch_again(request_id))

    pusher = Pusher(instance)
    live.listen(pusher.changed)


class Pusher:
    """Pushes the panel's event over ComfyUI's websocket, at most every PUSH_EVERY seconds."""

    def __init__(self, instance):
        self.instance, self.due = instance, False

    def changed(self, event: str) -> None:
        """From any thread: a request started, changed state or ended."""
        loop = getattr(self.instance, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if not self.due:
            self.due = True
            asyncio.get_running_loop().call_later(PUSH_EVERY, lambda: asyncio.ensure_future(self.push()))

    async def push(self) -> None:
        self.due = False
        try:
            body = {"requests": inflight()["requests"], "spend": await spend()}
        except Exception:  # noqa: BLE001 - the panel asks again at its next refresh
            return
        self.instance.send_sync(EVENT, _json(body))
