"""Keeping a request's result: every file the node keeps, downloaded to the output folder (a
WAV decoded while it downloads), a kept file reused as it is, and each decoded into AUDIO in
worker threads while other nodes' downloads go on.
"""

import asyncio
from pathlib import Path
from typing import Callable, Dict, Optional

from ..core import comfy
from ..core.errors import RequestFailed
from ..media import audio as audio_io
from ..media import reuse
from ..media.limits import DecodeError, DecodeLimitExceeded
from ..media.wavstream import WavStream
from ..transport.gateway import NotDownloadable, http_status
from .results import Locator
from .results import file_name as _file_name
from .waiting import interruptible


class FileExpired(RequestFailed):
    """The file host answered 404/410 for a result file: fal's copy is gone for good."""


class Keeper:
    """The result files of one node's request (`locate` names them in fal's response)."""

    def __init__(self, endpoint: str, gateway, options, locate: Locator, decode_file: Callable,
                 say: Callable[[str], None]):
        self.endpoint, self.gateway, self.options = endpoint, gateway, options
        self.locate, self.decode_file, self.say = locate, decode_file, say
        # Result files being decoded while they download (output name -> WavStream), until decoded.
        self._streams: Dict[str, Optional[WavStream]] = {}

    def decoded_while_downloading(self, files: Dict[str, Path]) -> bool:
        return all(getattr(self._streams.get(name), "ready", False) for name in files)

    async def keep(self, response: dict, request_id: str, kept: Optional[Dict[str, Path]] = None) -> Dict[str, Path]:
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
                files[name] = await self.download(url, request_id, name, len(urls), stream)
            except BaseException:
                self._streams.pop(name, None)  # its half-filled waveform is not kept alive by an error
                raise
        return files

    async def download(self, url: str, request_id: str, name: str, count: int, stream=None) -> Path:
        destination = self.options.output_path() / _file_name(self.endpoint, request_id, name, url)
        what = f"Downloading {name}" if count > 1 else "Downloading"
        self.say(what)

        def report(done: int, total: Optional[int]) -> None:
            if total:
                self.say(f"{what} {done * 100 // total}%")

        try:
            kept = await interruptible(self.gateway.download(url, destination, report, stream))
            reuse.served(url)
            return kept
        except Exception as exc:  # noqa: BLE001 - turned into a specific message
            if comfy.is_interrupt(exc):
                raise
            if isinstance(exc, NotDownloadable):
                raise RequestFailed(
                    f"{self.endpoint}: the result of request {request_id} cannot be kept: {exc}. The request is "
                    "paid for and stays in the journal: running the node again with the same inputs tries again at no new "
                    "charge (for example once the file's server allows it); a new seed pays for a new take.") from None
            # 404/410: fal's copy is gone for good (what a re-run of a deleted kept file must know).
            failure = FileExpired if http_status(exc) in (404, 410) else RequestFailed
            raise failure(
                f"{self.endpoint}: the result of request {request_id} could not be downloaded "
                f"({type(exc).__name__}: {exc}). Run the node again to retry the download (no new charge)."
            ) from None

    async def decode(self, files: Dict[str, Path], response: dict) -> Dict[str, dict]:
        """Decode every kept file of `response`, in worker threads: other nodes' and takes' downloads
        go on meanwhile."""
        urls = self.locate(response) if self.decode_file is audio_io.decode else {}  # chaining origins

        async def one(name: str, path: Path) -> dict:
            stream = self._streams.pop(name, None)
            decode = self.decode_file if stream is None else (
                lambda kept: stream.result(kept) or self.decode_file(kept))  # the file only if the stream fell short
            try:
                return await asyncio.to_thread(reuse.decode, decode, path, urls.get(name),
                                               stream and stream.file_hash(path))
            except (DecodeLimitExceeded, DecodeError) as exc:
                what = "file" if len(files) == 1 else f"'{name}' file"
                how = (f"was not decoded: {exc}" if isinstance(exc, DecodeLimitExceeded)
                       else f"could not be decoded as audio ({exc})")
                raise RequestFailed(f"{self.endpoint}: the returned {what} {how}. It is kept at {path}.") from None

        decoded = await asyncio.gather(*(one(name, path) for name, path in files.items()))
        return dict(zip(files, decoded))
