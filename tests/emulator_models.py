"""Realistic answers of the voice, music and sound-effect endpoints for the fal emulator (used when a test
sets no handler).

Each model answers in the shape fal's types give (tests/contracts.json "output"), with the
formats the real service uses: speech as MP3/FLAC/WAV whose length follows the text, Wizper
as a text-only result (transcript + timed chunks, no file), Demucs as one file per stem as
long as the uploaded input, voice isolation as an MP3 of the input's length.
"""

from __future__ import annotations

import functools
import io
import math
import pathlib
import uuid
from fractions import Fraction
from typing import Any, Callable

SECONDS_PER_CHARACTER = 0.06  # ~ 15 characters a second of speech
DEMUCS_STEMS = ("vocals", "drums", "bass", "other", "guitar", "piano")
SIX_STEM_MODELS = ("htdemucs_6s",)
# Each stem is a sine at its own frequency, so a test can tell which stem came out where.
STEM_HZ = {"vocals": 440.0, "drums": 110.0, "bass": 55.0, "other": 660.0, "guitar": 330.0, "piano": 880.0}
LYRIC_LINES = ("Streetlights hum a quiet tune", "Coffee steam and a paper moon", "Slow down, let the city breathe",
               "Every step a little lighter on the street")
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _tone(seconds: float, rate: int, channels: int, freq: float):
    import numpy as np

    t = np.arange(max(1, int(round(seconds * rate))), dtype=np.float64) / rate
    return np.stack([0.4 * np.sin(2 * math.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def _file(emulator, samples, rate: int, fmt: str) -> dict:
    from fal_emulator import AUDIO_FORMATS, encode_samples

    data = encode_samples(samples, rate, fmt)
    content_type = AUDIO_FORMATS[fmt][2]
    name = f"output.{fmt}"
    return {"url": emulator.add_file(data, name, content_type), "content_type": content_type, "file_name": name,
            "file_size": len(data)}


def decode_input(emulator, url: str):
    """The uploaded clip as (float32 samples [C, T], rate)."""
    import av
    import numpy as np

    with av.open(io.BytesIO(emulator.file_bytes(url))) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [frame.to_ndarray().astype(np.float32) for frame in container.decode(stream)]
    samples = np.concatenate(chunks, axis=1)
    if samples.shape[0] != stream.codec_context.channels:  # packed (interleaved) samples
        samples = samples.reshape(-1, stream.codec_context.channels).T
    if samples.dtype != np.float32 or np.abs(samples).max() > 1.5:
        samples = samples / 32768.0
    return np.ascontiguousarray(samples, dtype=np.float32), rate


def speech_seconds(text: str) -> float:
    return round(max(0.5, min(30.0, len(text) * SECONDS_PER_CHARACTER)), 3)


def elevenlabs_tts(emulator, payload: dict) -> dict:
    seconds = speech_seconds(payload["text"])
    result: dict[str, Any] = {"audio": _file(emulator, _tone(seconds, 44100, 1, 200.0), 44100, "mp3")}
    if payload.get("timestamps"):
        words = payload["text"].split()
        step = seconds / max(1, len(words))
        result["timestamps"] = [{"text": word, "start": round(i * step, 3), "end": round((i + 1) * step, 3),
                                 "type": "word"} for i, word in enumerate(words)]
    return result


def minimax_speech(emulator, payload: dict) -> dict:
    audio = payload.get("audio_setting", {})
    fmt = audio.get("format", "mp3")
    if fmt == "pcm":
        raise ValueError("the emulator does not make headerless pcm")
    rate, channels = int(audio.get("sample_rate", 32000)), int(audio.get("channel", 1))
    seconds = speech_seconds(payload["prompt"])
    return {"audio": _file(emulator, _tone(seconds, rate, channels, 240.0), rate, fmt),
            "duration_ms": int(seconds * 1000)}


def kokoro(emulator, payload: dict) -> dict:
    seconds = speech_seconds(payload.get("prompt", ""))
    return {"audio": _file(emulator, _tone(seconds, 24000, 1, 180.0), 24000, "wav")}


def wizper(emulator, payload: dict) -> dict:
    """A text-only result: one chunk per 2.5 s of the input, the last one left open as Whisper does."""
    samples, rate = decode_input(emulator, payload["audio_url"])
    seconds = samples.shape[-1] / rate
    count = max(1, math.ceil(seconds / 2.5))
    chunks = []
    for index in range(count):
        end = round(min(seconds, (index + 1) * 2.5), 2)
        line = LYRIC_LINES[index % len(LYRIC_LINES)]
        if payload.get("task") == "translate":
            line = line.upper()
        chunks.append({"timestamp": [round(index * 2.5, 2), None if index == count - 1 else end], "text": " " + line})
    language = payload.get("language") or "en"
    return {"text": "".join(c["text"] for c in chunks).strip(), "chunks": chunks, "languages": [language]}


def demucs(emulator, payload: dict) -> dict:
    samples, rate = decode_input(emulator, payload["audio_url"])
    model = payload.get("model", "htdemucs_6s")
    made = DEMUCS_STEMS if model in SIX_STEM_MODELS else DEMUCS_STEMS[:4]
    wanted = payload.get("stems") or made
    fmt = payload.get("output_format", "mp3")
    out_rate = rate if fmt != "mp3" or rate in MP3_RATES else 44100
    seconds, channels = samples.shape[-1] / rate, samples.shape[0]
    result: dict[str, Any] = {name: None for name in DEMUCS_STEMS}
    for name in made:
        if name in wanted:
            result[name] = _file(emulator, _tone(seconds, out_rate, channels, STEM_HZ[name]), out_rate, fmt)
    return result


def audio_isolation(emulator, payload: dict) -> dict:
    samples, rate = decode_input(emulator, payload["audio_url"])
    out_rate = rate if rate in MP3_RATES else 44100
    seconds = samples.shape[-1] / rate
    return {"audio": _file(emulator, _tone(seconds, out_rate, samples.shape[0], 300.0), out_rate, "mp3")}


# -- the music and sound-effect models of fal's current catalog ------------------------------------

ELEVENLABS_CODECS = {"mp3": "mp3", "opus": "opus", "pcm": "pcm", "ulaw": "ulaw", "alaw": "alaw"}


def _elevenlabs_file(emulator, payload: dict, seconds: float, freq: float) -> dict:
    """ElevenLabs answers in the output_format asked for (codec_rate[_bitrate]): mono; pcm_*, ulaw_8000 and
    alaw_8000 as headerless samples."""
    codec, rate = payload.get("output_format", "mp3_44100_128").split("_")[:2]
    return _file(emulator, _tone(seconds, int(rate), 1, freq), int(rate), ELEVENLABS_CODECS[codec])


def elevenlabs_sound_effects_v2(emulator, payload: dict) -> dict:
    seconds = payload.get("duration_seconds") or 3.0  # "auto": the model picks a length
    return {"audio": _elevenlabs_file(emulator, payload, seconds, 520.0)}


def elevenlabs_music(emulator, payload: dict) -> dict:
    plan = payload.get("composition_plan")
    if plan:
        seconds = sum(section["duration_ms"] for section in plan["sections"]) / 1000.0
    else:
        seconds = (payload.get("music_length_ms") or 30000) / 1000.0
    return {"audio": _elevenlabs_file(emulator, payload, seconds, 330.0)}


def minimax_music_v26(emulator, payload: dict) -> dict:
    """Stereo, in audio_setting's format and rate (pcm: headerless 16-bit interleaved); 30 s here."""
    setting = payload.get("audio_setting") or {}
    rate, fmt = int(setting.get("sample_rate", 44100)), setting.get("format", "mp3")
    return {"audio": _file(emulator, _tone(30.0, rate, 2, 262.0), rate, fmt)}


def stable_audio_25(emulator, payload: dict) -> dict:
    """44.1 kHz mono WAV as long as asked (audio-to-audio without total_seconds: as long as the input)."""
    seconds = payload.get("seconds_total") or payload.get("total_seconds")
    if not seconds:
        samples, rate = decode_input(emulator, payload["audio_url"])
        seconds = samples.shape[-1] / rate
    return {"audio": _file(emulator, _tone(float(seconds), 44100, 1, 392.0), 44100, "wav"),
            "seed": payload.get("seed", 0)}


def lyria3(emulator, payload: dict) -> dict:
    """30 s of 44.1 kHz stereo MP3 and the lyrics it sang."""
    return {"audio": _file(emulator, _tone(30.0, 44100, 2, 294.0), 44100, "mp3"),
            "lyrics": "[Verse]\n" + "\n".join(LYRIC_LINES)}


MODELS: dict[str, Callable[[Any, dict], Any]] = {
    "fal-ai/elevenlabs/tts/eleven-v3": elevenlabs_tts,
    "fal-ai/minimax/speech-2.8-hd": minimax_speech,
    "fal-ai/kokoro/american-english": kokoro,
    "fal-ai/wizper": wizper,
    "fal-ai/demucs": demucs,
    "fal-ai/elevenlabs/audio-isolation": audio_isolation,
    "fal-ai/elevenlabs/sound-effects/v2": elevenlabs_sound_effects_v2,
    "fal-ai/elevenlabs/music": elevenlabs_music,
    "fal-ai/minimax-music/v2.6": minimax_music_v26,
    "fal-ai/stable-audio-25/text-to-audio": stable_audio_25,
    "fal-ai/stable-audio-25/audio-to-audio": stable_audio_25,
    "fal-ai/stable-audio-25/inpaint": stable_audio_25,
    "fal-ai/lyria3": lyria3,
}


# -- Every node's endpoint answered (tests that run all nodes) ------------------------------------------------

@functools.lru_cache(maxsize=None)
def mp4_with_sound(seconds, rate=44100, channels=2, fps=24, size=32):
    """An MP4 (H.264 + AAC), as MMAudio returns it: a 440 Hz sine under a few grey frames."""
    import av
    import numpy as np

    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout=layout)
        for i in range(max(1, round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 128, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(round(seconds * rate)) / rate
        samples = np.stack([0.5 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)]).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=sound.codec_context.format, layout=layout, rate=rate, frame_size=1024)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return buffer.getvalue()


def video_result(fal, seconds, **kwargs):
    data = mp4_with_sound(seconds, **kwargs)
    url = fal.add_file(data, "output.mp4", "video/mp4")
    return {"video": {"url": url, "content_type": "video/mp4", "file_name": "output.mp4", "file_size": len(data)}}


def serve_every_endpoint(fal, cls):
    if getattr(cls, "ENDPOINT", "") and not fal.has_model(cls.ENDPOINT):  # else its realistic emulator model
        if cls.RESULT_FILE == "video":
            fal.set_handler(cls.ENDPOINT, lambda payload: video_result(fal, 1.2))
        else:
            fal.set_handler(cls.ENDPOINT, lambda payload: fal.file_result(key=cls.RESULT_FILE, seconds=1.0))


def serve_every_model(fal, nodes):
    """Answer like the real services, with short low-rate files (ACE-Step: as long as asked, else 40 s)."""
    for name, cls in nodes.items():
        endpoint = getattr(cls, "ENDPOINT", "")
        # A node's own result_files (a hook's: stems, a transcript), not the shared one of every spec node.
        own = any("result_files" in vars(c) for c in cls.__mro__ if c.__name__ not in ("SpecNode", "FalAudioNode"))
        if not endpoint or (fal.has_model(endpoint) and (own or catalog_model(endpoint))):
            continue  # stems, a transcript, a generated node: the emulator's model of the endpoint answers

        def handler(payload, cls=cls, endpoint=endpoint):
            seconds = float(payload.get("duration", 40.0)) if endpoint.startswith("fal-ai/ace-step") else 2.0
            result = fal.file_result(key=cls.RESULT_FILE, seconds=seconds, rate=8000, channels=1)
            if endpoint.startswith("fal-ai/ace-step"):
                result.update(seed=payload["seed"], tags=payload.get("tags", "pop, upbeat"),
                              lyrics=payload.get("lyrics", "[inst]"))
            return result

        fal.set_handler(endpoint, handler)


# -- every other endpoint of the pack's catalog (data/catalog.json) ------------------------------

class FakeVideo:
    """ComfyUI's VIDEO as far as the pack uses it (comfy_api's VideoFromFile): a file it saves elsewhere."""

    def __init__(self, file):
        self.file = file

    def get_stream_source(self):
        return self.file

    def save_to(self, path, format=None, codec=None, metadata=None):
        data = pathlib.Path(self.file).read_bytes() if isinstance(self.file, str) else self.file.getvalue()
        if hasattr(path, "write"):
            path.write(data)
        else:
            pathlib.Path(path).write_bytes(data)


_catalog: dict | None = None
_video: bytes | None = None
CATALOG_SECONDS = 0.5  # tiny files: the whole catalog's tests stay fast


def catalog() -> dict:
    global _catalog
    if _catalog is None:
        import json

        path = pathlib.Path(__file__).resolve().parent.parent / "data" / "catalog.json"
        _catalog = json.loads(path.read_text(encoding="utf-8"))["endpoints"]
    return _catalog


def tiny_mp4() -> bytes:
    """A 0.5 s 32x32 H.264 MP4 with an AAC soundtrack (encoded once)."""
    global _video
    if _video is None:
        import av
        import numpy as np

        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as out:
            video = out.add_stream("libx264", rate=8)
            video.width = video.height = 32
            video.pix_fmt = "yuv420p"
            sound = out.add_stream("aac", rate=16000, layout="mono")
            for index in range(4):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 60, np.uint8), format="rgb24")
                frame.pts = index
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            samples = _tone(CATALOG_SECONDS, 16000, 1, 330.0)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate = 16000
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000, frame_size=1024)
            for converted in [*resampler.resample(chunk), *resampler.resample(None)]:
                out.mux(sound.encode(converted))
            out.mux(sound.encode(None))
        _video = buffer.getvalue()
    return _video


