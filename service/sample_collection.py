"""A small generated photo collection for the demo: scenes with sky, ground, sun and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_FORMATS = (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"))


def write_sample_collection(
    folder: Path, count: int = 24, seed: int = 0, size: tuple[int, int] = (320, 240)
) -> list[Path]:
    """Write `count` generated scenes into `folder` (JPEG, PNG and WebP in turn); return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = _scene(rng, size)
        suffix, fmt = _FORMATS[i % len(_FORMATS)]
        path = folder / f"scene-{i:03d}.{suffix}"
        image.save(path, format=fmt, quality=90)
        paths.append(path)
    return paths


def _scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    sky = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    horizon = int(height * rng.uniform(0.45, 0.8))
    ground = rng.integers(0, 200, 3)
    texture = rng.normal(0, 18, (height - horizon, width, 1))
    pixels[horizon:] = np.clip(ground + texture, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    radius = int(rng.uniform(0.06, 0.15) * width)
    cx, cy = int(rng.uniform(0.1, 0.9) * width), int(rng.uniform(0.1, 0.4) * height)
    draw.ellipse(
        (cx - radius, cy - radius, cx + radius, cy + radius),
        fill=tuple(int(v) for v in rng.integers(150, 256, 3)),
    )
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.uniform(0, 0.8) * width), int(rng.uniform(0.4, 0.8) * height)
        w, h = int(rng.uniform(0.08, 0.3) * width), int(rng.uniform(0.1, 0.35) * height)
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image.filter(ImageFilter.GaussianBlur(0.8))
