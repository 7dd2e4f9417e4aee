"""Shared fixtures: real image files written with Pillow into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

ImageFolderFactory = Callable[..., list[Path]]


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    """Tiny models run fastest on one thread; two threads on a busy two-core machine run ~50x slower."""
    torch.set_num_threads(1)


def shape_image(index: int, variant: int, size: int = 40) -> Image.Image:
    """A gradient in a colour of its own per `index`, with a shape whose place depends on `variant`."""
    rng = np.random.default_rng(index)
    base = rng.integers(70, 186, 3)
    ramp = np.linspace(-30, 30, size)
    pixels = np.empty((size, size, 3), np.float64)
    pixels[:] = base
    pixels += ramp[None, :, None] if index % 2 else ramp[:, None, None]
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    fill = tuple(int(v) for v in np.where(base > 127, base - 60, base + 60))
    left = 4 + (variant * 7) % (size // 2)
    top = 4 + (index * 5) % (size // 2)
    box = (left, top, left + size // 3, top + size // 3)
    if index % 3 == 0:
        draw.ellipse(box, fill=fill)
    elif index % 3 == 1:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)
    return image


def write_image_folder(folder: Path, sources: int = 24, per_source: int = 2, size: int = 40) -> list[Path]:
    """Write `sources * per_source` PNGs named `src{i}__{k}.png` (grouped by source) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(sources):
        for k in range(per_source):
            path = folder / f"src{i}__{k}.png"
            shape_image(i, k, size).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="session")
def make_image_folder() -> ImageFolderFactory:
    """`write_image_folder`, for tests and fixtures of any scope."""
    return write_image_folder
