"""Decoding a WAV result while it downloads (media/wavstream.py): the AUDIO is the finished file's,
sample for sample, however the bytes arrive; a stream that cannot follow gives way to decoding the file."""

import itertools
import struct

import numpy as np
import pytest
import torch

from support import FILES, LYRIA, defaults, pack_module, run_node

wavstream = pack_module("media.wavstream")
wav = pack_module("media.wav")
audio_io = pack_module("media.audio")
reuse = pack_module("media.reuse")

_DTYPES = {"u8": ("u1", 1, 8), "s16": ("<i2", 1, 16), "s24": (None, 1, 24), "s32": ("<i4", 1, 32),
           "f32": ("<f4", 3, 32), "f64": ("<f8", 3, 64)}


def wav_bytes(kind: str = "s16", channels: int = 2, frames: int = 3001, rate: int = 8000, before: bytes = b"",
              after: bytes = b"", data_size=None, extensible: bool = False) -> bytes:
    """A WAV file written by hand: chunks `before` the data and `after` it, any stated data size."""
    dtype, tag, bits = _DTYPES[kind]
    rng = np.random.default_rng(frames * channels + bits)
    if kind.startswith("f"):
        samples = (rng.standard_normal(frames * channels) * 0.8).astype(dtype)  # some beyond [-1, 1]
        data = samples.tobytes()
    elif kind == "s24":
        values = rng.integers(-2 ** 23, 2 ** 23, frames * channels, dtype=np.int64)
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in values)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, frames * channels, endpoint=True).astype(dtype).tobytes()
    align = channels * bits // 8
    if extensible:
        guid = struct.pack("<I", tag) + bytes.fromhex("000010008000" "00aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    stated = len(data) if data_size is None else data_size
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + before + b"data" + struct.pack("<I", stated)
            + data + (b"\0" if len(data) % 2 else b"") + after)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def streamed(data: bytes, sizes=(1 << 20,), total: bool = True):
    stream = wavstream.WavStream()
    stream.start(0, len(data) if total else None)
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(data):
            break
        stream.feed(data[position:position + size])
        position += size
    return stream


def assert_same_as_the_file(stream, path):
    got = stream.result(path)
    assert got is not None, "the stream gave up"
    expected = audio_io.decode_av(path)
    assert got["sample_rate"] == expected["sample_rate"]
    assert got["waveform"].dtype == torch.float32 and got["waveform"].is_contiguous()
    assert torch.equal(got["waveform"], expected["waveform"])


LIST = b"LIST" + struct.pack("<I", 9) + b"INFOabcde\0"  # odd size, padded


@pytest.mark.parametrize("kind", sorted(_DTYPES))
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_every_plain_wav_format_streams_to_the_files_own_samples(tmp_path, kind, channels):
    data = wav_bytes(kind, channels)
    path = tmp_path / "result.wav"
    path.write_bytes(data)
    assert_same_as_the_file(streamed(data, sizes=(4096,)), path)


@pytest.mark.parametrize("sizes", [(1,), (7, 13, 1021), (44,), (45, 3), (1 << 20,)])
@pytest.mark.parametrize("layout", ["plain", "list before and after", "extensible", "streamed size"])
def test_any_split_of_the_bytes_gives_the_same_audio(tmp_path, sizes, layout):
    options = {"plain": {}, "list before and after": {"before": LIST, "after": LIST},
               "extensible": {"extensible": True, "kind": "s24"},
               "streamed size": {"data_size": 0xFFFFFFFF}}[layout]
    data = wav_bytes(frames=1777 if sizes != (1,) else 301, **options)
    path = tmp_path / "result.wav"
    path.write_bytes(data)
    stream = streamed(data, sizes)
    assert_same_as_the_file(stream, path)
    assert stream.file_hash(path) == reuse.file_hash(path)


def responses(data: bytes, *parts):
    """A stream fed as a download whose responses start at these offsets and end before these bytes."""
    stream = wavstream.WavStream()
    for offset, end in parts:
        stream.start(offset, len(data))
        stream.feed(data[offset:end])
    return stream


