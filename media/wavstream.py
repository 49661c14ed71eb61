"""Decode a WAV result while it downloads, so its AUDIO is ready when the file is.

The download (transport/gateway.py) hands every block it writes to the file to a WavStream, with
the offset each response starts at. From the head of the file the stream takes a provisional
layout (the 'fmt ' chunk, where the 'data' chunk starts, its length from the chunk's size or
the file's), allocates the [C, T] float32 output once, and converts whole frames as they arrive
with media/wav.py's converter. Once the file is complete on disk, `result()` parses it exactly
as a file decode does (media/wav.py): the streamed samples are used only if that layout is the
provisional one and every frame was converted from the very bytes on disk, so the AUDIO is the
same as decoding the finished file. Anything else (not a plain WAV, a resume that does not
continue where the stream stopped, an error) voids the stream, and the finished file is decoded
as before. The stream also hashes the bytes, so the file's content hash (zero-upload chaining,
media/reuse.py) needs no second read of the file.

Fed on the network loop's thread, read once the download has ended: never both at once.
"""

import os
import struct
from pathlib import Path
from typing import Optional

from ..core.log import get_logger
from . import limits, reuse, wav

log = get_logger("wavstream")

# The 'fmt ' chunk and the start of the 'data' chunk must lie within the file's first bytes.
HEAD_LIMIT = 1 << 16


class WavStream:
    def __init__(self, max_seconds: float = limits.MAX_DECODE_SECONDS,
                 max_samples: int = limits.MAX_DECODE_SAMPLES):
        self.max_seconds, self.max_samples = max_seconds, max_samples
        self._restart()

    def _restart(self) -> None:
        self.received = 0  # bytes of the file fed so far, contiguous from its start
        self.contiguous = True  # every byte from 0 to `received` was fed, in order
        self.void = False  # the streamed samples cannot be used (the file is decoded instead)
        self._total: Optional[int] = None
        self._head: Optional[bytearray] = bytearray()
        self._layout: Optional[wav.Layout] = None
        self._out = None
        self._scratch = None
        self._carry = b""  # the bytes of a frame split between two blocks
        self._converted = 0  # frames
        self._digest = reuse.running_hash()

    def start(self, offset: int, total: Optional[int]) -> None:
        """A response begins at byte `offset` of the file (0: from the start, anew); `total` is
        the whole file's size if the server said it."""
        if offset == 0:
            self._restart()
        elif offset != self.received:
            self.contiguous = False
            self._give_up("the download resumed elsewhere than the stream stopped")
        self._total = total

    def feed(self, block: bytes) -> None:
        """The next bytes of the file, as written to it."""
        if not self.contiguous:
            return
        position = self.received
        self.received += len(block)
        self._digest.update(block)
        if self.void:
            return
        try:
            if self._layout is None:
                self._head += block
                if not self._read_head():
                    return
                head, self._head = self._head, None
                position, block = self._layout.start, memoryview(head)[self._layout.start:]
            self._take(position, block)
        except Exception as exc:  # noqa: BLE001 - never breaks the download: the file is decoded instead
            self._give_up(f"{type(exc).__name__}: {exc}")

    @property
    def ready(self) -> bool:
        """Every frame was converted while downloading (result() still checks the finished file)."""
        return not self.void and self._layout is not None and self._converted == self._layout.frames

    def file_hash(self, path: Path) -> Optional[str]:
        """The content hash of the finished file (as reuse.file_hash gives it), if every byte of it was fed."""
        if self.contiguous and _size(path) == self.received:
            return reuse.hash_name(self._digest)
        return None

    def result(self, path: Path) -> Optional[dict]:
        """The AUDIO of the finished file at `path`, if the stream decoded all of it; else None."""
        ready, layout, out = self.ready, self._layout, self._out
        self._out = None
        if not ready or out is None:
            return None
        if not self.contiguous or _size(path) != self.received:
            return None
        reader = wav.FileReader(path)
        try:
            final = wav.parse(reader)
        finally:
            reader.close()
        if final is None or vars(final) != vars(layout):
            log.debug("the finished file's layout differs from the streamed one; decoding the file")
            return None
        import torch

        return {"waveform": torch.from_numpy(out).unsqueeze(0), "sample_rate": layout.rate}

    # -- inside ------------------------------------------------------------------------------

    def _give_up(self, why: str) -> None:
        if not self.void:
            log.debug("not decoding while downloading: %s", why)
        self.void, self._out, self._head, self._scratch = True, None, None, None

    def _read_head(self) -> bool:
        """Find the layout in the head; False while more bytes are needed (or the stream gave up)."""
        head = self._head
        if len(head) >= 12 and (head[:4] != b"RIFF" or head[8:12] != b"WAVE"):
            self._give_up("not a RIFF/WAVE file")
            return False
        fmt = None
        position = 12
        while position + 8 <= len(head):
            tag, length = bytes(head[position:position + 4]), struct.unpack_from("<I", head, position + 4)[0]
            body = position + 8
            if tag == b"fmt " and fmt is None:
                if body + min(length, 4096) > len(head):
                    break  # the rest of the chunk is still to come
                fmt = wav.parse_fmt(bytes(head[body:body + min(length, 4096)]), length)
                if fmt is None:
                    self._give_up("not a plain PCM or float WAV")
                    return False
            elif tag == b"data":
                if fmt is None:
                    self._give_up("the data comes before the format")
                    return False
                return self._begin(fmt, body, None if length in (0, 0xFFFFFFFF) else body + length)
            position = body + length + (length & 1)
        if len(head) > HEAD_LIMIT:
            self._give_up("no data chunk near the start of the file")
        return False

    def _begin(self, fmt: tuple, start: int, end: Optional[int]) -> bool:
        kind, width, channels, rate, _tag = fmt
        size = self._total
        stop = end if size is None else (size if end is None else min(end, size))
        if stop is None:
            self._give_up("neither the data chunk nor the server says how long the file is")
            return False
        frames = (stop - start) // (width * channels)
        limit = min(int(self.max_seconds * rate), self.max_samples // channels)
        if frames <= 0 or frames > limit:  # the file's decode says why (the decode limits' message)
            self._give_up("no samples, or more than the decode limits")
            return False
        import numpy as np

        self._layout = wav.Layout(kind, width, channels, rate, start, frames)
        self._out = np.empty((channels, frames), dtype=np.float32)
        return True

    def _take(self, position: int, block) -> None:
        """Convert the whole frames of the data chunk in `block` (which starts at file offset `position`)."""
        import numpy as np

        layout = self._layout
        frame = layout.width * layout.channels
        end = layout.start + layout.frames * frame
        wanted = memoryview(block)[:max(0, end - position)]
        if not wanted.nbytes:
            return
        if self._carry:
            wanted = memoryview(self._carry + bytes(wanted))
            self._carry = b""
        count = min(wanted.nbytes // frame, layout.frames - self._converted)
        used = count * frame
        if used < wanted.nbytes:
            self._carry = bytes(wanted[used:])
        if not count:
            return
        scratch = None
        if layout.kind == "s24":
            if self._scratch is None or self._scratch.size < count * layout.channels:
                self._scratch = np.empty(count * layout.channels, dtype="<i4")
            scratch = self._scratch
        first = self._converted
        wav.convert_block(np, layout.kind, wanted[:used], count, layout.channels,
                           self._out[:, first:first + count], scratch)
        self._converted += count


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1
