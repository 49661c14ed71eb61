"""Files a workflow's loader nodes read (made here, small), and checks of the files a run writes."""

import math
import struct
import wave
import zlib
from pathlib import Path

UPLOAD_FLAGS = {"audio_upload": "audio", "image_upload": "image", "video_upload": "video"}


def tone_wav(path: Path, seconds=20.0, rate=8000, freq=220.0):
    frames = bytearray()
    for i in range(int(seconds * rate)):
        frames += struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


def grey_png(path: Path, width=64, height=64):
    raw = b"".join(b"\x00" + bytes([96, 96, 96]) * width for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def grey_mp4(path: Path, seconds=4.0, fps=8, size=32):  # Kling takes 3-20 s, MMAudio 1-30 s
    """A short silent H.264 MP4 of grey frames (what Load Video reads; the soundtrack comes from fal)."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 96, np.uint8), format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def make_input_files(server, workflow: dict, object_info: dict) -> list:
    """Every file a loader node of the workflow names (a COMBO with an upload flag: LoadAudio, LoadImage, ...),
    made in the server's input folder so the workflow runs as saved."""
    made = []
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if not info:
            continue
        values = node.get("widgets_values") or []
        position = 0
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
                is_widget = isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
                if not is_widget:
                    continue
                media = next((m for flag, m in UPLOAD_FLAGS.items() if options.get(flag)), None)
                if media and position < len(values) and isinstance(values[position], str):
                    target = server.base / "input" / values[position]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if media == "audio":
                        tone_wav(target)
                    elif media == "image":
                        grey_png(target)
                    elif media == "video":
                        grey_mp4(target)
                    else:
                        raise AssertionError(f"{node['type']}: no test file for a {media} input")
                    made.append(target)
                position += 1 + (1 if options.get("control_after_generate") or name in ("seed", "noise_seed")
                                 and kind == "INT" else 0)
    return made


def decode_audio(path: Path):
    """(mono samples as floats, sample rate) of a file's first audio stream, decoded by PyAV."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == "audio")
        rate = stream.codec_context.sample_rate
        chunks = []
        for frame in container.decode(stream):
            data = frame.to_ndarray().astype(np.float64)
            if frame.format.is_planar:
                data = data.mean(axis=0)
            else:
                data = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            chunks.append(data)
    return np.concatenate(chunks), rate


def dominant_hz(samples, rate) -> float:
    import numpy as np

    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))