def _catalog_value(emulator, name: str, out: dict):
    """What fal answers in an output field of the declared kind."""
    kind, fal = out["kind"], out["fal"]

    def audio(freq):
        return _file(emulator, _tone(CATALOG_SECONDS, 16000, 1, freq), 16000, "wav")

    def video():
        data = tiny_mp4()
        return {"url": emulator.add_file(data, "output.mp4", "video/mp4"), "content_type": "video/mp4",
                "file_name": "output.mp4", "file_size": len(data)}

    if kind == "audio":
        return audio(220.0)
    if kind == "audio_list":
        return [audio(220.0), audio(440.0)]
    if kind == "video":
        return video()
    if kind == "video_list":
        return [video()]
    if kind == "url":
        return {"url": emulator.add_file(b"\x00" * 64, f"{name}.bin", "application/octet-stream"),
                "content_type": "application/octet-stream", "file_name": f"{name}.bin", "file_size": 64}
    if kind == "text":  # an id another model takes (a cloned voice) looks like one
        return f"voice_{uuid.uuid4().hex[:12]}" if "voice_id" in name else f"emulated {name}"
    if "enum" in fal:
        return fal["enum"][0]
    if fal["type"] == "array" and {"text", "start", "end"} <= set((fal.get("items") or {}).get("properties") or {}):
        return [{"text": text, "start": start, "end": start + 0.4, "type": "word", "speaker_id": "speaker_0"}
                for text, start in (("Hello", 0.0), ("there.", 0.5), ("General", 2.0), ("Kenobi!", 2.5))]
    return {"integer": 1, "number": 1.5, "boolean": True, "string": f"emulated {name}", "array": [],
            "object": {}}.get(fal["type"], {})


