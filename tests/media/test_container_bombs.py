"""Issue 18 case 9: a file cannot make FFmpeg allocate far more memory than the file holds before any decode limit
applies: through Load Audio from URL with a short data: URI, or a fal result.

- A 100-byte WAV (or AVI) whose LIST/INFO chunk claims 1 GiB made FFmpeg zero-fill a gigabyte: such sizes are cut to
  the end of the file before PyAV opens it (the samples keep FFmpeg's reading of a streamed file).
- An MP3 (or a WAV's or AIFF's id3 chunk, an ADTS AAC stream, a WMA's header) with a 200 KB compressed ID3v2
  frame that states 200 MB inflated: FFmpeg inflated it into a buffer that size (+0.6 GB). Such tags are skipped
  whole (the pack uses no tag).
- An M4A with a 200 KB compressed movie header ('cmov') stating 200 MB: FFmpeg inflated it (+0.2 GB, more when
  nested). Such headers are skipped (modern files have none).
- A 60-byte "ffconcat" file made FFmpeg read a local audio file named in it: only audio containers are opened."""

import base64
import functools
import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib

import av
import numpy as np
import pytest
import torch

from fal_emulator import encode_sine
from support import PACK_DIR, pack_module

audio = pack_module("media.audio")
wav = pack_module("media.wav")
containers = pack_module("media.containers")

GIB = 1 << 30
ALAW_FMT = b"fmt " + struct.pack("<IHHIIHH", 16, 6, 1, 8000, 8000, 1, 8)  # G.711 A-law: PyAV decodes it
PCM_FMT = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
SAMPLES = bytes(range(256)) * 4


def info(claimed: int = GIB) -> bytes:
    """A LIST/INFO chunk whose size (and its one entry's) claims `claimed` bytes; it holds 12."""
    return b"LIST" + struct.pack("<I", claimed) + b"INFO" + b"INAM" + struct.pack("<I", claimed - 12) + b"abcd"


def riff(form: bytes, *chunks: bytes, magic: bytes = b"RIFF") -> bytes:
    body = form + b"".join(chunks)
    return magic + struct.pack("<I" if magic != b"RIFX" else ">I", len(body)) + body


def data(samples: bytes = SAMPLES) -> bytes:
    return b"data" + struct.pack("<I", len(samples)) + samples


def synchsafe(n: int) -> bytes:
    return bytes([n >> 21 & 0x7F, n >> 14 & 0x7F, n >> 7 & 0x7F, n & 0x7F])


@functools.lru_cache(maxsize=None)
def id3_bomb(inflated: int = 200 << 20, version: int = 4, footer: bool = False) -> bytes:
    """An ID3v2 tag with one compressed text frame stating (and inflating to) `inflated` bytes."""
    packer, chunk = zlib.compressobj(9), b"a" * (1 << 20)
    compressed = packer.compress(b"\x03") + b"".join(packer.compress(chunk) for _ in range(inflated >> 20))
    payload = struct.pack(">I", inflated + 1) + compressed + packer.flush()
    size = synchsafe(len(payload)) if version == 4 else struct.pack(">I", len(payload))
    frame = b"TXXX" + size + b"\x00\x09" + payload  # compressed, with its inflated length
    body = synchsafe(len(frame))
    tag = b"ID3" + bytes([version, 0, 0x10 if footer else 0]) + body + frame
    return tag + (b"3DI" + bytes([version, 0, 0x10]) + body if footer else b"")


def aiff(*chunks: bytes) -> bytes:
    comm = b"COMM" + struct.pack(">IhIh", 18, 1, 512, 16) + bytes.fromhex("400bfa00000000000000")  # 8000 Hz mono
    ssnd = b"SSND" + struct.pack(">III", 8 + 1024, 0, 0) + SAMPLES
    body = b"AIFF" + comm + ssnd + b"".join(chunks)
    return b"FORM" + struct.pack(">I", len(body)) + body


