"""ComfyUI AUDIO values <-> audio files.

AUDIO is {"waveform": float32 CPU tensor [B, C, T] in [-1, 1], "sample_rate": int}.
Decoding uses PyAV, as ComfyUI core does; encoding for upload writes 16-bit PCM WAV,
which every fal audio model accepts and which needs no codec at all.
"""

import io
from pathlib import Path
from typing import List, Optional, Union

from ..core.errors import invalid
from ..core.log import get_logger
from . import containers, wav
from .limits import MAX_DECODE_SAMPLES, MAX_DECODE_SECONDS, DecodeError, too_long
from .reuse import stacked

# Frames encoded per block: small enough to stay in cache (~2x faster than one big pass).
ENCODE_BLOCK = 65536


# Growth factor of the decode buffer when a file holds more than its container said.
_GROWTH = 1.5


# The demuxers PyAV may use (FFmpeg's names): containers that hold audio and read nothing but the file. Others
# FFmpeg would probe open further files named inside (concat, HLS, DASH, image sequences: a 60-byte "ffconcat"
# file read a local audio file through Load Audio from URL) or are a decoding surface the pack has no use for.
FORMATS = ("wav,w64,mp3,flac,ogg,mov,matroska,aiff,caf,au,avi,aac,loas,ac3,eac3,dts,dtshd,truehd,mlp,amr,ape,wv,"
           "mpc,mpc8,tta,tak,shn,asf,voc,mpegts,mpeg,flv")


def decode(source: Union[bytes, str, Path], max_seconds: float = MAX_DECODE_SECONDS,
           max_samples: int = MAX_DECODE_SAMPLES) -> dict:
    """Decode a whole audio file into a [1, C, T] AUDIO at the file's own rate, within the decode limits.

    A plain PCM/float WAV is converted by numpy (media/wav.py: the same samples, several times faster);
    every other file is decoded by PyAV (decode_av).
    """
    try:
        if _head(source) == b"RIFF":
            audio = wav.decode(source, max_seconds, max_samples)
            if audio is not None:
                return audio
    except OSError as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    return decode_av(source, max_seconds, max_samples)


