"""The fal transport: upload, submit, status, cancel, result and download.

Built on fal_client's AsyncClient (auth, URLs, its own retries of 429/ingress errors),
but each step is a separate call so the caller drives polling, interrupts and timeouts:
fal_client's subscribe() would own the wait and leak its polling thread on timeout.
"""

import asyncio
import os
import weakref
from pathlib import Path
from typing import Optional

from .log import get_logger, guard_third_party_loggers

log = get_logger("gateway")

# Transport failures while polling/fetching are retried this often (fal_client already
# retries each HTTP call itself; this covers what it gives up on, e.g. a dropped stream).
TRANSIENT_RETRIES = 4
DOWNLOAD_CHUNK = 1 << 20

_clients: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _client(key: str):
    """One fal_client.AsyncClient per event loop and key: httpx pools are loop-bound."""
    import fal_client

    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    if key not in per_loop:
        guard_third_party_loggers()
        per_loop[key] = fal_client.AsyncClient(key=key)
    return per_loop[key]


def is_transient(exc: BaseException) -> bool:
    """Connection drops and timeouts are worth retrying; HTTP answers (4xx, 5xx) are not."""
    import httpx

    return isinstance(exc, (httpx.TransportError, httpx.StreamError))


def http_status(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


class Gateway:
    def __init__(self, key: str):
        self.key = key

    async def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        return await _client(self.key).upload(data, content_type, file_name)

    async def submit(self, endpoint: str, arguments: dict) -> str:
        handle = await _client(self.key).submit(endpoint, arguments)
        return handle.request_id

    async def _handle(self, endpoint: str, request_id: str):
        return await _client(self.key).get_handle(endpoint, request_id)

    async def status(self, endpoint: str, request_id: str):
        return await (await self._handle(endpoint, request_id)).status(with_logs=True)

    async def result(self, endpoint: str, request_id: str) -> dict:
        # The handle's get() checks the status once more (it is COMPLETED by now) and
        # then fetches the response, with fal_client's own retry policy.
        return await (await self._handle(endpoint, request_id)).get()

    async def cancel(self, endpoint: str, request_id: str) -> None:
        await (await self._handle(endpoint, request_id)).cancel()

    async def download(self, url: str, destination: Path, on_progress=None) -> Path:
        """Stream a result file to disk, resuming after drops; never keep a short file.

        The fal key is not sent: result URLs are public and may point at any host.
        """
        import httpx

        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        partial.unlink(missing_ok=True)
        if url.startswith("data:"):
            from .data_uri import decode_data_uri

            partial.write_bytes(decode_data_uri(url))
            os.replace(partial, destination)
            return destination
        attempt = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=True) as http:
            while True:
                have = partial.stat().st_size if partial.exists() else 0
                headers = {"Range": f"bytes={have}-"} if have else {}
                try:
                    async with http.stream("GET", url, headers=headers) as response:
                        if response.status_code == 416 and have:
                            break  # the server says we already have every byte
                        response.raise_for_status()
                        if have and response.status_code != 206:
                            have = 0  # the server ignored the range: start over
                        expected = response.headers.get("content-length")
                        expected = have + int(expected) if expected is not None else None
                        with open(partial, "ab" if have else "wb") as out:
                            async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                                out.write(chunk)
                                if on_progress is not None:
                                    on_progress(out.tell(), expected)
                        size = partial.stat().st_size
                        if expected is not None and size < expected:
                            raise httpx.RemoteProtocolError(f"download ended at {size} of {expected} bytes")
                        break
                except (httpx.TransportError, httpx.StreamError) as exc:
                    attempt += 1
                    if attempt > TRANSIENT_RETRIES:
                        raise
                    log.warning("Download of a result file was interrupted (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
        os.replace(partial, destination)
        return destination
