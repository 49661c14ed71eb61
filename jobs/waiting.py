"""The job runner's waits: sleeps and network steps that notice ComfyUI's Cancel, calls retried
after a dropped connection, and following an accepted request until fal completes it (fal's
status stream, else polling; progress text; the queue and overall timeouts).
"""

import asyncio
import re
import time
from typing import Awaitable, Callable

from ..core import comfy, errors
from ..core.errors import FalAudioError, RequestFailed, TimeoutExpired
from ..core.log import get_logger
from ..transport import credentials
from ..transport.gateway import http_status, is_transient
from ..transport.retry import retrying

log = get_logger("job")

# Without fal's status stream: poll quickly at first (short jobs finish fast), then a few times a second.
POLL_FIRST, POLL_MAX = 0.1, 0.25
# With the stream: ask for the status directly after this many quiet seconds.
QUIET_POLL = 5.0
# How often a wait wakes up to notice ComfyUI's Cancel.
INTERRUPT_CHECK = 0.1
# Connection drops while polling/fetching/uploading are retried this many times.
RETRIES = 4
# fal may briefly not know a request it has just accepted: a 404 of its status is asked again this long.
UNKNOWN_GRACE = 5.0
# fal's log lines shown in the progress text: at most this many characters.
LOG_LINE_MAX = 160

_MARKUP = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|<[^<>]*>|[<>]|[\x00-\x1f\x7f-\x9f]")


def plain(text) -> str:
    """A log line of fal's as plain text for the progress: no markup, escape sequences or control
    characters (an older frontend renders the progress text as HTML), at most LOG_LINE_MAX characters."""
    text = " ".join(_MARKUP.sub(" ", str(text)).split())
    return text if len(text) <= LOG_LINE_MAX else text[:LOG_LINE_MAX - 1] + "…"


async def sleep(seconds: float) -> None:
    """Sleep in short steps so ComfyUI's Cancel is noticed within INTERRUPT_CHECK."""
    end = time.monotonic() + seconds
    while True:
        comfy.throw_if_interrupted()
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, INTERRUPT_CHECK))