def decode_av(source: Union[bytes, str, Path], max_seconds: float = MAX_DECODE_SECONDS,
              max_samples: int = MAX_DECODE_SAMPLES) -> dict:
    """Decode a whole audio file with PyAV into a [1, C, T] AUDIO at the file's own rate.

    Bounded while decoding: decoding stops as soon as the audio passes `max_seconds` or
    `max_samples` (over all channels), whatever the container claims. Samples stream into
    one preallocated planar buffer sized from the container's stated length (grown
    geometrically if the file holds more), so peak memory stays close to the waveform itself.
    """
    import av
    import numpy as np
    import torch

    wrong = ""
    try:
        handle, wrong = _av_input(source)
        with _open(av, handle, source) as container:
            if not container.streams.audio:
                raise DecodeError("the file has no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # FFmpeg has no decoder for it
                raise DecodeError("the file's audio codec is not one FFmpeg (PyAV) can decode")
            rate = stream.codec_context.sample_rate or stream.rate
            channels = stream.codec_context.channels or len(stream.layout.channels)
            if not rate or rate <= 0 or not channels:
                raise DecodeError("the file states no sample rate or channel count")
            limit = min(int(max_seconds * rate), max_samples // channels)
            stated = _stated_frames(container, stream, rate)
            if stated is not None and stated > limit * 1.5:  # clearly over: refuse before decoding anything
                raise too_long(stated, rate, channels, max_seconds, max_samples, "the file says it holds")
            buffer = _PlanarBuffer(channels, min(limit, stated + rate // 10) if stated else min(limit, rate * 60))
            # Resample only the sample format (to float), never the rate or layout. Planar below 8 channels;
            # from 8 on, packed (PyAV 18's to_ndarray crashes the process on planar frames of 8+ channels).
            planar = channels < 8
            resampler = av.AudioResampler(format="fltp" if planar else "flt", layout=stream.layout.name, rate=rate)

            def keep(converted) -> None:
                block = converted.to_ndarray() if planar else converted.to_ndarray().reshape(-1, channels).T
                if buffer.frames + block.shape[1] > limit:
                    raise too_long(buffer.frames + block.shape[1], rate, channels, max_seconds, max_samples,
                                    "decoding passed")
                buffer.append(block[:channels])

            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    keep(converted)
            for converted in resampler.resample(None):
                keep(converted)
    except DecodeError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise DecodeError(f"{type(exc).__name__}: {exc}" + (f"; {wrong}" if wrong else "")) from None
    if buffer.frames == 0:
        raise DecodeError("the file holds no audio samples")
    samples = buffer.finish()
    np.clip(samples, -1.0, 1.0, out=samples)
    return {"waveform": torch.from_numpy(samples).unsqueeze(0), "sample_rate": int(rate)}


def _open(av, handle, source):
    try:
        # Tags are not what is decoded: one that is not UTF-8 (RIFF INFO is often Latin-1) must not fail the file.
        return av.open(handle, options={**_probe_options(source), "format_whitelist": FORMATS},
                       metadata_errors="replace")
    except av.error.ArgumentError:  # FFmpeg found a format outside FORMATS
        raise DecodeError("it is in a format the pack does not read; it reads audio files such as WAV, MP3, FLAC, "
                          "Ogg, Opus, MP4/M4A, AAC, WebM/Matroska, AIFF and CAF") from None


def _av_input(source: Union[bytes, str, Path]) -> tuple:
    """(what PyAV opens, what is wrong with the file or ""): the file, or a copy with the sizes and tags FFmpeg
    would trust to allocate far more than the file holds made safe (media/containers.py)."""
    reader = wav.open_reader(source)
    try:
        patches, wrong = containers.fixes(reader)
    finally:
        reader.close()
    if not patches:
        return (io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)), ""
    data = bytearray(source) if isinstance(source, (bytes, bytearray)) else bytearray(Path(source).read_bytes())
    for offset, replacement in patches:
        data[offset:offset + len(replacement)] = replacement
    if wrong:
        get_logger("audio").warning("%s; read as if the chunk ended with the file", wrong)
    return io.BytesIO(data), wrong


def _stated_frames(container, stream, rate: int):
    """The length the container states, in frames (None when it states none)."""
    try:
        if stream.duration and stream.time_base:
            return max(0, int(stream.duration * stream.time_base * rate))
        if container.duration:
            return max(0, int(container.duration * rate / 1_000_000))  # AV_TIME_BASE units
    except (TypeError, ValueError, OverflowError):
        pass
    return None


def stated_seconds(source: Union[str, Path]) -> Optional[float]:
    """The length an audio file's container states, in seconds, read without decoding it (its size claims made
    safe first, as for a decode); None when it states none or cannot be read."""
    import av

    try:
        handle, _ = _av_input(source)
        with _open(av, handle, source) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            rate = int(stream.rate or 0) if stream is not None else 0
            frames = _stated_frames(container, stream, rate) if rate else None
    except (DecodeError, av.error.FFmpegError, OSError, ValueError, IndexError):
        return None
    return frames / rate if frames else None


class _PlanarBuffer:
    """[channels, frames] float32 filled block by block, in one allocation.

    Channel c lives at [c * capacity, c * capacity + frames). Growing and the final trim
    resize the allocation in place (realloc: large blocks are remapped, not copied) and
    move the planes with memmove, so the samples are never held twice.
    """

    def __init__(self, channels: int, capacity: int):
        import numpy as np

        self.channels = channels
        self.capacity = max(1, int(capacity))
        self.frames = 0
        self.data = np.empty(channels * self.capacity, dtype=np.float32)

    def append(self, block) -> None:
        count = block.shape[1]
        if self.frames + count > self.capacity:
            self._resize(max(self.frames + count, int(self.capacity * _GROWTH)))
        for c in range(self.channels):
            start = c * self.capacity + self.frames
            self.data[start:start + count] = block[c]
        self.frames += count

    def _move(self, source: int, target: int, count: int) -> None:
        import ctypes

        if count and source != target:
            base, size = self.data.ctypes.data, self.data.itemsize
            ctypes.memmove(base + target * size, base + source * size, count * size)

    def _resize(self, capacity: int) -> None:
        old = self.capacity
        if capacity > old:
            self.data.resize(self.channels * capacity, refcheck=False)
            for c in range(self.channels - 1, 0, -1):  # planes move right: the last one first
                self._move(c * old, c * capacity, self.frames)
        else:
            for c in range(1, self.channels):  # planes move left: the first one first
                self._move(c * old, c * capacity, self.frames)
            self.data.resize(self.channels * capacity, refcheck=False)
        self.capacity = capacity

    def finish(self):
        """The samples as a contiguous [channels, frames] array (the buffer is trimmed to fit)."""
        self._resize(self.frames)
        samples = self.data.reshape(self.channels, self.frames)
        self.data = None
        return samples


def _head(source, count: int = 4) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:count])
    with open(source, "rb") as file:
        return file.read(count)


def _probe_options(source) -> dict:
    """WAV needs no format probing; FFmpeg's default probe reads megabytes of it (~50 ms)."""
    return {"probesize": "65536"} if _head(source) == b"RIFF" else {}


# Sample rates an input clip may have (pack limit): below, no model hears anything useful; above,
# no model takes it (and the WAV header's byte rate would overflow soon after).
MIN_RATE, MAX_RATE = 1000, 384000
# Integer sample formats and the value that maps to full scale (1.0).
_INT_SCALE = {"torch.int16": 32768.0, "torch.int32": 2147483648.0, "torch.int8": 128.0}


def clips(audio: dict, node: str, field: str) -> List[dict]:
    """Split an AUDIO input into checked single float32 CPU clips ([1, C, T] each).

    Refuses what a model cannot use, before anything is paid for: no samples, NaN/inf,
    an unusable sample rate, a tensor without data (meta device), a sample type that is
    not audio, or more than two channels (fal's music models take mono or stereo; a silent
    downmix of surround would change the mix, so we ask the user to do it on purpose).
    Integer samples are scaled to [-1, 1] (int16 by 32768), other floats cast, GPU tensors
    copied to the CPU.
    """
    import torch

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise invalid(node, field, "is not an AUDIO value")
    waveform = audio["waveform"]
    if not isinstance(waveform, torch.Tensor):
        raise invalid(node, field, "is not an AUDIO value (waveform is not a tensor)")
    rate = sample_rate(audio["sample_rate"], node, field)
    waveform = _float_cpu(waveform, node, field)
    if waveform.dim() == 2:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 3:
        raise invalid(node, field, f"must be a [batch, channels, samples] waveform, got shape {tuple(waveform.shape)}")
    batch, channels, length = waveform.shape
    if batch == 0 or channels == 0 or length == 0:
        raise invalid(node, field, "is empty (no samples)")
    if channels > 2:
        raise invalid(node, field, f"has {channels} channels; fal audio models take mono or stereo, "
                                   "so downmix it to 1 or 2 channels first")
    if not torch.isfinite(waveform).all():
        raise invalid(node, field, "contains NaN or infinite samples")
    return [{"waveform": waveform[i:i + 1], "sample_rate": rate} for i in range(batch)]


def sample_rate(value, node: str, field: str) -> int:
    """An AUDIO's sample rate as a whole number of Hz within MIN_RATE..MAX_RATE."""
    import math
    import numbers

    shown = repr(value)[:40]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # a 0-d numpy or torch number
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(node, field, f"has no usable sample rate ({shown}); it must be a whole number of Hz")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise invalid(node, field, f"has an invalid sample rate {shown}; it must be a whole number of Hz")
    rate = int(value)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise invalid(node, field, f"has a sample rate of {rate} Hz; it must be {MIN_RATE}-{MAX_RATE} Hz (pack "
                                   "limit): resample it first")
    return rate


def _float_cpu(waveform, node: str, field: str):
    """The waveform as float32 on the CPU, integer formats scaled to full scale."""
    import torch

    if waveform.device.type == "meta":
        raise invalid(node, field, "is a tensor on the 'meta' device, which holds no samples")
    if waveform.device.type != "cpu":
        waveform = waveform.detach().to("cpu")
    dtype = waveform.dtype
    if dtype == torch.float32:
        return waveform
    if dtype in (torch.float64, torch.float16, torch.bfloat16):
        return waveform.to(torch.float32)
    if str(dtype) in _INT_SCALE:
        return waveform.to(torch.float32).div_(_INT_SCALE[str(dtype)])
    if dtype == torch.uint8:  # 8-bit WAV style: 128 is silence
        return waveform.to(torch.float32).sub_(128.0).div_(128.0)
    raise invalid(node, field, f"holds {str(dtype).replace('torch.', '')} samples; AUDIO needs float samples "
                               "(or 8/16/32-bit integer PCM)")


def duration(clip: dict) -> float:
    return clip["waveform"].shape[-1] / float(clip["sample_rate"])


def encode_wav(clip: dict) -> bytes:
    """One [1, C, T] clip as 16-bit PCM WAV (interleaved, little-endian).

    Samples are converted in cache-sized blocks straight into the file's buffer: about
    twice as fast as one whole-clip pass, with no full-size temporaries.
    """
    import struct
    import sys

    import torch

    waveform = clip["waveform"][0].detach().to("cpu", torch.float32)
    channels, frames = waveform.shape
    rate = int(clip["sample_rate"])
    size = frames * channels * 2
    buffer = bytearray(44 + size)
    struct.pack_into("<4sI4s4sIHHIIHH4sI", buffer, 0, b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, channels,
                     rate, rate * channels * 2, channels * 2, 16, b"data", size)
    if size:
        pcm = torch.frombuffer(buffer, dtype=torch.int16, offset=44).view(frames, channels)
        for start in range(0, frames, ENCODE_BLOCK):
            block = waveform[:, start:start + ENCODE_BLOCK]
            pcm[start:start + ENCODE_BLOCK].copy_(block.t().clamp(-1.0, 1.0).mul_(32767.0).round_())
        if sys.byteorder == "big":  # WAV is little-endian
            pcm.numpy().byteswap(inplace=True)
    return bytes(buffer)


def stack(audios: List[dict]) -> dict:
    """Join several [1, C, T] AUDIO values into one batch; shorter takes are padded with silence."""
    import torch

    if len(audios) == 1:
        return audios[0]
    rate = audios[0]["sample_rate"]
    waves = []
    for item in audios:
        w = item["waveform"]
        if item["sample_rate"] != rate:
            new_length = max(1, round(w.shape[-1] * rate / item["sample_rate"]))
            w = torch.nn.functional.interpolate(w, size=new_length, mode="linear", align_corners=False)
        waves.append(w)
    channels = max(w.shape[1] for w in waves)
    length = max(w.shape[-1] for w in waves)
    out = torch.zeros((len(waves), channels, length), dtype=torch.float32)
    for i, w in enumerate(waves):
        out[i, :, : w.shape[-1]] = w.expand(-1, channels, -1)[0] if w.shape[1] == 1 else w[0]
    return stacked(audios, {"waveform": out, "sample_rate": rate})  # unchanged items keep their fal origin


# -- Headerless results -------------------------------------------------------------------------
# Some models return raw samples with no container (ElevenLabs' pcm_*, ulaw_8000, alaw_8000; MiniMax's
# pcm): nothing in the file says its layout, so the node states it from the format it asked for.

RAW_ENCODINGS = ("s16le", "mulaw", "alaw")
# Starts of the containers a model may wrap such a result in after all (then it is decoded as usual).
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"ID3", b"OggS", b"fLaC", b"\x1aE\xdf\xa3", b"FORM", b"caff")


