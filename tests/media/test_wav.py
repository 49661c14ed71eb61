"""Issue 13 item 5: plain PCM/float WAV results are converted by numpy (media/wav.py) instead of PyAV, giving
sample for sample what the PyAV path (audio.decode_av) gives; every other RIFF file still goes to PyAV."""

import io
import struct

import av
import numpy as np
import pytest
import torch

from support import pack_module

audio = pack_module("media.audio")
wav = pack_module("media.wav")
decode_limits = pack_module("media.limits")

LIMITS = "at most 20 minutes and 115,200,000 samples over all channels (decode limits)"
KINDS = {  # kind: (format tag, bits, numpy dtype of the stored samples)
    "u8": (1, 8, "u1"), "s16": (1, 16, "<i2"), "s24": (1, 24, None), "s32": (1, 32, "<i4"),
    "f32": (3, 32, "<f4"), "f64": (3, 64, "<f8"),
}
PCM_GUID = struct.pack("<I", 1) + bytes.fromhex("000010008000" "00aa00389b71")
FLOAT_GUID = struct.pack("<I", 3) + PCM_GUID[4:]


def chunk(tag: bytes, payload: bytes, size=None) -> bytes:
    """A RIFF chunk; an odd-sized payload is followed by its pad byte."""
    return tag + struct.pack("<I", len(payload) if size is None else size) + payload + b"\0" * (len(payload) % 2)


def fmt(tag: int, channels: int, rate: int, bits: int, block_align=None, extensible=None, valid_bits=None) -> bytes:
    block_align = channels * bits // 8 if block_align is None else block_align
    body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block_align, block_align, bits)
    if extensible:
        mask = (1 << channels) - 1
        body += struct.pack("<HHI", 22, bits if valid_bits is None else valid_bits, mask) + extensible
    return chunk(b"fmt ", body)


def riff(*chunks: bytes, magic: bytes = b"RIFF") -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return magic + struct.pack("<I", len(body)) + body


def samples(kind: str, frames: int, channels: int, seed: int = 0) -> bytes:
    """Stored samples covering the whole range of the kind (floats also past +-1, where they are clipped)."""
    rng = np.random.default_rng(seed)
    count = frames * channels
    if kind.startswith("f"):
        values = rng.uniform(-1.5, 1.5, count)
        values[:8] = [1.0, -1.0, 1.0000001, -1.0000001, 1e-40, -0.0, 3e38, -1e300 if kind == "f64" else -3e38]
        return values[:count].astype(KINDS[kind][2]).tobytes()
    width = KINDS[kind][1] // 8
    raw = bytearray(rng.integers(0, 256, count * width, dtype=np.uint8).tobytes())
    extremes = {1: [b"\x00", b"\xff", b"\x80"], 2: [b"\x00\x80", b"\xff\x7f", b"\0\0"],
                3: [b"\0\0\x80", b"\xff\xff\x7f", b"\0\0\0"], 4: [b"\0\0\0\x80", b"\xff\xff\xff\x7f", b"\0" * 4]}
    for i, value in enumerate(extremes[width][:count]):
        raw[i * width:(i + 1) * width] = value
    return bytes(raw)


def plain(kind: str, channels: int = 2, frames: int = 5000, rate: int = 44100, extensible: bool = False,
          before=(), after=(), seed: int = 0) -> bytes:
    tag, bits, _ = KINDS[kind]
    guid = (FLOAT_GUID if tag == 3 else PCM_GUID) if extensible else None
    data = samples(kind, frames, channels, seed)
    return riff(fmt(tag, channels, rate, bits, extensible=guid), *before, chunk(b"data", data), *after)


def both(source, **limits):
    """The fast path's AUDIO (which must exist) and the PyAV path's, checked identical."""
    fast = wav.decode(source, **limits)
    assert fast is not None, "the WAV fast path did not take this file"
    slow = audio.decode_av(source, **limits)
    assert fast["sample_rate"] == slow["sample_rate"]
    assert fast["waveform"].dtype == torch.float32 and fast["waveform"].is_contiguous()
    assert fast["waveform"].shape == slow["waveform"].shape
    assert torch.equal(fast["waveform"], slow["waveform"])
    return fast