def half_second(container_format: str, codec: str, dtype, sample_format: str) -> bytes:
    """Half a second of 8 kHz mono silence in `container_format`, encoded with `codec`."""
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4000), dtype=dtype), format=sample_format, layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def adts(tag: bytes = b"") -> bytes:
    """Half a second of AAC in an ADTS stream, `tag` between its first and second frame."""
    stream = half_second("adts", "aac", np.float32, "fltp")
    first = (stream[3] & 3) << 11 | stream[4] << 3 | stream[5] >> 5  # the frame length in its header
    return stream[:first] + tag + stream[first:]


def asf(*tags: bytes) -> bytes:
    """Half a second of PCM in an ASF (WMA) file, each of `tags` an "ID3" entry of its header's metadata."""
    file = bytearray(half_second("asf", "pcm_s16le", np.int16, "s16"))
    if not tags:
        return bytes(file)
    name = "ID3\0".encode("utf-16-le")
    body = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<H", len(name)) + name + struct.pack("<HH", 1, len(tag)) + tag for tag in tags)  # byte arrays
    extended_content = bytes.fromhex("40a4d0d207e3d21197f000a0c95ea850") + struct.pack("<Q", 24 + len(body)) + body
    size, count = struct.unpack("<QI", file[16:28])
    struct.pack_into("<QI", file, 16, size + len(extended_content), count + 1)  # the header object holds one more
    return bytes(file[:30] + extended_content + file[30:])


def zlib_of_zeros(count: int) -> bytes:
    packer = zlib.compressobj(9)
    return b"".join(packer.compress(bytes(1 << 20)) for _ in range(count >> 20)) + packer.flush()