class RawLayout:
    """The layout of headerless samples: encoding (s16le, mulaw or alaw), rate and channels (interleaved)."""

    def __init__(self, encoding: str, sample_rate: int, channels: int = 1):
        if encoding not in RAW_ENCODINGS:
            raise ValueError(f"unknown raw encoding {encoding!r}")
        self.encoding, self.sample_rate, self.channels = encoding, int(sample_rate), int(channels)

    def __repr__(self) -> str:
        return f"RawLayout({self.encoding!r}, {self.sample_rate}, {self.channels})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RawLayout) and repr(self) == repr(other)


def _has_container(head: bytes) -> bool:
    # Only unambiguous signatures: a bare MPEG frame sync (0xFFEx) is also two ordinary PCM samples near 0.
    return head.startswith(_CONTAINER_MAGIC)


def _g711_table(encoding: str):
    """The 256 linear values (in [-1, 1]) of the G.711 mu-law or A-law codes."""
    import numpy as np

    codes = np.arange(256, dtype=np.int32)
    if encoding == "mulaw":
        u = ~codes & 0xFF
        magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
        values = np.where(u & 0x80, -magnitude, magnitude)
    else:
        a = codes ^ 0x55
        exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
        magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                             ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
        values = np.where(a & 0x80, magnitude, -magnitude)
    return values.astype(np.float32) / 32768.0


