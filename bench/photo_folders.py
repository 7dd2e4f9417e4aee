"""Make the photo folders the indexing benchmark indexes: camera-size JPEGs and small PNG crops.

Both are cut from the wallpaper photos (`bench.datasets.photo_sources`, eval and train splits: the
benchmark measures speed, not retrieval, so both splits may be used). File j comes from source j modulo
the number of sources, so a few hundred files spread over every picture.

- JPEGs: a random crop of the target's aspect (60-100% of the largest such box), resized to a camera size
  (3000x2000, 4000x3000, 4032x3024 and its portrait turn, in rotation), with mild Gaussian grain (the
  sources are smoother than camera output once upscaled, which would make the files unrealistically small
  and fast to decode), saved at quality 90 with a little EXIF (make, model, time).
- PNGs: random square crops (10-100% of the shorter side) resized to 256x256.

A folder is made once per recipe: a JSON file beside it records the recipe, and a folder whose recipe
differs (or that is incomplete) is made again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.datasets import photo_sources
from latentdex.indexer.load import load_image

JPEG_SIZES = ((3000, 2000), (4000, 3000), (4032, 3024), (3024, 4032))
JPEG_QUALITY = 90
GRAIN = 3.0  # standard deviation of the added grain, in 8-bit levels
PNG_SIDE = 256
MIN_SOURCE_SIDE = 512  # sources smaller than this (icons, thumbnails) are left out
RECIPE_VERSION = 1


def source_photos(raw: Path) -> list[Path]:
    """The wallpaper photos of both splits, eval first, in a fixed order."""
    return photo_sources(raw, "eval") + photo_sources(raw, "train")


def jpeg_folder(raw: Path, folder: Path, count: int, seed: int = 0) -> Path:
    """`folder` holding `count` camera-size JPEGs (made now unless already made with this recipe)."""
    recipe = {"kind": "jpeg", "count": count, "seed": seed, "sizes": JPEG_SIZES, "quality": JPEG_QUALITY}
    return ensure_folder(folder, recipe, lambda: write_files(raw, folder, count, seed, _jpeg_file))


def png_folder(raw: Path, folder: Path, count: int, seed: int = 0) -> Path:
    """`folder` holding `count` PNG crops of PNG_SIDE pixels (made now unless already made)."""
    recipe = {"kind": "png", "count": count, "seed": seed, "side": PNG_SIDE}
    return ensure_folder(folder, recipe, lambda: write_files(raw, folder, count, seed, _png_file))


def ensure_folder(folder: Path, recipe: dict[str, Any], make: Callable[[], int]) -> Path:
    marker = folder.with_name(folder.name + ".recipe.json")
    recipe = {"version": RECIPE_VERSION, **json.loads(json.dumps(recipe))}
    if marker.exists() and folder.is_dir() and json.loads(marker.read_text(encoding="utf-8")) == recipe:
        return folder
    marker.unlink(missing_ok=True)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    written = make()
    if written != recipe["count"]:
        raise RuntimeError(f"made {written} of {recipe['count']} files in {folder}")
    marker.write_text(json.dumps(recipe) + "\n", encoding="utf-8")
    return folder


WriteFile = Callable[[Image.Image, Path, int, np.random.Generator], None]


def write_files(raw: Path, folder: Path, count: int, seed: int, write: WriteFile) -> int:
    sources = [p for p in source_photos(raw) if min(_size(p)) >= MIN_SOURCE_SIDE]
    if not sources:
        raise RuntimeError(f"no wallpaper photos under {raw}: run python -m bench.datasets fetch")
    written = 0
    for index, source in enumerate(sources[:count]):
        picture = Image.fromarray(load_image(source).pixels)
        for j in range(index, count, len(sources)):
            write(picture, folder, j, np.random.default_rng([seed, j]))
            written += 1
    return written


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _jpeg_file(picture: Image.Image, folder: Path, j: int, rng: np.random.Generator) -> None:
    width, height = JPEG_SIZES[j % len(JPEG_SIZES)]
    box = crop_box(picture.size, width / height, rng.uniform(0.6, 1.0), rng)
    image = picture.resize((width, height), Image.Resampling.BICUBIC, box=box)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += GRAIN * rng.standard_normal(pixels.shape, dtype=np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "latentdex-bench"  # Make
    exif[0x0110] = "synthetic camera"  # Model
    exif[0x0132] = f"2024:05:{1 + j % 28:02d} 12:{j % 60:02d}:00"  # DateTime
    image.save(folder / f"photo_{j:04d}.jpg", quality=JPEG_QUALITY, exif=exif)


def _png_file(picture: Image.Image, folder: Path, j: int, rng: np.random.Generator) -> None:
    box = crop_box(picture.size, 1.0, rng.uniform(0.1, 1.0), rng)
    crop = picture.resize((PNG_SIDE, PNG_SIDE), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    crop.save(folder / f"crop_{j:05d}.png")


def crop_box(
    size: tuple[int, int], aspect: float, scale: float, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """A box of width/height `aspect`, `scale` times the largest such box in `size`, at a random place."""
    width, height = size
    box_w = min(width, height * aspect) * scale
    box_h = box_w / aspect
    left = rng.uniform(0, width - box_w)
    top = rng.uniform(0, height - box_h)
    return (left, top, left + box_w, top + box_h)
