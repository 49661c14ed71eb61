"""Pictures of AUDIO: waveform and log-frequency spectrogram as ComfyUI IMAGE batches.

IMAGE is a float32 CPU tensor [B, H, W, 3] in 0..1; one picture per clip of the batch.
Both are plain torch/numpy (no plotting library), deterministic, and fast on long
tracks: the waveform reduces every pixel column to its min/max in one pass, the
spectrogram analyses one window per pixel column, whatever the length.
"""

import functools
import math
import re

from ..core.errors import invalid

_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

# Colour maps as evenly spaced anchors (RGB 0..1), interpolated linearly. Close
# approximations of the perceptually uniform maps of the same names.
COLOUR_MAPS = {
    "magma": [(0.001, 0.000, 0.014), (0.079, 0.054, 0.212), (0.232, 0.060, 0.438), (0.390, 0.100, 0.502),
              (0.550, 0.161, 0.506), (0.716, 0.215, 0.475), (0.869, 0.288, 0.409), (0.967, 0.440, 0.360),
              (0.995, 0.624, 0.427), (0.996, 0.812, 0.572), (0.987, 0.991, 0.750)],
    "viridis": [(0.267, 0.005, 0.329), (0.283, 0.141, 0.458), (0.254, 0.265, 0.530), (0.207, 0.372, 0.553),
                (0.164, 0.471, 0.558), (0.128, 0.567, 0.551), (0.135, 0.659, 0.518), (0.267, 0.749, 0.441),
                (0.478, 0.821, 0.318), (0.741, 0.873, 0.150), (0.993, 0.906, 0.144)],
    "gray": [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)],
}
TWO_COLOURS = "background to foreground"


