"""One paid fal request from start to AUDIO, as a story: claim it in the journal (or reuse a kept
result, or resume a request still with fal), submit it, follow it on fal, keep its result.
Waiting and following live in jobs/waiting.py, uploads in jobs/uploads.py, keeping and
decoding the result in jobs/keep.py, the books in money/journal.py.
"""

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from ..core import comfy, errors
from ..core.aio import finish, per_loop
from ..core.errors import FalAudioError, RequestFailed
from ..core.log import get_logger
from ..media import audio as audio_io
from ..money import ledger
from ..money.journal import COMPLETED, SUBMITTED, UNCERTAIN, Booked
from ..money.journal import identity as request_identity
from ..money.owner import OWNER
from ..money.pricing import returned_seconds
from ..transport import credentials
from ..transport.gateway import Gateway, http_status, may_have_taken
from ..transport.slots import SLOTS, waiting_text
from . import live, uploads, waiting
from .keep import FileExpired, Keeper
from .options import CallOptions
from .results import Locator, single
from .uploads import Upload  # noqa: F401 - the nodes build their input files with it
from .waiting import Follow, ResultRefused, UnknownRequest, fetch_result, interruptible, sleep

log = get_logger("job")

CANCEL_TIMEOUT = 10.0
# How often a node waiting for another ComfyUI process's submit of the same request looks again.
OTHER_OWNER_CHECK = 0.5
# How long a node stopping (error, Cancel) waits for the journal to release its claim or retire a
# cancelled request; the write is still made, in order, if another program holds the lock longer.
RELEASE_WAIT = 0.5
CHECK_REQUESTS = "check your requests at https://fal.ai/dashboard"