def decode_raw(source: Union[bytes, str, Path], layout: RawLayout, max_seconds: float = MAX_DECODE_SECONDS,
               max_samples: int = MAX_DECODE_SAMPLES) -> dict:
    """Headerless samples in `layout` as a [1, C, T] AUDIO, within the same decode limits as decode()."""
    import numpy as np
    import torch

    width = 2 if layout.encoding == "s16le" else 1
    frame = width * layout.channels
    size = len(source) if isinstance(source, (bytes, bytearray)) else Path(source).stat().st_size
    frames = size // frame
    if frames > min(int(max_seconds * layout.sample_rate), max_samples // layout.channels):
        # The size alone tells the length: refused before reading the file.
        raise too_long(frames, layout.sample_rate, layout.channels, max_seconds, max_samples, "the file holds")
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    usable = len(data) - len(data) % frame
    if usable == 0:
        raise DecodeError("the file holds no audio samples")
    if layout.encoding == "s16le":
        samples = np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.float32) / 32768.0
    else:
        samples = _g711_table(layout.encoding)[np.frombuffer(data, dtype=np.uint8, count=usable)]
    waveform = torch.from_numpy(np.ascontiguousarray(samples.reshape(-1, layout.channels).T)).unsqueeze(0)
    return {"waveform": waveform, "sample_rate": layout.sample_rate}


def decoder(layout=None):
    """The decode function for a result: `decode`, or for a headerless format the raw layout (a file that
    turns out to start with a known container is still decoded as that container)."""
    if layout is None:
        return decode

    def decode_result(source):
        return decode(source) if _has_container(_head(source, 16)) else decode_raw(source, layout)

    return decode_result
