"""Plain PCM and IEEE-float WAV files decoded with numpy, exactly as the PyAV path decodes them.

Most fal music results are plain WAV, where decoding is only an int -> float conversion: numpy does it
several times faster than PyAV (demuxer, decoder and resampler). `decode` returns the same AUDIO as
`audio.decode_av` for every file it accepts, sample for sample, and None for every other file, which the
caller then gives to PyAV. It follows FFmpeg's WAV demuxer (libavformat/wavdec.c, riffdec.c) and the
sample scaling of its resampler (swresample: s16 / 2^15, u8 (x - 128) / 2^7, s24 read as s32 (x << 8),
s32 / 2^31, f64 rounded to f32), and leaves to PyAV whatever FFmpeg might read another way:

- accepted: a RIFF/WAVE with a 'fmt ' chunk before the one 'data' chunk, format 1 (PCM 8-bit unsigned,
  16-, 24-, 32-bit signed), 3 (IEEE float, 32 or 64 bits) or WAVE_FORMAT_EXTENSIBLE with the PCM or float
  subformat, any channel count and sample rate, a block align of exactly bytes x channels; other chunks
  (LIST, fact, ...) before or after the data, odd sizes padded to even as RIFF says; a data size of 0 or
  0xFFFFFFFF or past the end of the file (a streamed WAV: the rest of the file, as FFmpeg reads it); a
  trailing partial frame is dropped;
- left to PyAV: RIFX, RF64, every other codec, a broken or truncated header, a second 'data' chunk
  (FFmpeg reads on into it), 'bext', 'SMV0', 'XMA2' chunks, 16-bit data that FFmpeg probes as something
  else (IEC 61937 / S/PDIF bursts, DTS sync words), a header the ACT demuxer claims, and 32-bit PCM
  whose extra bytes mark half floats.

The length is known from the sizes before any sample is read, so the decode limits refuse a file first;
the output [C, T] float32 is allocated once and filled block by block (peak extra memory: one block).
media/wavstream.py (decoding while the file downloads) reuses parse, parse_fmt, Layout, FileReader and
convert_block: keep their meaning when changing them.
"""

import struct
from pathlib import Path
from typing import Optional, Union

from . import limits

# Bytes of input converted per block: big enough that per-block overhead vanishes, small enough for cache.
BLOCK = 1 << 18

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# KSDATAFORMAT_SUBTYPE_* = the format tag (4 bytes, little-endian) followed by this.
_GUID_TAIL = bytes.fromhex("000010008000" "00aa00389b71")
# IEC 61937 burst preamble (Pa, Pb as FFmpeg's spdif probe looks for it) and DTS sync words (16-bit and
# 14-bit, both byte orders): FFmpeg may read PCM holding them as a compressed stream.
_SPDIF_SYNC = b"\x72\xf8\x1f\x4e"
_DTS_SYNCS = (b"\x7f\xfe\x80\x01", b"\xfe\x7f\x01\x80", b"\x1f\xff\xe8\x00", b"\xff\x1f\x00\xe8")
_SPDIF_WINDOW = 1 << 16  # what set_spdif reads from the start of the data
_PROBE_WINDOW = 1 << 18  # more than FFmpeg's codec probing of 16-bit PCM reads (32 packets, or probesize)
# Chunks walked before giving the file to PyAV (a real WAV has a handful; a crafted one could have millions).
_MAX_CHUNKS = 1000


class Layout:
    """Where the samples are and how they are stored."""

    def __init__(self, kind: str, width: int, channels: int, rate: int, start: int, frames: int):
        self.kind, self.width, self.channels, self.rate = kind, width, channels, rate
        self.start, self.frames = start, frames


class _Bytes:
    def __init__(self, data):
        self.view = memoryview(data).cast("B")
        self.size = len(self.view)

    def read(self, offset: int, count: int) -> bytes:
        return bytes(self.view[offset:offset + count]) if offset < self.size else b""

    def close(self) -> None:
        pass


class FileReader:
    def __init__(self, path):
        import os

        self.file = open(path, "rb", buffering=0)
        self.size = os.fstat(self.file.fileno()).st_size

    def read(self, offset: int, count: int) -> bytes:
        if offset >= self.size:
            return b""
        self.file.seek(offset)
        return self.file.read(count)

    def close(self) -> None:
        self.file.close()