# Per prompt (event loop): identity -> message of a submit that may have reached fal. An identical
# node of the same prompt must not send it again; a later prompt (a re-run) submits anew.
_uncertain: dict = {}


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
        self.endpoint, self.request, self.options, self.progress, self.label = endpoint, request, options, progress, label
        # Which files of the response are kept (output name -> URL); a string names the one file field.
        self.locate = single(result_files) if isinstance(result_files, str) else result_files
        # How a kept file becomes AUDIO: audio.decode, or a node's decoder for headerless formats.
        self.decode_file = decode or audio_io.decode
        # take_key gives models without a seed a new identity per seed/take.
        self.identity = request_identity(endpoint, {"arguments": _identity_view(request), "take": take_key})
        self.started = time.monotonic()
        self.gateway: Optional[Gateway] = None
        self.keeper: Optional[Keeper] = None
        # Cost: the estimate (a pricing.Charge, set before the run) and what this request cost (USD, once known).
        self.charge = None
        self.cost: Optional[float] = None
        # The request's ledger row as the journal's last step left it (the run's final status reads it).
        self.booked: Optional[Booked] = None
        # How long a 404 of the status is asked again: only right after this job's own submit.
        self._grace = 0.0
        # For the editor's fal panel (jobs/live.py): fal's id of the request followed, why a cancel stops it.
        self.request_id: Optional[str] = None
        self.cancel_why = "cancelled by the user"

    @functools.cached_property
    def book(self):
        """This request's journal, chosen once: the books of the fal Client's profile (CallOptions.books)."""
        return self.options.books()

    def _say(self, text: str) -> None:
        self.progress.text(f"{self.label}{text}")
        live.said(self, text)

    async def _book(self, step: Callable, *args, **options):
        """Run a journal step of this request; keep the ledger row it booked."""
        result = await self.book.call(step, *args, **options)
        if isinstance(result, Booked):
            self.booked = result
        return result

    async def _possibly_billed(self, why: str, detail: str) -> RequestFailed:
        """Book a request fal may have taken (and bill) as possibly billed; the error that says so."""
        estimate = self.charge.usd if self.charge is not None else None
        message = (f"{self.endpoint}: {why}. {ledger.possibly_billed(estimate)} It was not resent automatically; "
                   f"{CHECK_REQUESTS} and run the node again to submit anew.")
        await self._book(self.book.uncertain, self.identity, detail, message, per_loop(_uncertain), paid=True)
        return RequestFailed(message)

    async def run(self) -> JobResult:
        live.started(self)
        try:
            return await self._run()
        except asyncio.CancelledError as exc:
            raise live.stopped(self, exc) from None  # the fal panel's Cancel ends the run with its own error
        finally:
            SLOTS.release(self)  # the request slot taken before the submit, if any
            live.ended(self)

    async def _run(self) -> JobResult:
        """One paid request: claim it in the journal, submit it, follow it, keep its result."""
        self.gateway = Gateway(credentials.resolve_key(self.options.profile))
        self.keeper = Keeper(self.endpoint, self.gateway, self.options, self.locate, self.decode_file, self._say)
        earlier = await self._claim()
        if earlier is not None:
            return earlier
        request_id = await self._submit()
        try:
            return await self._follow(request_id)
        except UnknownRequest:
            # Still unknown after the grace time: it may yet run (and bill), so it is cancelled and counted.
            with contextlib.suppress(Exception):  # not confirmed: counted as possibly billed all the same
                await self._send_cancel(request_id, "unknown to fal")
            raise await self._possibly_billed(
                f"fal.ai does not know request {request_id}, which it had just accepted (its status answered 404 "
                f"for {self._grace:g} s); a cancel was sent in case it runs after all", "unknown to fal") from None

    async def _claim(self) -> Optional[JobResult]:
        """Claim the right to submit (None), reserving the estimate (refused past today's limit), or
        return the result of the same request paid earlier: kept (reused), or still with fal
        (resumed). Waits while someone else is submitting it."""
        book = self.book
        while True:
            try:  # a claim made after this task stopped waiting (Cancel) is released again, in order
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
            if entry.state == COMPLETED:
                kept = await self._reuse(entry)
                if kept is not None:
                    return kept
                await book.call(book.forget, self.identity)
                continue
            if entry.state == SUBMITTED:
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
                await sleep(waiting.INTERRUPT_CHECK)  # another task of ours is submitting it
            else:
                self._say("Waiting: another ComfyUI process is submitting the same request")
                await sleep(OTHER_OWNER_CHECK)

    async def _submit(self) -> str:
        """Upload the inputs and submit; return fal's request id, recorded in the journal. From
        the moment fal may have the request it is never lost: followed, cancelled, or booked."""
        book = self.book
        try:
            arguments = await uploads.resolve(self.request, self.gateway, self.endpoint, self._say, book)
            await interruptible(SLOTS.take(self, self.options.max_concurrent_requests,
                                           lambda *state: self._say(waiting_text(*state))))
            self._say("Submitting")
            # From here a crash leaves a claim that may be on fal: the next run says so instead of resending.
            await book.call(book.sending, self.identity)
            # Not cut short by Cancel: once sent, fal may bill it, so we must learn its id to cancel it.
            request_id, cancelled = await finish(self.gateway.submit(self.endpoint, arguments))
        except BaseException as exc:
            why = may_have_taken(exc)
            if why:
                raise await self._possibly_billed(f"{why}, so it may or may not be running (and billed) on fal",
                                                  why) from None
            await self._book(book.release, self.identity, wait=RELEASE_WAIT)
            if isinstance(exc, Exception) and not isinstance(exc, FalAudioError) and not comfy.is_interrupt(exc):
                raise errors.from_fal(self.endpoint, exc, credentials.how_to_set(), submitting=True) from None
            raise
        log.info("%s: submitted request %s", self.endpoint, request_id)
        self._grace = waiting.UNKNOWN_GRACE
        try:
            # Paid from now on: written whatever happens, even if another program holds the journal's lock.
            await self._book(book.submitted, self.identity, request_id, paid=True)
        except BaseException:
            # Cancel while that write waits for the lock: it is still made (in order), and the request
            # is stopped on fal meanwhile rather than left billing.
            await self._cancel(request_id, self.cancel_why)
            raise
        if cancelled:  # Cancel came while fal was answering the submit: stop it now that we know its id
            await self._cancel(request_id, self.cancel_why)
            raise asyncio.CancelledError
        return request_id

    async def _reuse(self, entry) -> Optional[JobResult]:
        """The kept result of an earlier request; None only if a kept file was deleted and fal
        confirms its own copy is gone (404/410). Any other trouble (a 5xx, a drop, Cancel) raises
        and leaves the entry as it is: the next run tries again without paying."""
        kept = {name: Path(path) for name, path in (entry.files or {}).items()}
        try:
            files = await self.keeper.keep(entry.response, entry.request_id, kept)
        except FileExpired:
            log.warning("%s: kept result of request %s was deleted and fal's copy has expired; paying for a new take",
                        self.endpoint, entry.request_id)
            self._say("the kept file was deleted and fal's copy has expired: paying for a new take")
            return None
        if files != kept:
            await self.book.call(self.book.completed, self.identity, entry.response, files, paid=True)
        self._say("Reused the kept result (no new charge)")
        await self._book(self.book.reused, self.identity, self.endpoint, entry.request_id)
        self.cost = 0.0
        return JobResult.of(entry.response, files, await self.keeper.decode(files, entry.response), entry.request_id,
                            reused=True)

    async def _follow(self, request_id: str) -> JobResult:
        """Follow the request until fal completes it, fetch its result, keep and decode its files."""
        self.request_id = request_id
        try:
            done = await Follow(self.gateway, self.endpoint, request_id, self._grace).until_done(
                self.options, self.started, self._say, self.progress, lambda why: self._cancel(request_id, why))
        except BaseException as exc:
            if comfy.is_interrupt(exc) or isinstance(exc, asyncio.CancelledError):
                await self._cancel(request_id, self.cancel_why)
            raise
        if done.error:
            await self._book(self.book.failed, self.identity, done.error, paid=True)
            raise RequestFailed(f"{self.endpoint} failed on fal.ai: {done.error}")
        SLOTS.release(self)  # done on fal: the next request may go while this one's result is fetched and kept
        try:
            response = await fetch_result(self.gateway, self.endpoint, request_id)
        except ResultRefused as refused:  # fal says the request itself failed
            await self._book(self.book.failed, self.identity, refused.detail, paid=True)
            raise refused.error from None
        files = await self.keeper.keep(response, request_id)
        if not self.keeper.decoded_while_downloading(files):
            self._say("Decoding")
        # The decode starts in worker threads while the journal records the result (no wait in between).
        decoding = asyncio.ensure_future(self.keeper.decode(files, response))
        try:
            await self._book(self.book.completed, self.identity, response, files, paid=True)
        except BaseException:
            decoding.cancel()
            await asyncio.gather(decoding, return_exceptions=True)
            raise
        result = JobResult.of(response, files, await decoding, request_id, reused=False)
        self.cost = await self.book.call(self.book.settle, self.identity, self.charge, returned_seconds(result.audio))
        if self.booked is not None:
            self.booked = self.booked._replace(cost=self.cost)
        return result

    async def _send_cancel(self, request_id: str, why: str) -> None:
        """Ask fal to cancel, even while we are being cancelled; raises if fal does not confirm in time."""
        self._say(f"Cancelling ({why})")
        await asyncio.wait_for(asyncio.shield(self.gateway.cancel(self.endpoint, request_id)), CANCEL_TIMEOUT)

    async def _cancel(self, request_id: str, why: str) -> str:
        """Tell fal to stop (and stop billing), even while we are being cancelled; returns what happened,
        as a sentence for the user. Only a confirmed cancel retires the journal entry: if fal answers that
        the request already completed (or the answer is lost), the entry stays 'submitted' so the next run
        with the same inputs fetches the result for free."""
        try:
            await self._send_cancel(request_id, why)
        except Exception as exc:  # noqa: BLE001 - e.g. ALREADY_COMPLETED, or no answer
            reason = http_status(exc) or type(exc).__name__
            log.warning("%s: cancel of request %s was not confirmed (%s); the next run will pick it up",
                        self.endpoint, request_id, reason)
            return (f"Cancelling request {request_id} was not confirmed by fal ({reason}): it may still run and be "
                    "billed; the next run with the same inputs picks up its result without a new charge.")
        # Retired (never reused); not waited for long: the write is made in order even if the lock is held.
        await self._book(self.book.failed, self.identity, why, paid=True, wait=RELEASE_WAIT)
        log.info("%s: cancelled request %s (%s)", self.endpoint, request_id, why)
        return f"Request {request_id} was cancelled on fal."