_whole_answer: set | None = None


def _whole_answer_nodes() -> set:
    """The curated nodes (data/nodes/*.json) that show fal's whole response (the flagships that were generated
    nodes): the emulator answers them like a generated node, with every output field of fal's schema."""
    global _whole_answer
    if _whole_answer is None:
        import json

        specs = {}
        for path in (pathlib.Path(__file__).resolve().parent.parent / "data" / "nodes").glob("*.json"):
            specs.update(json.loads(path.read_text(encoding="utf-8")))
        _whole_answer = {name for name, spec in specs.items()
                         if any(out.get("as") == "response" for out in spec["outputs"])}
    return _whole_answer


def catalog_model(endpoint: str):
    """The answer of a catalog endpoint the pack generates a node for, or of a flagship (None for others): every
    output field of its spec, files of the declared kinds (audio WAV, video MP4, other files), text and values."""
    spec = catalog().get(endpoint)
    if spec is None or "curated" in spec and spec["curated"] not in _whole_answer_nodes():
        return None

    def answer(emulator, payload: dict) -> dict:
        result = {out["name"]: _catalog_value(emulator, out["name"], out) for out in spec["outputs"]
                  if out["kind"] != "srt"}  # derived by the node from the timed words
        if "seed" in spec and "seed" in result:
            result["seed"] = payload.get("seed", 0)
        return result

    return answer
