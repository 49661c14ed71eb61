"""A ComfyUI IMAGE as a PNG file (for models that take an image URL): lossless, no imaging library."""

import struct
import zlib

from ..core.errors import invalid


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels) -> bytes:
    """One image, a [H, W, C] uint8 array (C = 1, 3 or 4), as PNG bytes."""
    import numpy as np

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    # Filter type 0 (none) in front of every row.
    rows = np.concatenate([np.zeros((height, 1), dtype=np.uint8), pixels.reshape(height, width * channels)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _chunk(b"IEND", b""))


def image_png(image, node: str, field: str) -> bytes:
    """The single image of an IMAGE input ([1, H, W, C] float in 0..1) as PNG; refuses batches and bad values."""
    import torch

    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        raise invalid(node, field, "is not an IMAGE (a [batch, height, width, channels] tensor)")
    if image.shape[0] != 1:
        raise invalid(node, field, f"is a batch of {image.shape[0]} images; the model takes one (pick one first, "
                                   "e.g. with ImageFromBatch)")
    if 0 in image.shape:
        raise invalid(node, field, "is empty")
    if not torch.isfinite(image).all():
        raise invalid(node, field, "contains NaN or infinite values")
    pixels = image[0].detach().to("cpu", torch.float32).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return encode_png(pixels.numpy())
