"""Pictures for replies: decoded latents and originals' thumbnails as PNG, JPEG or WebP bytes."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from latentdex.errors import BadImage
from latentdex.indexer.load import DEFAULT_MAX_PIXELS, load_image

FORMATS = ("PNG", "JPEG", "WEBP")
DEFAULT_THUMBNAIL_SIZE = 128
JPEG_QUALITY = 90
WEBP_QUALITY = 90


@dataclass(frozen=True)
class EncodedPicture:
    """An encoded image: its bytes, Pillow format name and pixel size."""

    data: bytes
    format: str
    width: int
    height: int


def original_file(root: Path, relative_path: str) -> Path | None:
    """The stored image's file under the indexed `root`, or None when the path leads outside it (an
    absolute or `..` path, or a symlink pointing out): thumbnails never read beyond the indexed folder."""
    try:
        base = root.resolve(strict=True)
        target = (base / relative_path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte
        return None
    return target if target.is_relative_to(base) and target.is_file() else None


def thumbnail_image(
    path: str | os.PathLike[str], size: int = DEFAULT_THUMBNAIL_SIZE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image | None:
    """The file's whole picture shrunk to fit `size` x `size` (kept upright, aspect kept); None if the
    file cannot be read or decoded now."""
    try:
        pixels = load_image(path, min_side=size, max_pixels=max_pixels).pixels
    except BadImage:
        return None
    image = Image.fromarray(pixels, "RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


def thumbnail_picture(
    path: str | os.PathLike[str],
    image_format: str = "JPEG",
    size: int = DEFAULT_THUMBNAIL_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EncodedPicture | None:
    """`thumbnail_image` as `image_format` bytes; None if the file cannot be read or decoded now."""
    image = thumbnail_image(path, size, max_pixels)
    return None if image is None else _encode(image, image_format)


def encode_picture(pixels: np.ndarray, image_format: str = "PNG", size: int = 0) -> EncodedPicture:
    """(H, W, 3) uint8 -> `image_format` bytes, resized to `size` x `size` (0: as is) with Lanczos.

    The VAE's output is small (64 px for the default model): a larger `size` is an upscale for display.
    Raises ValueError for an unknown format or a negative size.
    """
    if size < 0:
        raise ValueError(f"preview size must not be negative, got {size}")
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    if size and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return _encode(image, image_format)


def _encode(image: Image.Image, image_format: str) -> EncodedPicture:
    """ValueError for a format other than PNG, JPEG or WebP (any case)."""
    image_format = image_format.upper()
    if image_format not in FORMATS:
        raise ValueError(f"unknown preview format {image_format!r}; choose one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    if image_format == "PNG":
        image.save(buffer, "PNG", compress_level=1)  # previews are small; speed over bytes
    elif image_format == "JPEG":
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=2)
    return EncodedPicture(buffer.getvalue(), image_format, image.width, image.height)
