"""The fal transport: upload, submit, status (polled or streamed), cancel, result, download.

Each step is a separate call so the caller drives the wait, interrupts and timeouts
(fal_client's subscribe() would own the wait and leak its polling thread on timeout).
Upload, status and cancel use fal_client's AsyncClient (auth, URLs, its retries of 429
and ingress errors); submit, the status stream and the result fetch are plain httpx
calls, because fal_client's versions retry a submit that may have gone through, poll
again before fetching, or have no stream at all.
"""

import asyncio
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from ..core.aio import per_loop
from ..core.log import get_logger, guard_third_party_loggers
from ..core.tls import ssl_context
from ..media import fetch, netguard, reuse
from ..media.data_uri import decode_data_uri
from . import retry

log = get_logger("gateway")

# A dropped download is resumed this often before giving up.
TRANSIENT_RETRIES = 4
DOWNLOAD_CHUNK = 1 << 20
# First pause before a failed download is tried again (doubling each time).
DOWNLOAD_BACKOFF = 0.2
# Largest result file taken from outside fal's file hosts: the longest audio the pack decodes (20 minutes
# of 48 kHz stereo) is 461 MB as a 32-bit WAV.
OUTSIDE_MAX_BYTES = 500_000_000
# Download progress is reported at most this often: each report wakes the caller's event loop from
# the network thread, and a wake per block (~1.5 ms each, the two threads trading the GIL) made a
# 6 MB download a third slower; a short download reports nothing.
PROGRESS_EVERY = 0.25

_clients: dict = {}
_http_clients: dict = {}
# The network loop's clients, for one environment at a time (see network_clients).
_net_clients: dict = {}
_net_lock = threading.Lock()
_net: dict = {}
_closing: set = set()


# What an httpx client reads from the environment when it is built: proxies and trusted CAs.
_CLIENT_ENVIRONMENT = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                       "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


def network_loop() -> asyncio.AbstractEventLoop:
    """The process-wide event loop (in its own daemon thread) that owns the submit, result and
    download connections.

    ComfyUI runs every prompt in a new event loop, and an httpx client belongs to the loop that
    built it: with per-loop clients every prompt opened new proxy tunnels and TLS connections to
    the queue and the file host. Calls made through `on_network` keep them alive across prompts
    (within httpx's keep-alive expiry). Started on first use, again after a fork.
    """
    with _net_lock:
        loop, thread = _net.get("loop"), _net.get("thread")
        if loop is None or loop.is_closed() or thread is None or not thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="fal-audio-network", daemon=True)
            thread.start()
            _net.update(loop=loop, thread=thread)
            _net_clients.clear()
        return loop


async def on_network(coro):
    """Await `coro`, run on the network loop, from the caller's loop, as if awaited directly.

    Cancelling the caller cancels the network-side task, and the caller's await ends only once
    that task has ended (its cleanup done), as with a direct await; the CancelledError then goes
    on. A step the caller shields (core.aio.finish) is never cancelled, so it runs to its end.
    An exception of `coro` is raised as is.
    """
    caller = asyncio.get_running_loop()
    net = network_loop()
    if caller is net:
        return await coro
    ended = caller.create_future()
    started: list = []

    def report(task) -> None:
        def settle() -> None:
            if not ended.done():
                ended.set_result(task)
        try:
            caller.call_soon_threadsafe(settle)
        except RuntimeError:  # the caller's loop is closed: nobody waits for this any more
            pass

    def start() -> None:
        task = net.create_task(coro)
        started.append(task)
        task.add_done_callback(report)

    net.call_soon_threadsafe(start)
    cancelled = False
    while True:
        try:
            task = await asyncio.shield(ended)
            break
        except asyncio.CancelledError:
            if not cancelled:  # start() runs before this (FIFO), so the task exists by then
                cancelled = True
                net.call_soon_threadsafe(lambda: started[0].cancel())
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


def _in_caller(callback):
    """`callback` (e.g. a progress report) called from the network loop, run in the caller's loop."""
    if callback is None:
        return None
    caller = asyncio.get_running_loop()

    def hop(*args) -> None:
        try:
            caller.call_soon_threadsafe(lambda: callback(*args))
        except RuntimeError:
            pass
    return hop


