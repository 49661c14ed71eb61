"""ComfyUI IMAGE batches as video for video-to-audio models, and soundtracks fitted to them.

IMAGE is a float32 tensor [N, H, W, 3] in 0..1. It is sent as an H.264 MP4 (yuv420p,
the one pixel format every decoder takes; odd sizes are padded to even by repeating
the last row/column). The encoding is deterministic, so the same frames give the same
upload and the same request identity: re-queueing never pays twice.
"""


from ..core import comfy
from ..core.errors import invalid

# Frames converted to 8-bit at a time: bounded memory for long, large batches.
_CHUNK = 16
# Constant quality, fast preset: the model samples the video at low resolution and frame
# rate, so a visually near-lossless upload is plenty and keeps it small.
_X264_OPTIONS = {"crf": "20", "preset": "veryfast"}


def frame_rate(fps: float):
    """The exact rate written to the MP4 (29.97 -> 2997/100)."""
    from fractions import Fraction  # imports decimal: a few ms, paid on first use only

    return Fraction(float(fps)).limit_denominator(1001)


def frames_seconds(count: int, fps: float) -> float:
    return count / float(frame_rate(fps))


def check_frames(images, node: str, field: str = "images"):
    """Refuse what cannot be encoded, before anything is paid for; return [N, H, W, C]."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise invalid(node, field, "is not an IMAGE batch")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
        raise invalid(node, field, f"must be an IMAGE batch [frames, height, width, 3], got shape "
                                   f"{tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise invalid(node, field, "is empty (no frames)")
    return images


def encode_mp4(images, fps: float) -> bytes:
    """Encode an IMAGE batch [N, H, W, C] as an H.264 MP4 at `fps` frames per second."""
    import io

    import av
    import torch

    count, height, width = images.shape[0], images.shape[1], images.shape[2]
    pad_h, pad_w = height % 2, width % 2
    rate = frame_rate(fps)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + pad_w, height + pad_h
        stream.pix_fmt = "yuv420p"
        stream.options = dict(_X264_OPTIONS)
        for start in range(0, count, _CHUNK):
            comfy.throw_if_interrupted()
            chunk = images[start:start + _CHUNK].detach().to("cpu", torch.float32)
            if chunk.shape[-1] == 1:
                chunk = chunk.expand(-1, -1, -1, 3)
            chunk = torch.nan_to_num(chunk[..., :3], nan=0.0).clamp(0.0, 1.0)
            pixels = (chunk * 255.0).round().to(torch.uint8)
            if pad_h or pad_w:
                # Repeat the last row/column: no visible border for the model to "hear".
                pixels = torch.nn.functional.pad(pixels.permute(0, 3, 1, 2).float(), (0, pad_w, 0, pad_h),
                                                 mode="replicate").to(torch.uint8).permute(0, 2, 3, 1)
            for offset, frame_pixels in enumerate(pixels.contiguous().numpy()):
                frame = av.VideoFrame.from_ndarray(frame_pixels, format="rgb24")
                frame.pts = start + offset
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def fit_length(audio: dict, seconds: float) -> dict:
    """Trim or pad (with silence) an AUDIO batch to exactly `seconds` at its own rate."""
    import torch

    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    samples = max(1, round(seconds * rate))
    length = waveform.shape[-1]
    if length >= samples:
        waveform = waveform[..., :samples]
    else:
        waveform = torch.nn.functional.pad(waveform, (0, samples - length))
    return {"waveform": waveform.to("cpu", torch.float32).contiguous(), "sample_rate": rate}


# -- ComfyUI's VIDEO (comfy_api VideoInput) in and out ------------------------------------------

# Container signatures: (offset, bytes, extension, content type).
_CONTAINERS = ((4, b"ftyp", "mp4", "video/mp4"), (0, b"\x1aE\xdf\xa3", "webm", "video/webm"),
               (8, b"AVI ", "avi", "video/x-msvideo"), (0, b"FLV", "flv", "video/x-flv"))


def video_file(video, node: str, field: str):
    """A VIDEO input as (bytes, content type, extension): its file as ComfyUI would save it (a loaded file is
    remuxed without re-encoding, frames are encoded), refused before anything is paid if it cannot be."""
    import io

    if not hasattr(video, "save_to"):
        raise invalid(node, field, "is not a VIDEO (connect e.g. Load Video or Create Video)")
    buffer = io.BytesIO()
    try:
        video.save_to(buffer)
    except Exception as exc:  # noqa: BLE001 - any failure of ComfyUI's writer: refuse before paying
        raise invalid(node, field, f"could not be saved as a video file ({type(exc).__name__}: {exc})") from None
    data = buffer.getvalue()
    if not data:
        raise invalid(node, field, "is an empty video")
    for offset, magic, extension, content_type in _CONTAINERS:
        if data[offset:offset + len(magic)] == magic:
            return data, content_type, extension
    return data, "video/mp4", "mp4"


def video_from_file(path):
    """A kept video file as ComfyUI's VIDEO (comfy_api's VideoFromFile), for Save Video and other video nodes."""
    from comfy_api.input_impl import VideoFromFile  # only inside ComfyUI (tests fake it)

    return VideoFromFile(str(path))