def test_a_download_resumed_where_it_stopped_or_restarted_from_zero_still_streams(tmp_path):
    data = wav_bytes(frames=5000)
    path = tmp_path / "result.wav"
    path.write_bytes(data)
    # a Range request from the byte where the drop came; the server ignoring the range (all of it again)
    for stream in (responses(data, (0, 1001), (1001, None)), responses(data, (0, 3000), (0, None))):
        assert_same_as_the_file(stream, path)
        assert stream.file_hash(path) == reuse.file_hash(path)


def test_a_resume_elsewhere_than_where_the_stream_stopped_gives_way_to_the_file(tmp_path):
    data = wav_bytes(frames=5000)
    path = tmp_path / "result.wav"
    path.write_bytes(data)
    stream = responses(data, (0, 2000), (1500, None))
    assert stream.result(path) is None and stream.file_hash(path) is None


@pytest.mark.parametrize("case", ["not riff", "adpcm", "no length known", "changed on disk", "short on disk",
                                  "too long for the decode limits", "data before fmt"])
def test_what_the_stream_cannot_vouch_for_is_left_to_the_file_decode(tmp_path, case):
    data = wav_bytes(frames=4000)
    path = tmp_path / "result.wav"
    total = True
    if case == "not riff":
        data = b"fLaC" + data[4:]
    elif case == "adpcm":
        data = data[:20] + struct.pack("<H", 2) + data[22:]
    elif case == "no length known":
        data = wav_bytes(frames=4000, data_size=0xFFFFFFFF)
        total = False
    elif case == "data before fmt":
        data = data[:12] + data[36:44] + data[12:36] + data[44:]
    elif case == "too long for the decode limits":
        # 3 hours stated, and a server saying the file is that long
        data = wav_bytes(frames=4000, data_size=3 * 3600 * 8000 * 4)
    stream = streamed(data, sizes=(999,), total=total)
    if case == "too long for the decode limits":
        stream = wavstream.WavStream()
        stream.start(0, 3 * 3600 * 8000 * 4 + 44)
        stream.feed(data)
    path.write_bytes(data)
    if case == "changed on disk":
        path.write_bytes(wav_bytes(frames=4000, channels=1, kind="s32"))  # same size, another layout
    if case == "short on disk":
        path.write_bytes(data[:-100])
    assert stream.result(path) is None


def _no_file_decode(monkeypatch):
    """Make decoding a finished WAV file fail, so a node only succeeds if the stream decoded it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the finished file was decoded again")

    monkeypatch.setattr(wav, "decode", refuse)
    monkeypatch.setattr(audio_io, "decode_av", refuse)


def _kept_wav(comfy):
    (kept,) = [p for p in comfy.output_dir.rglob("*.wav")]
    return kept


def test_a_node_returns_the_audio_decoded_while_downloading(fal, nodes, comfy, monkeypatch):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=2.0, rate=48000, channels=2))
    with monkeypatch.context() as patches:
        _no_file_decode(patches)
        (got,) = run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="streamed"))
    kept = _kept_wav(comfy)
    assert torch.equal(got["waveform"], audio_io.decode_av(kept)["waveform"]) and got["sample_rate"] == 48000
    (origin,) = got[reuse.KEY]
    assert origin["file_hash"] == reuse.file_hash(kept)  # hashed while downloading, as the file reads
    assert "Decoding" not in comfy.texts()  # nothing left to decode once the download ends


def test_a_download_cut_twice_and_resumed_is_still_decoded_while_downloading(fal, nodes, comfy, monkeypatch):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=3.0, rate=44100, channels=2))
    fal.fault("GET", FILES, truncate=True, times=2)
    with monkeypatch.context() as patches:
        _no_file_decode(patches)
        (got,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="cut twice"))
    assert torch.equal(got["waveform"], audio_io.decode_av(_kept_wav(comfy))["waveform"])
    assert len(fal.submissions) == 1


def test_a_result_the_stream_cannot_decode_is_decoded_from_the_file(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=2.0, rate=44100, channels=2,
                                                                     fmt="flac"))
    (got,) = run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="flac"))
    (kept,) = [p for p in comfy.output_dir.rglob("*.flac")]
    assert torch.equal(got["waveform"], audio_io.decode_av(kept)["waveform"])
    assert "Decoding" in comfy.texts()
