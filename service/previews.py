"""Decoded latents as image files: uint8 pixels to PNG, JPEG or WebP bytes at a requested size."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")
JPEG_QUALITY = 90
WEBP_QUALITY = 90


@dataclass(frozen=True)
class EncodedPicture:
    """An encoded image: its bytes, Pillow format name and pixel size."""

    data: bytes
    format: str
    width: int
    height: int


def encode_picture(pixels: np.ndarray, image_format: str = "PNG", size: int = 0) -> EncodedPicture:
    """(H, W, 3) uint8 -> `image_format` bytes, resized to `size` x `size` (0: as is) with Lanczos.

    The VAE's output is small (64 px for the default model): a larger `size` is an upscale for display.
    Raises ValueError for an unknown format or a negative size.
    """
    image_format = image_format.upper()
    if image_format not in FORMATS:
        raise ValueError(f"unknown preview format {image_format!r}; choose one of {', '.join(FORMATS)}")
    if size < 0:
        raise ValueError(f"preview size must not be negative, got {size}")
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    if size and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image_format == "PNG":
        image.save(buffer, "PNG", compress_level=1)  # previews are small; speed over bytes
    elif image_format == "JPEG":
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=2)
    return EncodedPicture(buffer.getvalue(), image_format, image.width, image.height)