def identical(a, b) -> bool:
    """Bit-for-bit the same samples (NaN where the other has NaN)."""
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def no_pyav(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PyAV was asked to open a file the WAV fast path handles")

    monkeypatch.setattr(av, "open", refuse)


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_sample_format_is_exactly_what_pyav_decodes(kind, channels, monkeypatch, tmp_path):
    data = plain(kind, channels=channels, frames=3001, rate=22050)
    fast = both(data)
    assert fast["sample_rate"] == 22050 and tuple(fast["waveform"].shape) == (1, channels, 3001)
    if kind.startswith("f"):
        assert float(fast["waveform"].abs().max()) == 1.0  # out-of-range floats clipped, as PyAV's path does
    path = tmp_path / "take.wav"
    path.write_bytes(data)
    no_pyav(monkeypatch)
    for source in (path, str(path), bytearray(data), data):
        assert torch.equal(audio.decode(source)["waveform"], fast["waveform"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_wave_format_extensible_with_the_pcm_or_float_subformat(kind):
    fast = both(plain(kind, channels=2, extensible=True))
    assert tuple(fast["waveform"].shape) == (1, 2, 5000)
    assert torch.equal(fast["waveform"], both(plain(kind, channels=2))["waveform"])


@pytest.mark.parametrize("codec, layout", [("pcm_u8", "mono"), ("pcm_s16le", "stereo"), ("pcm_s24le", "stereo"),
                                           ("pcm_s32le", "5.1"), ("pcm_f32le", "stereo"), ("pcm_f64le", "mono"),
                                           ("pcm_s16le", "5.1")])
def test_files_written_by_ffmpegs_wav_muxer(codec, layout):
    """FFmpeg writes a LIST/INFO chunk before the data, and WAVE_FORMAT_EXTENSIBLE past 2 channels or 16 bits."""
    rate, frames = 32000, 7000
    channels = av.AudioLayout(layout).nb_channels
    t = np.arange(frames) / rate
    signal = np.stack([0.9 * np.sin(2 * np.pi * 300 * (c + 1) * t) for c in range(channels)]).astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(signal, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buffer.getvalue()
    assert b"LIST" in data[:200]
    fast = both(data)
    assert tuple(fast["waveform"].shape) == (1, channels, frames)
    tolerance = 1 / 100 if codec == "pcm_u8" else 1e-4
    assert np.allclose(fast["waveform"][0].numpy(), signal, atol=tolerance)


@pytest.mark.parametrize("case", ["LIST before", "odd LIST before", "fact and junk before", "odd data then LIST",
                                  "second fmt ignored", "latin-1 tag"])
def test_chunks_around_the_data_and_their_pad_bytes(case):
    info = chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"fal!\0")  # 17 bytes: padded
    data = samples("u8", 3333, 1)  # odd size: a pad byte follows
    head = fmt(1, 1, 8000, 8)
    files = {
        "LIST before": riff(head, chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 4) + b"abc\0"), chunk(b"data", data)),
        "odd LIST before": riff(head, info, chunk(b"data", data)),
        "fact and junk before": riff(chunk(b"JUNK", b"\0" * 27), head, chunk(b"fact", struct.pack("<I", 3333)),
                                     chunk(b"data", data)),
        "odd data then LIST": riff(head, chunk(b"data", data), info),
        "second fmt ignored": riff(head, fmt(1, 2, 16000, 16), chunk(b"data", data)),
        # Not UTF-8: PyAV's path used to fail the whole file on it (UnicodeDecodeError from the tags).
        "latin-1 tag": riff(head, chunk(b"LIST", b"INFOINAM" + struct.pack("<I", 6) + "Café\0".encode("latin-1") + b"\0"),
                            chunk(b"data", data)),
    }
    fast = both(files[case])
    assert tuple(fast["waveform"].shape) == (1, 1, 3333) and fast["sample_rate"] == 8000


@pytest.mark.parametrize("stated", [0, 0xFFFFFFFF, "past the end"])
@pytest.mark.parametrize("partial", [0, 3])
def test_streamed_wavs_are_read_to_the_end_of_the_file(stated, partial):
    """A data size of 0 or 0xFFFFFFFF, or more than the file holds: the rest of the file, a partial frame dropped."""
    data = samples("s24", 4000, 2) + b"\x01\x02\x03"[:partial]
    size = len(data) + 6000 if stated == "past the end" else stated
    fast = both(riff(fmt(1, 2, 48000, 24), chunk(b"data", data, size=size)))
    assert tuple(fast["waveform"].shape) == (1, 2, 4000)


@pytest.mark.parametrize("kind", ["s16", "s32", "f64"])
def test_a_file_cut_off_mid_frame_drops_the_partial_frame(kind):
    data = samples(kind, 2500, 2)
    full = riff(fmt(*KINDS[kind][:1], 2, 44100, KINDS[kind][1]), chunk(b"data", data))
    for cut in (1, 5, len(data) // 2 + 3):
        fast = both(full[:-cut])
        assert fast["waveform"].shape[-1] == (len(data) - cut) // (2 * KINDS[kind][1] // 8)


def test_bytes_past_the_stated_data_size_are_not_samples():
    """Data larger than stated (trailing bytes, even a stray chunk): FFmpeg stops at the stated size."""
    data = samples("s16", 3000, 2)
    trailing = [b"\x11" * 7, chunk(b"JUNK", b"x" * 100), b"da", samples("s16", 50, 2, seed=3)]
    for tail in trailing:
        fast = both(riff(fmt(1, 2, 44100, 16), chunk(b"data", data)) + tail)
        assert tuple(fast["waveform"].shape) == (1, 2, 3000)


def test_blocks_of_any_size_give_the_same_samples(monkeypatch, tmp_path):
    for kind in KINDS:
        data = plain(kind, channels=3, frames=2001)
        path = tmp_path / f"{kind}.wav"
        path.write_bytes(data)
        whole = both(data)["waveform"]
        for block in (1, 100, 4096, 9999):
            monkeypatch.setattr(wav, "BLOCK", block)
            assert torch.equal(wav.decode(data)["waveform"], whole)
            assert torch.equal(wav.decode(path)["waveform"], whole)
        monkeypatch.undo()


def test_nan_and_infinity_in_float_wavs_come_out_as_pyav_gives_them():
    values = np.array([np.nan, np.inf, -np.inf, 0.5, 2.0, -2.0] * 100, dtype="<f4")
    fast = wav.decode(riff(fmt(3, 2, 8000, 32), chunk(b"data", values.tobytes())))["waveform"]
    slow = audio.decode_av(riff(fmt(3, 2, 8000, 32), chunk(b"data", values.tobytes())))["waveform"]
    assert identical(fast, slow) and fast.isnan().sum() == 100
    assert sorted(set(fast[~fast.isnan()].tolist())) == [-1.0, 0.5, 1.0]


def test_eight_channels_and_more_are_decoded(monkeypatch):
    """Any channel count, even past the 64 FFmpeg's resampler takes."""
    no_pyav(monkeypatch)
    for channels in (8, 12, 100):
        data = samples("s16", 700, channels)
        out = audio.decode(riff(fmt(1, channels, 48000, 16), chunk(b"data", data)))["waveform"]
        expected = np.frombuffer(data, "<i2").reshape(700, channels).T.astype(np.float32) / 32768
        assert torch.equal(out[0], torch.from_numpy(expected))


def adpcm_wav() -> bytes:
    buffer = io.BytesIO()
    signal = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)[None]
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream("adpcm_ms", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(signal, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    return buffer.getvalue()


def spdif_wav() -> bytes:
    """AC-3 in IEC 61937 bursts, stored as 16-bit stereo PCM: FFmpeg decodes the AC-3."""
    buffer = io.BytesIO()
    signal = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
    with av.open(buffer, "w", format="spdif") as out:
        stream = out.add_stream("ac3", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([signal, signal]), format="fltp", layout="stereo")
        frame.sample_rate = 48000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    return riff(fmt(1, 2, 48000, 16), chunk(b"data", buffer.getvalue()))



def decoded_as_before(data: bytes):
    """A file the fast path leaves to PyAV decodes, or fails, exactly as PyAV alone does; the AUDIO (or None)."""
    assert wav.decode(data) is None
    try:
        expected = audio.decode_av(data)
    except decode_limits.DecodeError as exc:
        with pytest.raises(decode_limits.DecodeError) as caught:
            audio.decode(data)
        assert str(caught.value) == str(exc)
        return None
    got = audio.decode(data)
    assert got["sample_rate"] == expected["sample_rate"] and identical(got["waveform"], expected["waveform"])
    return got

@pytest.mark.parametrize("case", ["adpcm", "s/pdif", "dts sync", "24 bits in 32", "20 bits", "block align",
                                  "second data chunk", "data before fmt", "half floats", "act header",
                                  "a thousand chunks"])
def test_wavs_ffmpeg_reads_otherwise_go_to_pyav(case):
    s16 = samples("s16", 3000, 2)
    files = {
        "adpcm": adpcm_wav,
        "s/pdif": spdif_wav,
        "dts sync": lambda: riff(fmt(1, 2, 44100, 16), chunk(b"data", s16[:4000] + b"\xff\x1f\x00\xe8" + s16[4004:])),
        "24 bits in 32": lambda: riff(fmt(1, 2, 48000, 32, extensible=PCM_GUID, valid_bits=24),
                                      chunk(b"data", samples("s32", 3000, 2))),
        "20 bits": lambda: riff(fmt(1, 2, 48000, 20, block_align=6), chunk(b"data", samples("s24", 3000, 2))),
        "block align": lambda: riff(fmt(1, 2, 44100, 16, block_align=6), chunk(b"data", s16)),
        "second data chunk": lambda: riff(fmt(1, 2, 44100, 16), chunk(b"data", s16), chunk(b"data", s16[:400])),
        "data before fmt": lambda: riff(chunk(b"data", s16), fmt(1, 2, 44100, 16)),
        "half floats": lambda: riff(chunk(b"fmt ", struct.pack("<HHIIHHHH", 1, 2, 44100, 44100 * 8, 8, 32, 2, 1)),
                                    chunk(b"data", samples("s32", 3000, 2))),
        "act header": lambda: riff(fmt(1, 1, 8000, 16), chunk(b"data", bytes(212) + b"\x84" + bytes(4000))),
        "a thousand chunks": lambda: riff(fmt(1, 2, 44100, 16), *[chunk(b"JUNK", b"")] * 1000, chunk(b"data", s16)),
    }
    data = files[case]()
    got = decoded_as_before(data)
    if got is None:
        return
    if case == "s/pdif":  # really decoded as AC-3, not read as the PCM it is stored as
        stored = np.frombuffer(data[44:], "<i2").reshape(-1, 2).T.astype(np.float32) / 32768
        assert got["waveform"].shape[-1] == stored.shape[-1] and not np.array_equal(got["waveform"][0], stored)
        assert 0.4 < float(got["waveform"].abs().max()) < 0.6  # the 0.5 sine


@pytest.mark.parametrize("case", ["RIFX", "RF64", "fmt too short", "no data", "no fmt", "zero channels", "zero rate",
                                  "unknown subformat", "header only", "truncated fmt"])
def test_broken_or_foreign_riff_files_fail_or_decode_as_before(case):
    s16 = samples("s16", 1000, 2)
    good = fmt(1, 2, 44100, 16)
    files = {
        "RIFX": riff(good, chunk(b"data", s16), magic=b"RIFX"),
        "RF64": riff(good, chunk(b"data", s16), magic=b"RF64"),
        "fmt too short": riff(chunk(b"fmt ", good[8:18]), chunk(b"data", s16)),
        "no data": riff(good, chunk(b"LIST", b"INFO")),
        "no fmt": riff(chunk(b"data", s16)),
        "zero channels": riff(fmt(1, 0, 44100, 16), chunk(b"data", s16)),
        "zero rate": riff(fmt(1, 2, 0, 16), chunk(b"data", s16)),
        "unknown subformat": riff(fmt(1, 2, 44100, 16, extensible=b"\x01" * 16), chunk(b"data", s16)),
        "header only": riff(good, chunk(b"data", b"")),
        "truncated fmt": riff(good)[:30],
    }
    decoded_as_before(files[case])


def test_too_long_is_refused_from_the_header_before_any_sample_is_read(monkeypatch, tmp_path):
    data = plain("s16", channels=2, frames=3 * 8000, rate=8000)  # 3 s
    path = tmp_path / "long.wav"
    path.write_bytes(data)
    expected = {}
    for limits in ({"max_seconds": 1.0}, {"max_samples": 10_000}):
        with pytest.raises(decode_limits.DecodeLimitExceeded) as caught:
            audio.decode_av(data, **limits)
        expected[str(limits)] = str(caught.value)

    def no_samples(*args):
        raise AssertionError("samples were read")

    monkeypatch.setattr(wav, "_convert", no_samples)
    for source in (data, path):
        for limits in ({"max_seconds": 1.0}, {"max_samples": 10_000}):
            with pytest.raises(decode_limits.DecodeLimitExceeded) as caught:
                audio.decode(source, **limits)
            assert str(caught.value) == expected[str(limits)]
    assert expected[str({"max_seconds": 1.0})] == (
        "the file says it holds 3.0 s of audio (2 channels at 8000 Hz), more than the pack decodes: at most "
        "0.0166667 minutes and 115,200,000 samples over all channels (decode limits)")


def test_just_over_twenty_minutes_is_refused_and_twenty_decoded():
    rate = 1000  # 20 minutes of 8-bit mono at 1 kHz: 1.2 MB
    for seconds, refused in ((1200, False), (1201, True)):
        data = riff(fmt(1, 1, rate, 8), chunk(b"data", bytes([128]) * (seconds * rate)))
        if not refused:
            assert both(data)["waveform"].shape[-1] == 1_200_000
            continue
        with pytest.raises(decode_limits.DecodeLimitExceeded) as caught:
            audio.decode(data)
        assert str(caught.value) == ("the file says it holds 20.0 minutes of audio (1 channel at 1000 Hz), more than "
                                     f"the pack decodes: {LIMITS}")
        with pytest.raises(decode_limits.DecodeLimitExceeded, match=r"\(decode limits\)"):
            audio.decode_av(data)


def test_a_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(decode_limits.DecodeError, match="FileNotFoundError"):
        audio.decode(tmp_path / "gone.wav")


def test_headerless_results_and_their_container_check_still_work(monkeypatch):
    layout = audio.RawLayout("s16le", 24000, 1)
    raw = samples("s16", 2400, 1)
    decoded = audio.decoder(layout)(raw)
    assert torch.equal(decoded["waveform"], audio.decode_raw(raw, layout)["waveform"])
    wrapped = riff(fmt(1, 1, 24000, 16), chunk(b"data", raw))  # the model sent a WAV after all
    no_pyav(monkeypatch)
    assert torch.equal(audio.decoder(layout)(wrapped)["waveform"], decoded["waveform"])


@pytest.mark.parametrize("container, codec, channels", [("flac", "flac", 8), ("w64", "pcm_s16le", 12)])
def test_the_pyav_path_decodes_eight_channels_and_more_without_crashing(container, codec, channels):
    """PyAV 18 crashes the process in to_ndarray on planar frames of 8+ channels: such files are read packed."""
    stored = np.frombuffer(samples("s16", 5000, channels, seed=channels), "<i2").reshape(5000, channels)
    layout = "7.1" if channels == 8 else f"{channels} channels"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=48000, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stored).reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = 48000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    decoded = audio.decode(buffer.getvalue())["waveform"]
    assert torch.equal(decoded[0], torch.from_numpy(stored.T.astype(np.float32) / 32768))
    data = riff(fmt(1, channels, 48000, 16), chunk(b"data", stored.tobytes()))
    assert torch.equal(both(data)["waveform"], decoded)


def test_whenever_the_fast_path_takes_a_mangled_file_pyav_reads_the_same_samples():
    """Seeded random damage to the headers, sizes and length of WAVs of every kind: the fast path either
    declines (PyAV decodes or fails as before) or gives exactly PyAV's samples; it never raises on its own."""
    import random

    rnd = random.Random(13)
    bases = [plain(kind, channels=channels, frames=300, rate=rate, extensible=extensible,
                   before=[chunk(b"LIST", b"INFOabcd" + bytes(channels))], after=[chunk(b"JUNK", b"x" * channels)])
             for kind in KINDS for channels, rate, extensible in ((1, 8000, False), (2, 44100, True), (3, 48000, False))]
    taken = 0
    for _ in range(600):
        data = bytearray(rnd.choice(bases))
        for _ in range(rnd.randrange(1, 4)):
            op = rnd.random()
            if op < 0.5 and data:
                data[rnd.randrange(min(len(data), 120))] = rnd.randrange(256)
            elif op < 0.65:
                data = data[:rnd.randrange(len(data) + 1)]
            elif op < 0.8:
                data += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
            else:
                for tag in (b"data", b"LIST", b"fmt ", b"JUNK"):
                    at = data.find(tag, 12, 200)
                    if at >= 0 and rnd.random() < 0.5:
                        size = rnd.choice([0, 0xFFFFFFFF, rnd.randrange(4000), rnd.randrange(40)])
                        struct.pack_into("<I", data, at + 4, size)
                        break
        data = bytes(data)
        fast = wav.decode(data)
        if fast is not None:
            slow = audio.decode_av(data)
            assert fast["sample_rate"] == slow["sample_rate"] and identical(fast["waveform"], slow["waveform"]), data[:80]
            taken += 1
    assert 200 < taken < 550  # both sides of the decision were exercised