def decode(source: Union[bytes, bytearray, memoryview, str, Path], max_seconds: float = limits.MAX_DECODE_SECONDS,
           max_samples: int = limits.MAX_DECODE_SAMPLES) -> Optional[dict]:
    """The [1, C, T] AUDIO of a plain PCM/float WAV (bytes or a path), or None for any other file.

    Raises limits.DecodeLimitExceeded, before reading any sample, when the audio is longer than the limits;
    OSError when the file cannot be read.
    """
    reader = open_reader(source)
    try:
        layout = parse(reader)
        if layout is None:
            return None
        limit = min(int(max_seconds * layout.rate), max_samples // layout.channels)
        if layout.frames > limit:
            raise limits.too_long(layout.frames, layout.rate, layout.channels, max_seconds, max_samples,
                                   "the file says it holds")
        return {"waveform": _convert(reader, layout), "sample_rate": layout.rate}
    finally:
        reader.close()


def open_reader(source: Union[bytes, bytearray, memoryview, str, Path]):
    """A reader (read(offset, count), size, close()) of bytes or of the file at a path."""
    return _Bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else FileReader(source)


def parse(reader) -> Optional[Layout]:
    """The sample layout, following FFmpeg's wav_read_header; None where FFmpeg could differ or fails."""
    size = reader.size
    head = reader.read(0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    if _act_claims(reader.read(0, 512)):
        return None
    fmt = start = end = None
    position = 12
    for _ in range(_MAX_CHUNKS):
        header = reader.read(position, 8)
        if len(header) < 8:
            break
        tag, length = header[:4], struct.unpack("<I", header[4:])[0]
        body = position + 8
        following = body + length
        if tag == b"fmt ":
            if fmt is None:  # FFmpeg reads the first one only
                fmt = parse_fmt(reader.read(body, min(length, 4096)), length)
                if fmt is None:
                    return None
        elif tag == b"data":
            if start is not None or fmt is None:
                return None
            start = body
            if length in (0, 0xFFFFFFFF):  # unknown length (streamed): the rest of the file
                end = size
                break
            end = following
        elif tag in (b"bext", b"SMV0", b"XMA2") or (tag == b"LIST" and length < 4):
            return None
        if following >= size:
            break
        position = following + (following & 1)  # chunks start at even offsets
    else:
        return None
    if fmt is None or start is None:
        return None
    if end < size and _more_data(reader, end, size):
        return None
    kind, width, channels, rate, tag = fmt
    frames = (min(end, size) - start) // (width * channels)
    if frames <= 0:
        return None
    if tag == _PCM:
        if _SPDIF_SYNC in reader.read(start, _SPDIF_WINDOW):
            return None
        if kind == "s16":
            window = reader.read(start, _PROBE_WINDOW)
            if any(sync in window for sync in _DTS_SYNCS):
                return None
    return Layout(kind, width, channels, rate, start, frames)


def parse_fmt(chunk: bytes, length: int):
    """(kind, bytes per sample, channels, rate, codec tag) of a 'fmt ' chunk FFmpeg reads as plain PCM/float."""
    if length < 16 or len(chunk) < 16:
        return None
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", chunk[:16])
    extra = b""
    if length >= 18:
        if len(chunk) < 18:
            return None
        extra_size = min(length - 18, struct.unpack("<H", chunk[16:18])[0])
        extra = chunk[18:18 + extra_size]
        if len(extra) < extra_size:
            return None
    if tag == _EXTENSIBLE:
        if len(extra) < 22:
            return None
        valid_bits, _mask = struct.unpack("<HI", extra[:6])
        guid = extra[6:22]
        if guid[4:] != _GUID_TAIL:
            return None
        tag = struct.unpack("<I", guid[:4])[0]
        if valid_bits:
            bits = valid_bits  # FFmpeg picks the codec from the valid bits
        extra = extra[22:]
    if tag == _PCM:
        kind = {8: "u8", 16: "s16", 24: "s24", 32: "s32"}.get(bits)
        if kind == "s32" and len(extra) == 2 and extra == b"\x01\x00":
            return None  # FFmpeg reads this as 16-bit float samples
    elif tag == _FLOAT:
        kind = {32: "f32", 64: "f64"}.get(bits)
    else:
        return None
    if kind is None or channels == 0 or not 0 < rate < 2 ** 31:
        return None
    width = bits // 8
    if block_align != width * channels:  # FFmpeg's packets would not hold whole frames
        return None
    return kind, width, channels, rate, tag


def _act_claims(head: bytes) -> bool:
    """FFmpeg's ACT demuxer outbids its WAV demuxer for a WAV header followed by this pattern."""
    return (len(head) >= 512 and head[16:20] == b"\x10\x00\x00\x00" and not any(head[44:256])
            and head[256] == 0x84 and not any(head[264:512]))


def _more_data(reader, position: int, size: int) -> bool:
    """Whether FFmpeg, at the end of the data chunk, finds another 'data' chunk and reads on into it
    (find_tag in wav_read_packet: from exactly the end of the data, without the pad byte)."""
    for _ in range(_MAX_CHUNKS):
        if position + 4 > size:
            return False
        header = reader.read(position, 8)
        if header[:4] == b"data":
            return True
        length = struct.unpack("<I", header[4:8].ljust(4, b"\0"))[0]
        position += 8 + length + (length & 1)
    return True  # too many to follow: PyAV decides


def _convert(reader, layout: Layout):
    """The samples as a contiguous float32 [1, C, T] tensor, converted block by block into one allocation."""
    import numpy as np
    import torch

    channels, width, frames = layout.channels, layout.width, layout.frames
    frame = width * channels
    out = np.empty((channels, frames), dtype=np.float32)
    step = max(1, BLOCK // frame)
    source = reader.view if isinstance(reader, _Bytes) else None
    buffer = None if source is not None else bytearray(step * frame)
    scratch = np.empty(step * channels, dtype="<i4") if layout.kind == "s24" else None
    if source is None:
        reader.file.seek(layout.start)
    for first in range(0, frames, step):
        count = min(step, frames - first)
        nbytes = count * frame
        if source is not None:
            block = source[layout.start + first * frame:layout.start + first * frame + nbytes]
        else:
            block = memoryview(buffer)[:nbytes]
            _read_into(reader.file, block)
        convert_block(np, layout.kind, block, count, channels, out[:, first:first + count], scratch)
    return torch.from_numpy(out).unsqueeze(0)


def _read_into(file, block: memoryview) -> None:
    done = 0
    while done < len(block):
        got = file.readinto(block[done:])
        if not got:
            raise limits.DecodeError("the file ended while it was read (it changed meanwhile)")
        done += got


def convert_block(np, kind: str, block, count: int, channels: int, target, scratch) -> None:
    """One block of interleaved samples into `target` ([C, count] float32 view), scaled as swresample does."""
    if kind == "s24":
        # Each 3-byte sample into the top 3 bytes of a little-endian int32: the value << 8, as FFmpeg decodes it.
        samples = scratch[:count * channels]
        wide = samples.view(np.uint8).reshape(-1, 4)
        wide[:, 0] = 0
        wide[:, 1:] = np.frombuffer(block, dtype=np.uint8).reshape(-1, 3)
        target[...] = samples.reshape(count, channels).T
        target *= np.float32(2.0 ** -31)
        return
    dtype = {"u8": "u1", "s16": "<i2", "s32": "<i4", "f32": "<f4", "f64": "<f8"}[kind]
    with np.errstate(over="ignore"):  # f64 beyond the f32 range becomes +-inf (then clipped), as in FFmpeg
        target[...] = np.frombuffer(block, dtype=dtype).reshape(count, channels).T
    if kind == "u8":
        target -= np.float32(128.0)
        target *= np.float32(2.0 ** -7)
    elif kind == "s16":
        target *= np.float32(2.0 ** -15)
    elif kind == "s32":
        target *= np.float32(2.0 ** -31)
    else:  # float samples may lie outside [-1, 1]: clipped as the PyAV path clips them
        np.clip(target, -1.0, 1.0, out=target)
