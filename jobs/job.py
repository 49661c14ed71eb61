"""One paid fal request from start to AUDIO: claim in the journal, upload inputs,
submit, wait (with progress, Cancel and timeouts), fetch, keep the file, decode.
"""

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from ..core import comfy, errors
from ..core.aio import finish, per_loop
from ..core.errors import FalAudioError, RequestFailed, TimeoutExpired
from ..core.log import get_logger
from ..media import audio as audio_io
from ..media import reuse
from ..media.limits import DecodeError, DecodeLimitExceeded
from ..media.wavstream import WavStream
from ..money import ledger
from ..money.journal import UNCERTAIN, Booked
from ..money.journal import current as journal
from ..money.journal import identity as request_identity
from ..money.owner import OWNER
from ..money.pricing import returned_seconds
from ..transport import credentials
from ..transport.gateway import Gateway, NotDownloadable, SubmitUncertain, http_status, is_transient
from ..transport.slots import SLOTS, waiting_text
from .options import CallOptions
from .results import Locator, single
from .results import file_name as _file_name

log = get_logger("job")

# Without fal's status stream: poll quickly at first (short jobs finish fast), then a few times a second.
POLL_FIRST, POLL_MAX = 0.1, 0.25
# With the stream: ask for the status directly after this many quiet seconds.
QUIET_POLL = 5.0
# How often a wait wakes up to notice ComfyUI's Cancel.
INTERRUPT_CHECK = 0.1
CANCEL_TIMEOUT = 10.0
# How often a node waiting for another ComfyUI process's submit of the same request looks again.
OTHER_OWNER_CHECK = 0.5
# How long a node stopping (error, Cancel) waits for the journal to release its claim or retire a
# cancelled request; the write is still made, in order, if another program holds the lock longer.
RELEASE_WAIT = 0.5
# Connection drops while polling/fetching/downloading are retried this many times.
RETRIES = 4
# fal may briefly not know a request it has just accepted: a 404 of its status is asked again this long.
UNKNOWN_GRACE = 5.0
# fal's log lines shown in the progress text: at most this many characters.
LOG_LINE_MAX = 160


class UnknownRequest(Exception):
    """fal answered 404 for a request id we hold."""


class FileExpired(RequestFailed):
    """The file host answered 404/410 for a result file: fal's copy is gone for good."""


@dataclass
class Upload:
    """An input file that is uploaded to fal storage only when a request is really sent."""

    data: bytes
    content_type: str
    file_name: str
    content_hash: str = field(init=False)
    # A fal result passed on unchanged (media.reuse): sent by fal's own URL of the original file,
    # named by that file's content hash; `data` stays empty unless fal no longer serves the URL.
    origin: Optional[reuse.Origin] = None

    def __post_init__(self):
        self.content_hash = self.origin.file_hash if self.origin else reuse.content_hash(self.data)

    @property
    def kind(self) -> str:
        """What the file is, for the progress text: audio, image or video."""
        major = self.content_type.split("/", 1)[0].lower()
        return major if major in ("image", "video") else "audio"

    @classmethod
    def from_clip(cls, clip: dict, name: str = "input.wav") -> "Upload":
        found = reuse.origin(clip)
        if found is not None:
            return cls(b"", found.content_type, found.file_name, origin=found)
        return cls(audio_io.encode_wav(clip), "audio/wav", name)


@dataclass
class JobResult:
    """What one paid request gave: fal's response, and every file the node keeps from it
    (kept on disk, decoded). `audio`/`file_path` are the first file's (None for a text-only result)."""

    response: dict
    audio: Optional[dict]
    file_path: Optional[Path]
    request_id: Optional[str]
    reused: bool
    audios: Dict[str, dict] = field(default_factory=dict)  # output name -> AUDIO
    files: Dict[str, Path] = field(default_factory=dict)  # output name -> kept file
    inputs: Dict[str, dict] = field(default_factory=dict)  # input socket -> the clip sent (set by the node)

    @classmethod
    def of(cls, response: dict, files: Dict[str, Path], audios: Dict[str, dict], request_id, reused: bool):
        first = next(iter(files), None)
        return cls(response, audios.get(first), files.get(first), request_id, reused, audios, files)


