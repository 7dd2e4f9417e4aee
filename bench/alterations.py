"""Altered copies for the copy-detection queries: crop, resize, JPEG, brightness, contrast, rotation, combos.

Every alteration works on a Pillow RGB image at source resolution (capped by `cap_source`) and returns
encoded bytes, so a query goes through the same decoder as any file the indexer reads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance

ALTERATIONS = ("crop", "resize", "jpeg", "brightness", "contrast", "rotate")
QUERY_KINDS = (*ALTERATIONS, "combo")
SOURCE_CAP = 1024  # longest side of the source image that alterations work on (memory and time)


def cap_source(pixels: np.ndarray) -> np.ndarray:
    """Shrink an image whose longer side exceeds SOURCE_CAP (LANCZOS); otherwise return a copy."""
    height, width = pixels.shape[:2]
    scale = SOURCE_CAP / max(height, width)
    if scale >= 1:
        return np.array(pixels)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.array(image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))


def choose_ops(kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    """The alteration(s) for a query kind; "combo" is two distinct ones, any JPEG step last."""
    if kind != "combo":
        return (kind,)
    first, second = rng.choice(len(ALTERATIONS), 2, replace=False)
    return tuple(sorted((ALTERATIONS[first], ALTERATIONS[second]), key=lambda op: op == "jpeg"))


def alter(image: Image.Image, ops: Sequence[str], rng: np.random.Generator) -> bytes:
    """Apply `ops` to an RGB image and return the encoded result: JPEG q40 bytes if "jpeg", else PNG."""
    for op in ops:
        if op == "crop":  # 70-90% of the area, same aspect, random position
            share = np.sqrt(rng.uniform(0.7, 0.9))
            width, height = max(1, round(image.width * share)), max(1, round(image.height * share))
            left = int(rng.integers(0, image.width - width + 1))
            top = int(rng.integers(0, image.height - height + 1))
            image = image.crop((left, top, left + width, top + height))
        elif op == "resize":  # down to 50% and back up
            small = (max(1, image.width // 2), max(1, image.height // 2))
            image = image.resize(small, Image.Resampling.BILINEAR).resize(
                image.size, Image.Resampling.BICUBIC
            )
        elif op == "brightness":
            image = ImageEnhance.Brightness(image).enhance(1 + float(rng.choice([-0.2, 0.2])))
        elif op == "contrast":
            image = ImageEnhance.Contrast(image).enhance(1 + float(rng.choice([-0.2, 0.2])))
        elif op == "rotate":  # +-5 degrees, same canvas, black corners
            image = image.rotate(float(rng.uniform(-5, 5)), Image.Resampling.BICUBIC, expand=False)
        elif op != "jpeg":
            raise ValueError(f"unknown alteration {op!r}")
    buffer = io.BytesIO()
    if ops and ops[-1] == "jpeg":
        image.save(buffer, format="JPEG", quality=40)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