async def interruptible(awaitable):
    """Await a network step while still noticing ComfyUI's Cancel every INTERRUPT_CHECK."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=INTERRUPT_CHECK)
            if done:
                return task.result()
            comfy.throw_if_interrupted()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def retried(what: str, call: Callable[[], Awaitable], server_errors: bool = False):
    """A call that is safe to repeat, tried again after a dropped connection or timeout (and, if
    asked, a 5xx answer). Client errors (4xx) are answers about the request itself: never retried."""
    def worth(exc: Exception) -> bool:
        status = http_status(exc)
        return is_transient(exc) or (server_errors and status is not None and status >= 500)

    return await retrying(lambda: interruptible(call()), worth, what, RETRIES + 1, 0.25, 4.0, sleep)


class UnknownRequest(Exception):
    """fal answered 404 for a request id we hold."""


class ResultRefused(Exception):
    """fal answered the result fetch of a completed request with a client error: the request itself failed."""

    def __init__(self, detail: str, error: Exception):
        super().__init__(detail)
        self.detail, self.error = detail, error


async def fetch_result(gateway, endpoint: str, request_id: str) -> dict:
    """fal's response of a completed request, asked again after drops and 5xx answers. ResultRefused when fal says the
    request failed; RequestFailed when it could not be fetched (the next run fetches it without a new charge)."""
    try:
        return await retried(f"{endpoint}: fetching the result", lambda: gateway.result(endpoint, request_id),
                             server_errors=True)
    except Exception as exc:
        if comfy.is_interrupt(exc):
            raise  # the request is done and paid for: the journal keeps it for the next run
        if (http_status(exc) or 500) < 500:
            raise ResultRefused(str(exc), errors.from_fal(endpoint, exc)) from None
        raise RequestFailed(
            f"{endpoint}: request {request_id} finished but its result could not be fetched "
            f"({errors.from_fal(endpoint, exc)}). Run the node again to fetch it (no new charge).") from None


class Follow:
    """One request fal accepted, followed until it completes."""

    def __init__(self, gateway, endpoint: str, request_id: str, grace: float):
        self.gateway, self.endpoint, self.request_id = gateway, endpoint, request_id
        self.grace = grace  # how long a 404 is asked again (right after our own submit)

    async def status(self):
        try:
            return await retried(f"{self.endpoint}: checking the status",
                                 lambda: self.gateway.status(self.endpoint, self.request_id), server_errors=True)
        except Exception as exc:  # noqa: BLE001 - a 404 is asked again just below; the rest raise
            if http_status(exc) != 404:
                raise
            return await self._after_404(exc)

    async def _after_404(self, exc: Exception):
        """fal may briefly not know a request it has just accepted: ask again, with backoff, for the
        grace time; raise the 404 if it stays unknown."""
        deadline, pause = time.monotonic() + self.grace, 0.25
        while time.monotonic() < deadline:
            await sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause *= 2
            try:
                return await retried(f"{self.endpoint}: checking the status",
                                     lambda: self.gateway.status(self.endpoint, self.request_id), server_errors=True)
            except Exception as again:  # noqa: BLE001 - another 404: ask again until the deadline
                if http_status(again) != 404:
                    raise
                log.info("%s: fal does not know request %s yet; asking again", self.endpoint, self.request_id)
        raise exc

    async def _watch(self, updates: asyncio.Queue) -> None:
        """Feed status updates into `updates`: from fal's event stream, or by polling if the
        stream is unavailable or breaks. An error is put in the queue for the waiter to raise."""
        import fal_client

        try:
            try:
                async for status in self.gateway.status_events(self.endpoint, self.request_id):
                    await updates.put(status)
                    if isinstance(status, fal_client.Completed):
                        return
            except Exception as exc:  # noqa: BLE001 - polling below is the fallback
                if http_status(exc) == 404:
                    await updates.put(await self._after_404(exc))
                log.debug("%s: status stream unavailable (%s); polling", self.endpoint, type(exc).__name__)
            interval = POLL_FIRST
            while True:
                status = await self.status()
                await updates.put(status)
                if isinstance(status, fal_client.Completed):
                    return
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            await updates.put(exc)

    async def until_done(self, options, started: float, say: Callable[[str], None], progress,
                         cancel: Callable[[str], Awaitable[str]]):
        """Wait for COMPLETED (returned: its `error` says whether fal failed it), showing progress,
        noticing Cancel, enforcing both timeouts of `options` (cancel(why) stops it on fal). UnknownRequest when
        fal does not know the request; fal's other errors as the pack's, naming the model."""
        try:
            return await self._until_done(options, started, say, progress, cancel)
        except Exception as exc:
            if comfy.is_interrupt(exc) or isinstance(exc, FalAudioError):
                raise
            if http_status(exc) == 404:
                raise UnknownRequest(self.request_id) from None
            raise errors.from_fal(self.endpoint, exc, credentials.how_to_set()) from None

    async def _until_done(self, options, started: float, say: Callable[[str], None], progress,
                          cancel: Callable[[str], Awaitable[str]]):
        import fal_client

        updates: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.ensure_future(self._watch(updates))
        queued_since = last_update = time.monotonic()
        status = None
        try:
            while True:
                try:
                    update = await asyncio.wait_for(updates.get(), INTERRUPT_CHECK)
                except asyncio.TimeoutError:
                    update = None
                comfy.throw_if_interrupted()
                if update is None and time.monotonic() - last_update > QUIET_POLL:
                    # A stream that has gone quiet (or a proxy that buffers it) must not hide
                    # completion: ask directly now and then.
                    update = await self.status()
                if isinstance(update, BaseException):
                    raise update
                if update is not None:
                    status, last_update = update, time.monotonic()
                elapsed = time.monotonic() - started
                if isinstance(status, fal_client.Queued):
                    waited = time.monotonic() - queued_since
                    say(f"In queue (position {status.position}), {waited:.0f} s")
                    progress.update(5)
                    if waited > options.queue_timeout:
                        outcome = await cancel("queue timeout")
                        raise TimeoutExpired(
                            f"{self.endpoint}: no fal runner picked the request up within the queue timeout of "
                            f"{options.queue_timeout:g} s (often: the account is out of credits, or the model "
                            f"is busy). {outcome} Raise 'queue_timeout' on the fal Client node to wait longer.")
                elif isinstance(status, fal_client.InProgress):
                    last_log = next((plain(entry["message"]) for entry in reversed(status.logs or [])
                                     if isinstance(entry, dict) and entry.get("message")), "")
                    say(f"Running, {elapsed:.0f} s" + (f": {last_log}" if last_log else ""))
                    progress.update(50)
                elif isinstance(status, fal_client.Completed):
                    if not status.error:
                        progress.update(90)
                    return status
                if elapsed > options.overall_timeout:
                    if not isinstance(status, fal_client.InProgress):
                        outcome = await cancel("overall timeout")
                        raise TimeoutExpired(
                            f"{self.endpoint}: the overall timeout of {options.overall_timeout:g} s passed "
                            f"while the request was still queued. {outcome}")
                    raise TimeoutExpired(
                        f"{self.endpoint}: the overall timeout of {options.overall_timeout:g} s passed while "
                        f"the request was running. It was left running on fal (request {self.request_id}); run "
                        "the node again with the same inputs to pick up its result without a new charge.")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