def network_clients() -> dict:
    """The network loop's clients for the current environment. Clients built under another
    environment (tests start an emulator with a new proxy each time) are closed."""
    where = tuple(os.environ.get(name) for name in _CLIENT_ENVIRONMENT)
    for stale in [other for other in _net_clients if other != where]:
        for client in _net_clients.pop(stale).values():
            closing = asyncio.get_running_loop().create_task(client.aclose())
            _closing.add(closing)  # a task nobody references may be collected before it ends
            closing.add_done_callback(_closing.discard)
    return _net_clients.setdefault(where, {})


def _client(key: str):
    """One fal_client.AsyncClient per event loop and key."""
    import fal_client

    clients = per_loop(_clients)
    if key not in clients:
        guard_third_party_loggers()
        clients[key] = fal_client.AsyncClient(key=key)
    return clients[key]


SUBMIT_ATTEMPTS = 6


def _http(key: str = "", lane: str = ""):
    """One httpx client per event loop, key and lane (connections are reused across requests).
    key "" = no Authorization header, for downloads: result URLs are public and may point
    at any host. lane "stream": the status streams' own client, so that a stream (which fal
    closes when the request completes) never takes the submit's idle connection: the result
    fetch right after completion reuses it instead of opening a new TLS connection. lane
    "public": downloads from outside fal's file hosts, held to public addresses (media.netguard)."""
    import httpx

    on_net = _net.get("loop") is asyncio.get_running_loop()
    clients = network_clients() if on_net else per_loop(_http_clients)
    if (key, lane) not in clients:
        headers = {"Authorization": f"Key {key}"} if key else {}
        clients[(key, lane)] = httpx.AsyncClient(headers=headers, follow_redirects=not key, verify=ssl_context(),
                                                 timeout=httpx.Timeout(120.0, connect=15.0))
        if lane == "public":
            netguard.guard(clients[(key, lane)])
    return clients[(key, lane)]


def queue_url(endpoint: str, request_id: str) -> str:
    """The request's URL on fal's queue (its status is at + "/status"), as fal_client builds
    it, without building fal_client's own HTTP client (another ~50 ms per event loop)."""
    from fal_client.client import QUEUE_URL_FORMAT, AppId

    app = AppId.from_endpoint_id(endpoint)
    prefix = f"{app.namespace}/" if app.namespace else ""
    return f"{QUEUE_URL_FORMAT}{prefix}{app.owner}/{app.alias}/requests/{request_id}"


def _status(data: dict):
    """A status answer (polled or streamed) as fal_client's Queued/InProgress/Completed."""
    import fal_client

    if data.get("status") == "IN_QUEUE":
        return fal_client.Queued(position=data.get("queue_position", 0))
    if data.get("status") == "IN_PROGRESS":
        return fal_client.InProgress(logs=data.get("logs"))
    if data.get("status") == "COMPLETED":
        return fal_client.Completed(logs=data.get("logs"), metrics=data.get("metrics", {}),
                                    error=data.get("error"), error_type=data.get("error_type"))
    raise ValueError(f"unknown status {data.get('status')!r}")


def _not_accepted(response) -> bool:
    """Answers that prove fal did not enqueue the request: rate limits and ingress errors."""
    if response.status_code in (408, 429):
        return True
    return (response.status_code in (502, 503, 504) and "x-fal-request-id" not in response.headers
            and "nginx" in response.text)


class SubmitUncertain(Exception):
    """The connection broke after the request was sent: fal may or may not have it."""


# fal's request ids are UUIDs; accept that alphabet only, so an id can never steer a URL or a file path.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,127}")


def valid_request_id(request_id) -> bool:
    return isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id) is not None


class NotDownloadable(ValueError):
    """A result file that no retry can fetch: not a web URL, or empty."""


class HTTPError(Exception):
    """An HTTP error answer from fal, shaped like fal_client's (status_code, message)."""

    def __init__(self, status_code: int, message):
        super().__init__(str(message))
        self.status_code, self.message = status_code, message

    @classmethod
    def from_response(cls, response) -> "HTTPError":
        try:
            body = response.json()
        except ValueError:
            body = None
        message = body.get("detail", response.text) if isinstance(body, dict) else response.text
        return cls(response.status_code, message)


def is_transient(exc: BaseException) -> bool:
    """Connection drops and timeouts are worth retrying; HTTP answers (4xx, 5xx) are not."""
    import httpx

    return isinstance(exc, (httpx.TransportError, httpx.StreamError))


