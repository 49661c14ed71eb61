"""A node's input files, uploaded to fal storage only when a request is really sent: once per
content (several takes of one clip share one upload, and an upload is reused for 12 hours), and
not at all for a fal result passed on unchanged (sent by fal's own URL, media.reuse).
"""

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..core import comfy
from ..core.aio import per_loop
from ..media import audio as audio_io
from ..media import reuse
from .waiting import retried

_locks: dict = {}


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


def _lock(content_hash: str) -> asyncio.Lock:
    return per_loop(_locks).setdefault(content_hash, asyncio.Lock())


async def resolve(value, gateway, endpoint: str, say: Callable[[str], None], book):
    """`value` (a request's arguments) with every Upload in it replaced by its URL on fal (`book`: the journal
    whose upload cache is asked first)."""
    if isinstance(value, Upload):
        # One upload per content even when several takes need the same clip at once.
        async with _lock(value.content_hash):
            url = await book.call(book.upload_url, value.content_hash)
            if url is None and value.origin is not None:  # fal's own copy of this very file
                url = await reuse.still_served(value.origin, gateway.probe)
                if url is None:
                    value.data, value.content_type, value.file_name = await asyncio.to_thread(
                        value.origin.original, audio_io.encode_wav)
            if url is None:
                comfy.throw_if_interrupted()
                what = f"uploading input {value.kind}"
                say(what.capitalize())
                url = await retried(f"{endpoint}: {what}",
                                    lambda: gateway.upload(value.data, value.content_type, value.file_name))
                await book.call(book.remember_upload, value.content_hash, url)
        return url
    if isinstance(value, dict):
        return {k: await resolve(v, gateway, endpoint, say, book) for k, v in value.items()}
    if isinstance(value, list):
        return [await resolve(v, gateway, endpoint, say, book) for v in value]
    return value