def atom(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def cmov_bomb(inflated: int = 200 << 20) -> bytes:
    """An M4A whose compressed movie header states (and inflates to) `inflated` bytes."""
    header = atom(b"dcom", b"zlib") + atom(b"cmvd", struct.pack(">I", inflated) + zlib_of_zeros(inflated))
    return atom(b"ftyp", b"M4A \0\0\0\0M4A mp42") + atom(b"moov", atom(b"cmov", header))


MP3 = encode_sine(seconds=0.3, rate=8000, channels=1, fmt="mp3")
CLEAN = {  # the files the bombs are made of, without their bomb
    "MP3": MP3, "WAV": riff(b"WAVE", ALAW_FMT, data()), "AIFF": aiff(), "ADTS": adts(), "ASF": asf(),
}
BOMBS = {
    # A-law samples FFmpeg decodes, then the tags after them (FFmpeg seeks past the data and reads them).
    "LIST after the samples": riff(b"WAVE", ALAW_FMT, data(), info()),
    # PCM the numpy fast path leaves to PyAV, as the chunk before the data hides the data.
    "LIST before the samples": riff(b"WAVE", PCM_FMT, info(), data()),
    # 36 bytes: the AVI demuxer reads the same INFO tags.
    "AVI": riff(b"AVI ", info()),
    "MP3 ID3": id3_bomb() + MP3,
    "WAV id3": riff(b"WAVE", ALAW_FMT, data(), b"id3 " + struct.pack("<I", len(id3_bomb())) + id3_bomb()),
    "AIFF ID3": aiff(b"ID3 " + struct.pack(">I", len(id3_bomb(version=3))) + id3_bomb(version=3)),
    "ADTS ID3": adts(id3_bomb()),
    "M4A cmov": cmov_bomb(),
    "ASF ID3": asf(*[id3_bomb(60 << 20)] * 3),  # 64 KB at most each
}

# Every way a file reaches PyAV: Load Audio from URL (a data: URI), a fal result's file (the job's decode after
# the stream decoding it while downloading gave way), and the PyAV decode itself.
MEASURE = textwrap.dedent("""
    import base64, json, os, sys
    sys.path.insert(0, {tests!r})
    from support import load_pack, pack_module, run_node
    pack = load_pack()
    audio, wavstream = pack_module("media.audio"), pack_module("media.wavstream")
    import av, numpy, torch  # loaded before measuring

    def peak_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024

    def streamed_result(path, data):
        stream = wavstream.WavStream()
        stream.start(0, len(data))
        stream.feed(data)
        return stream.result(path) or audio.decode(path)

    entries = {{
        "Load Audio from URL": lambda path, data: run_node(
            pack.NODE_CLASS_MAPPINGS["FalAudioLoadURL"], max_megabytes=1.0,
            url="data:audio/wav;base64," + base64.b64encode(data).decode())[0],
        "a fal result": streamed_result,
        "decode_av": lambda path, data: audio.decode_av(data),
    }}
    found = {{}}
    for name, data in json.loads(sys.stdin.read()).items():
        data = base64.b64decode(data)
        path = os.path.join({tmp!r}, "result.wav")
        with open(path, "wb") as file:
            file.write(data)
        for entry, run in entries.items():
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # the peak resident size starts again from now
            before = peak_mb()
            try:
                outcome = "decoded %s" % (tuple(run(path, data)["waveform"].shape),)
            except Exception as exc:
                outcome = str(exc)
            found[name + " via " + entry] = [peak_mb() - before, outcome]
    print(json.dumps(found))
""")


def test_chunks_claiming_a_gigabyte_do_not_raise_memory_by_it(tmp_path):
    payload = json.dumps({name: base64.b64encode(data).decode() for name, data in BOMBS.items()})
    out = subprocess.run([sys.executable, "-c", MEASURE.format(tests=str(PACK_DIR / "tests"), tmp=str(tmp_path))],
                         input=payload, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout)
    assert len(found) == 3 * len(BOMBS)
    for what, (rise, outcome) in found.items():
        assert rise < 100, (f"{what}: opening a file of a few bytes whose RIFF chunk claims 1 GiB raised the peak "
                            f"resident memory by {rise} MB ({outcome})")
    # FFmpeg still decodes the samples of a file whose tags claim too much; the others say what is wrong. (The
    # ADTS stream's length is estimated from its size, tag included: 30 minutes, refused by the decode limits.)
    for name in ("LIST after the samples", "MP3 ID3", "WAV id3", "AIFF ID3", "ASF ID3"):
        for entry in ("Load Audio from URL", "a fal result", "decode_av"):
            assert found[f"{name} via {entry}"][1].startswith("decoded (1, 1, "), (name, entry, found)
    assert "its 'LIST' chunk claims 1,073,741,824 bytes but only 16 follow it (a damaged or crafted file)" \
        in found["AVI via decode_av"][1]
    assert found["M4A cmov via decode_av"][1] == "the file has no audio stream"  # its compressed header is skipped


def test_a_file_with_overlong_tags_decodes_to_the_samples_of_the_same_file_without_them():
    clean = audio.decode(CLEAN["WAV"])
    for tags in (info(), info(len(SAMPLES) * 3)):
        got = audio.decode(riff(b"WAVE", ALAW_FMT, data(), tags))
        assert got["sample_rate"] == 8000 and torch.equal(got["waveform"], clean["waveform"])


@pytest.mark.parametrize("kind", ["MP3", "MP3 v2.3", "MP3 with a footer", "WAV", "AIFF", "ADTS", "ASF"])
def test_a_file_with_skipped_id3_tags_decodes_to_the_samples_of_the_same_file_without_them(kind):
    small = id3_bomb(1 << 20, version=3 if "2.3" in kind or kind == "AIFF" else 4, footer="footer" in kind)
    with_tag = {
        "WAV": riff(b"WAVE", ALAW_FMT, data(), b"id3 " + struct.pack("<I", len(small)) + small),
        "AIFF": aiff(b"ID3 " + struct.pack(">I", len(small)) + small),
        "ADTS": adts(small),
        "ASF": asf(small),
    }.get(kind, small + MP3)
    got, clean = audio.decode(with_tag), audio.decode(CLEAN[kind.split()[0]])
    assert got["sample_rate"] == clean["sample_rate"] and torch.equal(got["waveform"], clean["waveform"])
    assert [offset for offset, _ in containers.fixes(wav.open_reader(with_tag))[0]][:1] == [with_tag.index(small) + 3]


def test_a_file_cut_off_inside_its_tags_keeps_them():
    """A real file cut short inside its INFO tags: FFmpeg reads the tags that are there, as it did before."""
    import av

    name = b"INAM" + struct.pack("<I", 6) + b"Title\0"
    artist = b"IART" + struct.pack("<I", 40) + b"Someone"  # cut off
    whole = riff(b"WAVE", ALAW_FMT, data(), b"LIST" + struct.pack("<I", 4 + len(name) + 48) + b"INFO" + name + artist)
    fixed, wrong = audio._av_input(whole)
    assert "its 'LIST' chunk claims 66 bytes but only" in wrong
    with av.open(fixed) as container:
        assert container.metadata.get("title") == "Title"
    assert tuple(audio.decode(whole)["waveform"].shape) == (1, 1, 1024)


def test_streamed_samples_may_claim_more_than_the_file_holds():
    """The data chunk of a file being streamed states more (or 0, or 0xFFFFFFFF): nothing is cut, FFmpeg reads
    the samples there are."""
    for stated in (0, 0xFFFFFFFF, len(SAMPLES) * 10):
        file = riff(b"WAVE", ALAW_FMT, b"data" + struct.pack("<I", stated) + SAMPLES)
        assert containers.fixes(wav.open_reader(file)) == ([], "")
        assert tuple(audio.decode_av(file)["waveform"].shape) == (1, 1, 1024)


@pytest.mark.parametrize("magic", [b"RIFX", b"RF64"])
def test_big_endian_and_64_bit_riff_files_are_walked_too(magic):
    if magic == b"RIFX":  # sizes big-endian
        file = riff(b"WAVE", b"fmt " + struct.pack(">IHHIIHH", 16, 6, 1, 8000, 8000, 1, 8),
                    b"data" + struct.pack(">I", len(SAMPLES)) + SAMPLES,
                    b"LIST" + struct.pack(">I", GIB) + b"INFO", magic=magic)
    else:  # RF64: the data chunk's size is in the ds64 chunk; the tags after the samples are still read
        ds64 = b"ds64" + struct.pack("<IQQQI", 28, 0, len(SAMPLES), len(SAMPLES), 0)
        file = riff(b"WAVE", ds64, ALAW_FMT, b"data" + struct.pack("<I", 0xFFFFFFFF) + SAMPLES, info(), magic=magic)
    offset = file.index(b"LIST") + 4
    left = len(file) - offset - 4
    patches, wrong = containers.fixes(wav.open_reader(file))
    assert patches[0] == (offset, struct.pack(">I" if magic == b"RIFX" else "<I", left))
    assert wrong == f"its 'LIST' chunk claims {GIB:,} bytes but only {left} follow it (a damaged or crafted file)"


def test_a_riff_file_with_more_chunks_than_a_real_one_is_refused():
    """Walking millions of tiny chunks would take long: past a thousand the file is refused, saying why."""
    junk = b"JUNK" + struct.pack("<I", 0)
    file = riff(b"WAVE", PCM_FMT, junk * 1001, data())
    with pytest.raises(audio.DecodeError, match="the file has more than 1000 chunks besides its samples"):
        audio.decode(file)


FFCONCAT = b"ffconcat version 1.0\nfile 'private.wav'\n"
NOT_READ = ("it is in a format the pack does not read; it reads audio files such as WAV, MP3, FLAC, Ogg, Opus, "
            "MP4/M4A, AAC, WebM/Matroska, AIFF and CAF")


def test_a_file_naming_other_files_is_not_followed(nodes, tmp_path, monkeypatch):
    """FFmpeg's concat demuxer opened the files a tiny text file names, relative to ComfyUI's folder: Load Audio
    from URL (or a fal result) returned a local file's audio."""
    from support import run_node

    (tmp_path / "private.wav").write_bytes(encode_sine(seconds=1.0, rate=8000, channels=1))
    (tmp_path / "result.wav").write_bytes(FFCONCAT)
    monkeypatch.chdir(tmp_path)
    uri = "data:audio/wav;base64," + base64.b64encode(FFCONCAT).decode()
    with pytest.raises(Exception) as caught:
        run_node(nodes["FalAudioLoadURL"], url=uri, max_megabytes=1.0)
    assert str(caught.value) == ("Load Audio from URL (fal Audio): a data: URI (audio/wav) is not an audio file that "
                                 f"can be decoded ({NOT_READ}).")
    with pytest.raises(audio.DecodeError, match="it is in a format the pack does not read"):
        audio.decode(tmp_path / "result.wav")