def http_status(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


def may_have_taken(exc: BaseException) -> Optional[str]:
    """Why a failed submit may still have reached fal (then it may run, and bill), or None when fal did not take it."""
    status = http_status(exc)
    if isinstance(exc, SubmitUncertain):
        return str(exc)
    if (status or 0) >= 500 and not getattr(exc, "not_taken", False):
        return f"fal.ai answered the submit with HTTP {status}, which does not show whether it took the request"
    return None


class Gateway:
    def __init__(self, key: str):
        self.key = key

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        return await _client(self.key).upload(data, content_type, file_name)

    async def submit(self, endpoint: str, arguments: dict) -> str:
        return await on_network(self._submit(endpoint, arguments))

    async def _submit(self, endpoint: str, arguments: dict) -> str:
        """POST the request to fal's queue and return its request id.

        Not fal_client's submit(): that one retries every transport error, including a
        connection lost after the request went out, which can enqueue (and bill) the
        request twice. Here only failures that prove fal did not take the request are
        retried; anything else raises SubmitUncertain and is never resubmitted silently.
        """
        import httpx
        from fal_client.client import QUEUE_URL_FORMAT

        http = _http(self.key)

        async def send() -> str:
            try:
                response = await http.post(QUEUE_URL_FORMAT + endpoint, json=arguments)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError):
                raise  # never sent: retried
            except httpx.TransportError as exc:
                raise SubmitUncertain(
                    f"the connection to fal.ai broke right after the request was sent ({type(exc).__name__})") from None
            if not response.is_success:
                error = HTTPError.from_response(response)
                error.not_taken = _not_accepted(response)  # retried only then
                raise error
            request_id = response.json().get("request_id")
            if not valid_request_id(request_id):
                raise SubmitUncertain(
                    f"fal.ai answered with a request id the pack does not accept ({str(request_id)[:80]!r}), "
                    "so it was not followed")
            return request_id

        return await retry.retrying(
            send, lambda exc: isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError))
            or getattr(exc, "not_taken", False), f"{endpoint}: submit", SUBMIT_ATTEMPTS, 0.25, 8.0)

    async def _handle(self, endpoint: str, request_id: str):
        return await _client(self.key).get_handle(endpoint, request_id)

    async def status(self, endpoint: str, request_id: str):
        return await (await self._handle(endpoint, request_id)).status(with_logs=True)

    async def status_events(self, endpoint: str, request_id: str):
        """Yield each status fal pushes on its server-sent event stream, up to COMPLETED.
        Completion is seen at once, with one open request instead of polling."""
        import json

        import httpx

        timeout = httpx.Timeout(None, connect=15.0)  # a queue wait can be silent for minutes
        async with _http(self.key, "stream").stream("GET", queue_url(endpoint, request_id) + "/status/stream",
                                          params={"logs": 1},
                                          timeout=timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                raise HTTPError.from_response(response)
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield _status(json.loads(line[5:]))

    async def result(self, endpoint: str, request_id: str) -> dict:
        return await on_network(self._result(endpoint, request_id))

    async def _result(self, endpoint: str, request_id: str) -> dict:
        """GET the finished request's response (not handle.get(), which polls the status again)."""
        response = await _http(self.key).get(queue_url(endpoint, request_id))
        if not response.is_success:
            raise HTTPError.from_response(response)
        return response.json()

    async def cancel(self, endpoint: str, request_id: str) -> None:
        await (await self._handle(endpoint, request_id)).cancel()

    async def probe(self, url: str) -> bool:
        return await on_network(self._probe(url))

    async def _probe(self, url: str) -> bool:
        """Does the file server still serve `url`? One ranged GET of its first byte, without the
        fal key (file URLs are public); any failure counts as no."""
        try:
            async with _http().stream("GET", url, headers={"Range": "bytes=0-0"}) as response:
                return response.status_code in (200, 206)
        except Exception as exc:  # noqa: BLE001 - a drop, a timeout, a bad URL: upload instead
            log.info("Probing a result URL failed (%s); uploading the file instead", type(exc).__name__)
            return False

    async def download(self, url: str, destination: Path, on_progress=None, stream=None) -> Path:
        """Stream a result file to disk, resuming after drops; never keep a short file.

        The fal key is not sent: result URLs are public and may point at any host. A file from
        outside fal's file hosts is held to Load Audio from URL's rules: public addresses only
        (every redirect hop, and the address connected to), at most OUTSIDE_MAX_BYTES, asked for
        uncompressed and decoded a piece at a time if compressed anyway. `stream` (a
        media.wavstream.WavStream) is fed every block written, to decode while downloading.
        """
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ("https", "http", "data"):
            raise NotDownloadable(f"its URL is not a web address ({url[:60]!r}); only https and data: URLs are "
                                  "fetched")
        destination.parent.mkdir(parents=True, exist_ok=True)
        # A private partial file: two followers of one request (two identical nodes) may
        # download at once; each renames a whole file into place atomically.
        partial = destination.with_name(f"{destination.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            if url[:5].lower() == "data:":  # RFC 2397: the scheme is case-insensitive
                partial.write_bytes(decode_data_uri(url))
            else:
                await on_network(_fetch(url, partial, _in_caller(on_progress), stream))
            if partial.stat().st_size == 0:
                raise NotDownloadable("the file is empty (0 bytes)")
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)
        reuse.returned(destination, url)
        return destination


async def _fetch(url: str, partial: Path, on_progress, stream=None) -> None:
    """GET url into partial, resuming with a Range request after a drop; a short body is an error.
    `stream` is told where each response starts and fed every block written."""
    import httpx

    fal_file = netguard.fal_file(url)
    http = _http(lane="" if fal_file else "public")
    shown = fetch.display_url(url)
    attempt = 1
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        compressed = False
        try:
            async with http.stream("GET", url, headers=headers if fal_file else {**headers, **fetch.IDENTITY}) \
                    as response:
                if response.status_code == 416 and have:
                    return  # the server says we already have every byte
                if response.status_code >= 400:
                    await response.aread()
                    raise HTTPError.from_response(response)
                if have and response.status_code != 206:
                    have = 0  # the server ignored the range: start over
                compressed = not fal_file and response.headers.get("content-encoding", "identity").lower() != "identity"
                expected = response.headers.get("content-length")
                expected = have + int(expected) if expected is not None and not compressed else None
                if not fal_file and (expected or 0) > OUTSIDE_MAX_BYTES:
                    raise NotDownloadable(f"{shown} is {expected / 1e6:.3g} MB, more than the "
                                          f"{OUTSIDE_MAX_BYTES / 1e6:.3g} MB taken from outside fal's file hosts")
                if stream is not None:
                    stream.start(have, expected)
                reported = time.monotonic()
                too_large = lambda: NotDownloadable(  # noqa: E731
                    f"{shown} is larger than the {OUTSIDE_MAX_BYTES / 1e6:.3g} MB taken from outside fal's file "
                    "hosts; the download was stopped")
                chunks = response.aiter_bytes(DOWNLOAD_CHUNK) if fal_file else fetch.body(
                    response, OUTSIDE_MAX_BYTES - have, too_large)
                with open(partial, "ab" if have else "wb") as out:
                    async for chunk in chunks:
                        out.write(chunk)
                        if stream is not None:
                            stream.feed(chunk)
                        if on_progress is not None and time.monotonic() - reported >= PROGRESS_EVERY:
                            reported = time.monotonic()
                            on_progress(out.tell(), expected)
                size = partial.stat().st_size
                if expected is not None and size < expected:
                    raise httpx.RemoteProtocolError(f"download ended at {size} of {expected} bytes")
                return
        except netguard.Blocked as exc:
            hop = f", which redirects to {fetch.display_url(exc.url)}" if exc.url and exc.url != url else ""
            raise NotDownloadable(f"its file is at {shown}{hop}, and {exc}: result files from outside fal's file "
                                  f"hosts are fetched only from public addresses (whoever runs the server can allow "
                                  f"private ones with {netguard.ALLOW_ENV}=1)") from None
        except fetch.Undecodable as exc:
            raise NotDownloadable(f"{shown} {exc}") from None
        except (httpx.TransportError, httpx.StreamError, HTTPError) as exc:
            # Drops and the file host's own trouble (5xx, 429) pass; any other answer is final.
            status = http_status(exc)
            if status is not None and status < 500 and status != 429:
                raise
            if compressed:  # a compressed answer cannot be resumed in the middle: start over
                partial.unlink(missing_ok=True)
            attempt = await retry.again(exc, attempt, TRANSIENT_RETRIES + 1, DOWNLOAD_BACKOFF, 5.0,
                                        "Download of a result file")
