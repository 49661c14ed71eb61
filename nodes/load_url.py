"""Load Audio from URL: any audio file on the web (or a data: URI) as AUDIO."""

import asyncio

from . import widgets as w

DEFAULT_MEGABYTES = 100.0


class LoadAudioFromURL:
    DISPLAY_NAME = "Load Audio from URL (fal Audio)"
    DESCRIPTION = ("Download an audio file (WAV, MP3, FLAC, OGG, M4A, or the soundtrack of a video) from an http(s) "
                   "URL, or read a data: URI, and output it as AUDIO, decoded exactly like fal results (at most 20 "
                   "minutes: the pack's decode limits).")
    CATEGORY = "audio/fal"
    FUNCTION = "load"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "url": w.text("http(s):// or data: URL of the audio file. Downloaded without your fal key; messages never "
                          "show the part after '?' (signed links keep their token there), but the URL itself is "
                          "saved in the workflow."),
            "max_megabytes": w.number("Largest file to download, in MB (1 MB = 1,000,000 bytes). A larger file is "
                                      "refused, or stopped as soon as it passes the limit.", DEFAULT_MEGABYTES, 0.1,
                                      4096.0, 1.0),
        }}

    async def load(self, url, max_megabytes=DEFAULT_MEGABYTES):
        from ..core import validate
        from ..core.log import own_requests
        from ..media import audio as audio_io
        from ..media.fetch import FetchFailed, display_url, fetch
        from ..media.limits import DecodeError, DecodeLimitExceeded

        name = self.DISPLAY_NAME
        validate.widgets(name, self.INPUT_TYPES(), {"url": url, "max_megabytes": max_megabytes})
        with own_requests():  # httpx does not log the download (core/log.py)
            data = await fetch(url, int(float(max_megabytes) * 1_000_000), name)
        try:
            # Off the event loop: other nodes of the prompt go on while this decodes.
            return (await asyncio.to_thread(audio_io.decode, data),)
        except DecodeLimitExceeded as exc:
            raise FetchFailed(f"{name}: {display_url(url)} was not loaded: {exc}.") from None
        except DecodeError as exc:
            raise FetchFailed(f"{name}: {display_url(url)} is not an audio file that can be decoded ({exc}).") from None