_upload_locks: dict = {}
# Per prompt (event loop): identity -> message of a submit that may have reached fal. An identical
# node of the same prompt must not send it again; a later prompt (a re-run) submits anew.
_uncertain: dict = {}


def _upload_lock(content_hash: str) -> asyncio.Lock:
    return per_loop(_upload_locks).setdefault(content_hash, asyncio.Lock())


_MARKUP = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|<[^<>]*>|[<>]|[\x00-\x1f\x7f-\x9f]")


def plain(text) -> str:
    """A log line of fal's as plain text for the progress: no markup, escape sequences or control
    characters (an older frontend renders the progress text as HTML), at most LOG_LINE_MAX characters."""
    text = " ".join(_MARKUP.sub(" ", str(text)).split())
    return text if len(text) <= LOG_LINE_MAX else text[:LOG_LINE_MAX - 1] + "…"


def _identity_view(value):
    if isinstance(value, Upload):
        return {"upload": value.content_hash}
    if isinstance(value, dict):
        return {k: _identity_view(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_identity_view(v) for v in value]
    return value


class Job:
    def __init__(self, endpoint: str, request: dict, options: CallOptions, progress: comfy.Progress,
                 result_files: Union[Locator, str] = "audio", take_key: Any = None, label: str = "",
                 decode: Optional[Callable] = None):
        self.endpoint = endpoint
        self.request = request
        self.options = options
        self.progress = progress
        # Which files of the response are kept (output name -> URL); a string names the one file field.
        self.locate = single(result_files) if isinstance(result_files, str) else result_files
        self.label = label
        # How a kept file becomes AUDIO: audio.decode, or a node's decoder for headerless formats.
        self.decode_file = decode or audio_io.decode
        # take_key gives models without a seed a new identity per seed/take.
        self.identity = request_identity(endpoint, {"arguments": _identity_view(request), "take": take_key})
        self.started = time.monotonic()
        self.gateway: Optional[Gateway] = None
        # Cost: the estimate (a pricing.Charge, set before the run) and what this request cost (USD, once known).
        self.charge = None
        self.cost: Optional[float] = None
        # The request's ledger row as the journal's last step left it (the run's final status reads it).
        self.booked: Optional[Booked] = None
        # How long a 404 of the status is asked again: only right after this job's own submit.
        self._grace = 0.0
        # Result files being decoded while they download (output name -> WavStream), until decoded.
        self._streams: Dict[str, Optional[WavStream]] = {}

    def _say(self, text: str) -> None:
        self.progress.text(f"{self.label}{text}")

    async def _book(self, step: Callable, *args, **options):
        """Run a journal step of this request; keep the ledger row it booked."""
        result = await journal().call(step, *args, **options)
        if isinstance(result, Booked):
            self.booked = result
        return result

    async def _sleep(self, seconds: float) -> None:
        """Sleep in short steps so ComfyUI's Cancel is noticed within INTERRUPT_CHECK."""
        end = time.monotonic() + seconds
        while True:
            comfy.throw_if_interrupted()
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, INTERRUPT_CHECK))

    async def _interruptible(self, awaitable):
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

    async def _retrying(self, what: str, call: Callable, server_errors: bool = False):
        """Retry connection drops/timeouts (and, if asked, 5xx answers) with backoff.
        Client errors (4xx) are answers about the request itself and are never retried."""
        for attempt in range(RETRIES + 1):
            try:
                return await self._interruptible(call())
            except Exception as exc:  # noqa: BLE001 - filtered just below
                status = http_status(exc)
                retry = is_transient(exc) or (server_errors and status is not None and status >= 500)
                if comfy.is_interrupt(exc) or not retry or attempt == RETRIES:
                    raise
                log.warning("%s: %s failed (%s); retrying", self.endpoint, what, status or type(exc).__name__)
                await self._sleep(min(0.25 * 2 ** attempt, 4.0))

    async def run(self) -> JobResult:
        try:
            return await self._run()
        finally:
            SLOTS.release(self)  # the request slot taken before the submit, if any

    async def _run(self) -> JobResult:
        """One paid request: claim it in the journal, submit it, follow it, keep its result."""
        self.gateway = Gateway(credentials.resolve_key(self.options.profile))
        earlier = await self._claim()
        if earlier is not None:
            return earlier
        request_id = await self._submit()
        try:
            return await self._follow(request_id)
        except UnknownRequest:
            # Still unknown after UNKNOWN_GRACE: it may yet run (and bill), so it is cancelled and counted.
            self._say("Cancelling (unknown to fal)")
            await asyncio.gather(asyncio.wait_for(asyncio.shield(self.gateway.cancel(self.endpoint, request_id)),
                                                  CANCEL_TIMEOUT), return_exceptions=True)
            message = (f"{self.endpoint}: fal.ai does not know request {request_id}, which it had just accepted "
                       f"(its status answered 404 for {self._grace:g} s); a cancel was sent in case it runs after "
                       f"all. {ledger.possibly_billed(self._estimate())} Check your requests at "
                       "https://fal.ai/dashboard, and run the node again to submit anew.")
            await self._book(journal().uncertain, self.identity, "unknown to fal after accepting it", message,
                             per_loop(_uncertain), paid=True)
            raise RequestFailed(message) from None

    def _estimate(self) -> Optional[float]:
        return self.charge.usd if self.charge is not None else None

    async def _claim(self) -> Optional[JobResult]:
        """Claim the right to submit (None), or return the result of the same request paid earlier:
        kept (reused), or still with fal (resumed). Waits while someone else is submitting it."""
        book = journal()
        while True:
            # Reserves the estimate (refused past today's limit). A claim made after this task stopped
            # waiting (Cancel) is released again, in order.
            try:
                entry = await book.call(book.claim, self.identity, self.endpoint, self.charge,
                                        self.options.spend_limit(), per_loop(_uncertain),
                                        undo=lambda claimed: claimed is None and book.release(self.identity))
            finally:
                for notice in book.notices():  # e.g. a damaged journal was moved aside
                    self._say(notice)
            if entry is None:
                return None
            if entry.state == UNCERTAIN:  # this prompt's (or a dead process's) submit may have reached fal
                raise RequestFailed(entry.detail)
            if entry.state == "completed":
                kept = await self._reuse(entry)
                if kept is not None:
                    return kept
                await book.call(book.forget, self.identity)
                continue
            if entry.state == "submitted":
                self._say("Resuming the request sent earlier (no new charge)")
                log.info("%s: resuming request %s", self.endpoint, entry.request_id)
                try:
                    return await self._follow(entry.request_id)
                except UnknownRequest:
                    # fal confirms it never had (or no longer has) this request: safe to submit anew.
                    log.warning("%s: fal does not know request %s; submitting anew", self.endpoint, entry.request_id)
                    await book.call(book.forget, self.identity)
                    continue
            if entry.owner == OWNER:
                await self._sleep(INTERRUPT_CHECK)  # another task of ours is submitting it
            else:
                self._say("Waiting: another ComfyUI process is submitting the same request")
                await self._sleep(OTHER_OWNER_CHECK)

    async def _submit(self) -> str:
        """Upload the inputs and submit; return fal's request id, recorded in the journal. From
        the moment fal may have the request it is never lost: followed, cancelled, or recorded."""
        book = journal()
        try:
            # The claim reserved the estimate before any upload or submit.
            arguments = await self._resolve_uploads(self.request)
            await self._interruptible(SLOTS.take(self, self.options.max_concurrent_requests,
                                                 lambda *state: self._say(waiting_text(*state))))
            self._say("Submitting")
            # From here a crash leaves a claim that may be on fal: the next run says so instead of resending.
            await book.call(book.sending, self.identity)
            # Not cut short by Cancel: once sent, fal may bill it, so we must learn its id to cancel it.
            request_id, cancelled = await finish(self.gateway.submit(self.endpoint, arguments))
        except BaseException as exc:
            status = http_status(exc)
            if isinstance(exc, SubmitUncertain) or (status is not None and status >= 500):
                # fal may have taken it: counted as possibly billed, never resent silently.
                reason = exc if isinstance(exc, SubmitUncertain) else (
                    f"fal.ai answered the submit with HTTP {status}, which does not show whether it took the request")
                message = (f"{self.endpoint}: {reason}, so it may or may not be running (and billed) on fal. "
                           f"{ledger.possibly_billed(self._estimate())} It was not resent automatically; check "
                           "your requests at https://fal.ai/dashboard and run the node again to submit anew.")
                await self._book(book.uncertain, self.identity, str(reason), message, per_loop(_uncertain),
                                 paid=True)
                raise RequestFailed(message) from None
            await self._book(book.release, self.identity, wait=RELEASE_WAIT)
            if isinstance(exc, Exception) and not isinstance(exc, FalAudioError) and not comfy.is_interrupt(exc):
                raise errors.from_fal(self.endpoint, exc, credentials.how_to_set(), submitting=True) from None
            raise
        log.info("%s: submitted request %s", self.endpoint, request_id)
        self._grace = UNKNOWN_GRACE
        try:
            # Paid from now on: written whatever happens, even if another program holds the journal's lock.
            await self._book(book.submitted, self.identity, request_id, paid=True)
        except BaseException:
            # Cancel while that write waits for the lock: it is still made (in order), and the request
            # is stopped on fal meanwhile rather than left billing.
            await self._cancel(request_id, "cancelled by the user")
            raise
        if cancelled:  # Cancel came while fal was answering the submit: stop it now that we know its id
            await self._cancel(request_id, "cancelled by the user")
            raise asyncio.CancelledError
        return request_id

    async def _resolve_uploads(self, value):
        if isinstance(value, Upload):
            # One upload per content even when several takes need the same clip at once.
            async with _upload_lock(value.content_hash):
                book = journal()
                url = await book.call(book.upload_url, value.content_hash)
                if url is None and value.origin is not None:  # fal's own copy of this very file
                    url = await reuse.still_served(value.origin, self.gateway.probe)
                    if url is None:
                        value.data, value.content_type, value.file_name = await asyncio.to_thread(
                            value.origin.original, audio_io.encode_wav)
                if url is None:
                    comfy.throw_if_interrupted()
                    what = f"uploading input {value.kind}"
                    self._say(what.capitalize())
                    url = await self._retrying(what, lambda: self.gateway.upload(
                        value.data, value.content_type, value.file_name))
                    await book.call(book.remember_upload, value.content_hash, url)
            return url
        if isinstance(value, dict):
            return {k: await self._resolve_uploads(v) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._resolve_uploads(v) for v in value]
        return value

    async def _reuse(self, entry) -> Optional[JobResult]:
        """The kept result of an earlier request; None only if a kept file was deleted and fal
        confirms its own copy is gone (404/410). Any other trouble (a 5xx, a drop, Cancel) raises
        and leaves the entry as it is: the next run tries again without paying."""
        kept = {name: Path(path) for name, path in (entry.files or {}).items()}
        try:
            files = await self._keep(entry.response, entry.request_id, kept)
        except FileExpired:
            log.warning("%s: kept result of request %s was deleted and fal's copy has expired; paying for a new take",
                        self.endpoint, entry.request_id)
            self._say("the kept file was deleted and fal's copy has expired: paying for a new take")
            return None
        if files != kept:
            await journal().call(journal().completed, self.identity, entry.response, files, paid=True)
        self._say("Reused the kept result (no new charge)")
        await self._book(journal().reused, self.identity, self.endpoint, entry.request_id)
        self.cost = 0.0
        return JobResult.of(entry.response, files, await self._decode(files, self.locate(entry.response)),
                            entry.request_id, reused=True)

    async def _follow(self, request_id: str) -> JobResult:
        try:
            await self._wait(request_id)
        except BaseException as exc:
            if comfy.is_interrupt(exc) or isinstance(exc, asyncio.CancelledError):
                await self._cancel(request_id, "cancelled by the user")
                raise
            if isinstance(exc, Exception) and not isinstance(exc, FalAudioError):
                if http_status(exc) == 404:
                    raise UnknownRequest(request_id) from None
                raise errors.from_fal(self.endpoint, exc, credentials.how_to_set()) from None
            raise
        SLOTS.release(self)  # done on fal: the next request may go while this one's result is fetched and kept
        try:
            response = await self._retrying("fetching the result",
                                            lambda: self.gateway.result(self.endpoint, request_id), server_errors=True)
        except Exception as exc:
            if comfy.is_interrupt(exc):
                raise  # the request is done and paid for: the journal keeps it for the next run
            status = http_status(exc)
            if status is not None and status < 500:
                # fal says the request itself failed
                await self._book(journal().failed, self.identity, str(exc), paid=True)
                raise errors.from_fal(self.endpoint, exc) from None
            raise RequestFailed(
                f"{self.endpoint}: request {request_id} finished but its result could not be fetched "
                f"({errors.from_fal(self.endpoint, exc)}). Run the node again to fetch it (no new charge)."
            ) from None
        files = await self._keep(response, request_id)
        if not all(getattr(self._streams.get(name), "ready", False) for name in files):
            self._say("Decoding")  # not said when every file was decoded while it downloaded
        # The decode starts in worker threads while the journal records the result (no wait in between).
        decoding = asyncio.ensure_future(self._decode(files, self.locate(response)))
        try:
            await self._book(journal().completed, self.identity, response, files, paid=True)
        except BaseException:
            decoding.cancel()
            await asyncio.gather(decoding, return_exceptions=True)
            raise
        result = JobResult.of(response, files, await decoding, request_id, reused=False)
        self.cost = await journal().call(journal().settle, self.identity, self.charge, returned_seconds(result.audio))
        if self.booked is not None:
            self.booked = self.booked._replace(cost=self.cost)
        return result

    async def _watch(self, request_id: str, updates: asyncio.Queue) -> None:
        """Feed status updates into `updates`: from fal's event stream, or by polling if the
        stream is unavailable or breaks. An error is put in the queue for the waiter to raise."""
        import fal_client

        try:
            try:
                async for status in self.gateway.status_events(self.endpoint, request_id):
                    await updates.put(status)
                    if isinstance(status, fal_client.Completed):
                        return
            except Exception as exc:  # noqa: BLE001 - polling below is the fallback
                if http_status(exc) == 404:
                    await updates.put(await self._after_404(request_id, exc))
                log.debug("%s: status stream unavailable (%s); polling", self.endpoint, type(exc).__name__)
            interval = POLL_FIRST
            while True:
                status = await self._status(request_id)
                await updates.put(status)
                if isinstance(status, fal_client.Completed):
                    return
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            await updates.put(exc)

    async def _status(self, request_id: str):
        try:
            return await self._retrying("checking the status", lambda: self.gateway.status(self.endpoint, request_id),
                                        server_errors=True)
        except Exception as exc:  # noqa: BLE001 - a 404 is asked again just below; the rest raise
            if http_status(exc) != 404:
                raise
            return await self._after_404(request_id, exc)

    async def _after_404(self, request_id: str, exc: Exception):
        """fal may briefly not know a request it has just accepted: ask again, with backoff, for the
        grace time; raise the 404 if it stays unknown."""
        deadline, pause = time.monotonic() + self._grace, 0.25
        while time.monotonic() < deadline:
            await self._sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause *= 2
            try:
                return await self._retrying("checking the status",
                                            lambda: self.gateway.status(self.endpoint, request_id), server_errors=True)
            except Exception as again:  # noqa: BLE001 - another 404: ask again until the deadline
                if http_status(again) != 404:
                    raise
                log.info("%s: fal does not know request %s yet; asking again", self.endpoint, request_id)
        raise exc

    async def _wait(self, request_id: str) -> None:
        """Wait for COMPLETED, showing progress, noticing Cancel, enforcing both timeouts."""
        import fal_client

        updates: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.ensure_future(self._watch(request_id, updates))
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
                    update = await self._status(request_id)
                if isinstance(update, BaseException):
                    raise update
                if update is not None:
                    status, last_update = update, time.monotonic()
                elapsed = time.monotonic() - self.started
                if isinstance(status, fal_client.Queued):
                    waited = time.monotonic() - queued_since
                    self._say(f"In queue (position {status.position}), {waited:.0f} s")
                    self.progress.update(5)
                    if waited > self.options.queue_timeout:
                        outcome = await self._cancel(request_id, "queue timeout")
                        raise TimeoutExpired(
                            f"{self.endpoint}: no fal runner picked the request up within the queue timeout of "
                            f"{self.options.queue_timeout:g} s (often: the account is out of credits, or the model "
                            f"is busy). {outcome} Raise 'queue_timeout' on the fal Client node to wait longer.")
                elif isinstance(status, fal_client.InProgress):
                    last_log = next((plain(entry["message"]) for entry in reversed(status.logs or [])
                                     if isinstance(entry, dict) and entry.get("message")), "")
                    self._say(f"Running, {elapsed:.0f} s" + (f": {last_log}" if last_log else ""))
                    self.progress.update(50)
                elif isinstance(status, fal_client.Completed):
                    if status.error:
                        await self._book(journal().failed, self.identity, status.error, paid=True)
                        raise RequestFailed(f"{self.endpoint} failed on fal.ai: {status.error}")
                    self.progress.update(90)
                    return
                if elapsed > self.options.overall_timeout:
                    if not isinstance(status, fal_client.InProgress):
                        outcome = await self._cancel(request_id, "overall timeout")
                        raise TimeoutExpired(
                            f"{self.endpoint}: the overall timeout of {self.options.overall_timeout:g} s passed "
                            f"while the request was still queued. {outcome}")
                    raise TimeoutExpired(
                        f"{self.endpoint}: the overall timeout of {self.options.overall_timeout:g} s passed while "
                        f"the request was running. It was left running on fal (request {request_id}); run the node "
                        "again with the same inputs to pick up its result without a new charge.")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _cancel(self, request_id: str, why: str) -> str:
        """Tell fal to stop (and stop billing). Shielded: runs even while we are being cancelled.
        Returns what happened, as a sentence for the user.

        Only a confirmed cancel retires the journal entry. If fal answers that the request
        already completed (or the answer is lost), it may be paid for: the entry stays
        'submitted' so the next run with the same inputs fetches the result for free.
        """
        self._say(f"Cancelling ({why})")
        try:
            await asyncio.wait_for(asyncio.shield(self.gateway.cancel(self.endpoint, request_id)), CANCEL_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - e.g. ALREADY_COMPLETED, or no answer
            reason = http_status(exc) or type(exc).__name__
            log.warning("%s: cancel of request %s was not confirmed (%s); the next run will pick it up",
                        self.endpoint, request_id, reason)
            return (f"Cancelling request {request_id} was not confirmed by fal ({reason}): it may still run and be "
                    "billed; the next run with the same inputs picks up its result without a new charge.")
        # Retired (never reused); not waited for long: the write is made in order even if the lock is held.
        await self._book(journal().failed, self.identity, why, paid=True, wait=RELEASE_WAIT)
        log.info("%s: cancelled request %s (%s)", self.endpoint, request_id, why)
        return f"Request {request_id} was cancelled on fal."

    async def _keep(self, response: dict, request_id: str, kept: Optional[Dict[str, Path]] = None) -> Dict[str, Path]:
        """Every file the node keeps from the response, on disk: those already kept, the rest downloaded."""
        try:
            urls = self.locate(response)
        except ValueError as exc:
            raise RequestFailed(f"{self.endpoint}: {exc}; got fields {sorted(response)}") from None
        files = {}
        for name, url in urls.items():
            path = (kept or {}).get(name)
            if path is not None and path.is_file():
                files[name] = path
                continue
            # A result the pack decodes itself is decoded while it downloads (media.wavstream).
            self._streams[name] = stream = WavStream() if self.decode_file is audio_io.decode else None
            try:
                files[name] = await self._download(url, request_id, name, len(urls), stream)
            except BaseException:
                self._streams.pop(name, None)  # its half-filled waveform is not kept alive by an error
                raise
        return files

    async def _download(self, url: str, request_id: str, name: str, count: int, stream=None) -> Path:
        destination = self.options.output_path() / _file_name(self.endpoint, request_id, name, url)
        what = f"Downloading {name}" if count > 1 else "Downloading"
        self._say(what)

        def report(done: int, total: Optional[int]) -> None:
            if total:
                self._say(f"{what} {done * 100 // total}%")

        try:
            kept = await self._interruptible(self.gateway.download(url, destination, report, stream))
            reuse.served(url)
            return kept
        except Exception as exc:  # noqa: BLE001 - turned into a specific message
            if comfy.is_interrupt(exc):
                raise
            if isinstance(exc, NotDownloadable):
                raise RequestFailed(
                    f"{self.endpoint}: the result of request {request_id} cannot be kept: {exc}. The request is "
                    "paid for and stays in the journal; change the seed for a new (paid) take.") from None
            # 404/410: fal's copy is gone for good (what a re-run of a deleted kept file must know).
            failure = FileExpired if http_status(exc) in (404, 410) else RequestFailed
            raise failure(
                f"{self.endpoint}: the result of request {request_id} could not be downloaded "
                f"({type(exc).__name__}: {exc}). Run the node again to retry the download (no new charge)."
            ) from None

    async def _decode(self, files: Dict[str, Path], urls: Optional[Dict[str, str]] = None) -> Dict[str, dict]:
        """Decode every kept file, in worker threads: other nodes' and takes' downloads go on meanwhile."""
        async def one(name: str, path: Path) -> dict:
            stream = self._streams.pop(name, None)
            decode = self.decode_file if stream is None else (
                lambda kept: stream.result(kept) or self.decode_file(kept))  # the file only if the stream fell short
            try:
                url = (urls or {}).get(name) if self.decode_file is audio_io.decode else None
                return await asyncio.to_thread(reuse.decode, decode, path, url, stream and stream.file_hash(path))
            except DecodeLimitExceeded as exc:
                what = "file" if len(files) == 1 else f"'{name}' file"
                raise RequestFailed(f"{self.endpoint}: the returned {what} was not decoded: {exc}. It is kept at "
                                    f"{path}.") from None
            except DecodeError as exc:
                what = "file" if len(files) == 1 else f"'{name}' file"
                raise RequestFailed(
                    f"{self.endpoint}: the returned {what} could not be decoded as audio ({exc}). "
                    f"It is kept at {path}."
                ) from None

        decoded = await asyncio.gather(*(one(name, path) for name, path in files.items()))
        return dict(zip(files, decoded))