def parse_colour(text: str, node: str, field: str):
    """'#1e90ff', '1e90ff' or '#19f' -> (r, g, b) in 0..1."""
    match = _HEX.fullmatch(str(text).strip())
    if not match:
        raise invalid(node, field, f"must be a hex colour like #1e90ff, got {str(text)[:20]!r}")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return tuple(int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def _batch(audio: dict, node: str, field: str):
    """[B, C, T] float32 CPU waveform (no copy when it already is one) and its rate."""
    import torch

    if not isinstance(audio, dict) or not isinstance(audio.get("waveform"), torch.Tensor):
        raise invalid(node, field, "is not an AUDIO value")
    waveform = audio["waveform"].detach().to("cpu", torch.float32)
    if waveform.dim() == 2:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 3 or 0 in waveform.shape:
        raise invalid(node, field, f"must be a non-empty [batch, channels, samples] waveform, got shape "
                                   f"{tuple(waveform.shape)}")
    rate = int(audio.get("sample_rate", 0))
    if rate <= 0:
        raise invalid(node, field, f"has an invalid sample rate {rate}")
    return waveform.contiguous(), rate


def _paint(mask, background, foreground):
    """[H, W] bool mask -> [H, W, 3] image."""
    import torch

    bg = torch.tensor(background, dtype=torch.float32)
    fg = torch.tensor(foreground, dtype=torch.float32)
    return torch.where(mask.unsqueeze(-1), fg, bg)


def waveform_images(audio: dict, width: int, height: int, background, foreground, node: str,
                    field: str = "audio"):
    """Peak waveform: each pixel column spans the min..max of its samples (all channels)."""
    import numpy as np
    import torch

    waveform, _ = _batch(audio, node, field)
    length = waveform.shape[-1]
    # Column j covers samples [j*T/W, (j+1)*T/W); with fewer samples than columns a column
    # shows the sample it falls on. reduceat does every column in one pass.
    starts = (np.arange(width, dtype=np.int64) * length) // width
    rows = torch.arange(height, dtype=torch.float32).unsqueeze(1)
    images = []
    for clip in waveform.numpy():
        # Reduce first, clean up after: only `width` values get clamped (NaN draws as silence).
        peak = np.nan_to_num(np.maximum.reduceat(clip, starts, axis=1).max(axis=0), nan=0.0)
        trough = np.nan_to_num(np.minimum.reduceat(clip, starts, axis=1).min(axis=0), nan=0.0)
        peak = torch.from_numpy(peak).clamp(-1.0, 1.0)
        trough = torch.from_numpy(trough).clamp(-1.0, 1.0)
        # Amplitude +1 is the top row, -1 the bottom; silence still draws the centre line.
        top = torch.floor((1.0 - peak) * 0.5 * (height - 1))
        bottom = torch.ceil((1.0 - trough) * 0.5 * (height - 1))
        images.append(_paint((rows >= top) & (rows <= bottom), background, foreground))
    return torch.stack(images).contiguous()


def _fft_size(rate: int) -> int:
    """About 80 ms windows: fine enough in frequency for the bass of a log axis."""
    return int(min(8192, max(256, 2 ** round(math.log2(rate * 0.08)))))


@functools.lru_cache(maxsize=8)
def _log_rows(rows: int, bins: int, rate: int, n_fft: int, min_frequency: float):
    """Where each image row (row 0 at the top, half the sample rate; the last row at
    min_frequency) reads the spectrum: the bins spanning its band (for its loudest one),
    or, where bands are narrower than a bin, the two bins around its centre (interpolated).
    Returns (band start/end pairs for reduceat, band rows mask, low bin, high bin, weight)."""
    import numpy as np

    ratio = (rate / 2.0) / min_frequency
    position = np.arange(rows - 1, -1, -1, dtype=np.float64) / max(rows - 1, 1)
    centres = min_frequency * ratio ** position * n_fft / rate  # in bins, top row first
    half_step = math.sqrt(ratio ** (1.0 / max(rows - 1, 1)))
    first = np.clip(np.ceil(centres / half_step), 0, bins - 1).astype(np.int64)
    last = np.clip(np.floor(centres * half_step), 0, bins - 1).astype(np.int64)
    banded = last > first  # the band holds two bins or more: show its loudest
    pairs = np.stack([first, last + 1], axis=1).reshape(-1)  # [start0, end0, start1, ...]
    low = np.clip(np.floor(centres), 0, bins - 1).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    weight = np.clip(centres - low, 0.0, 1.0).astype(np.float32)
    return pairs, banded, low, high, weight


def _colourise(values, anchors, steps: int = 4096):
    """[..., H, W] in 0..1 -> [..., H, W, 3] through evenly spaced colour anchors (a lookup
    table of `steps` entries interpolated between them: one gather per pixel)."""
    import torch

    table = torch.tensor(anchors, dtype=torch.float32)
    scaled = torch.linspace(0.0, len(anchors) - 1, steps)
    low = scaled.floor().long().clamp(max=len(anchors) - 2)
    fraction = (scaled - low).unsqueeze(-1)
    lookup = table[low] * (1.0 - fraction) + table[low + 1] * fraction
    index = (values.clamp(0.0, 1.0) * (steps - 1)).round_().long()
    return lookup[index]


def spectrogram_images(audio: dict, width: int, height: int, colour_map: str, db_range: float,
                       min_frequency: float, background, foreground, node: str, field: str = "audio"):
    """Log-frequency power spectrogram in dB (0 dB = a full-scale sine) of the channels' mix."""
    import numpy as np
    import torch

    waveform, rate = _batch(audio, node, field)
    nyquist = rate / 2.0
    if not 0 < min_frequency < nyquist:
        raise invalid(node, "min_frequency", f"is {min_frequency:g} Hz; it must be above 0 and below half the "
                                             f"sample rate ({nyquist:g} Hz)")
    batch, channels, length = waveform.shape
    n_fft = _fft_size(rate)
    # One analysis window per pixel column, centred on it: the cost depends on the image
    # size, not on the length of the track (long tracks are sampled, short ones overlap).
    hop = max(1, length // width)
    offset = (hop - n_fft) // 2  # where the first window starts, relative to sample 0
    left = max(0, -offset)
    right = max(0, offset + (width - 1) * hop + n_fft - length)
    signal = waveform.reshape(batch * channels, length)
    if left or right:
        signal = torch.nn.functional.pad(signal, (left, right))
    signal = signal.contiguous()
    frames = torch.as_strided(signal, (batch, channels, width, n_fft),
                              (channels * signal.stride(0), signal.stride(0), hop, 1),
                              signal.storage_offset() + offset + left)
    mixed = frames.mean(dim=1) if channels > 1 else frames[:, 0].clone()  # [B, W, n_fft]
    window = torch.hann_window(n_fft, dtype=torch.float32)
    mixed *= window
    spectrum = torch.fft.rfft(mixed, dim=-1)
    # Scaled so that a full-scale sine peaks at 1.0 (0 dB).
    scale = float(window.sum()) / 2.0
    power = (spectrum.real.square() + spectrum.imag.square()) / (scale * scale)  # [B, W, bins]
    power = torch.nn.functional.pad(torch.nan_to_num(power, nan=0.0, posinf=1.0), (0, 1))  # a spare bin for reduceat
    spectra = power.numpy()
    pairs, banded, low, high, weight = _log_rows(height, spectra.shape[-1] - 1, rate, n_fft, min_frequency)
    loudest = np.maximum.reduceat(spectra, pairs, axis=-1)[..., ::2]  # [B, W, H]
    between = spectra[..., low] * (1.0 - weight) + spectra[..., high] * weight
    rows = torch.from_numpy(np.where(banded, loudest, between)).transpose(1, 2)  # [B, H, W]
    level = (10.0 * torch.log10(rows.clamp(min=1e-20)) + db_range) / db_range
    anchors = [background, foreground] if colour_map == TWO_COLOURS else COLOUR_MAPS[colour_map]
    return _colourise(level, anchors).contiguous()
