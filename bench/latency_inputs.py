"""Make the query_latency benchmark's inputs once and keep them for later runs: stores and query JPEGs.

Stores: a flat (exact, the default) store under the default whitened metric of `n` seeded synthetic
latents (`bench.synthetic_latents`), built through `LatentStore.upsert_images` in BUILD_CHUNK-row
transactions with one flush at the end; the build time and upsert rate are returned. Its records carry
plausible photo metadata (path, size, hash, 4032x3024 JPEG, EXIF time and camera) so that replies are as
large as real ones, and an alignment thumbnail, so that a query by image re-ranks copies first as it does
over an indexed library. `bench.latent_latency` reuses these stores.

Stores of other index types (`ensure_rebuilt_store`): a copy of a flat store's folder rebuilt with
`LatentStore.rebuild(index_type=...)` ("auto": HNSW from 100k vectors); the copy and rebuild times are
returned.

Query JPEGs: 640x480 crops of the wallpaper photos (`bench.photo_folders`), or generated gradients + noise
when no photos are there.

Both are kept under WORK_DIR (bench/work/query_latency): a JSON file beside each folder records the recipe,
and a folder whose recipe differs is made again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.photo_folders import crop_box, ensure_folder, source_photos, write_files
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.pixel_alignment import SIDE
from latentdex.indexer.store import ImageRecord, LatentStore

BENCHMARK = "query_latency"  # the benchmark these inputs are made for: names the folder and the messages
WORK_DIR = Path(__file__).resolve().parent / "work" / BENCHMARK
BUILD_CHUNK = 50_000  # rows per upsert while building a store
STORE_RECIPE_VERSION = 3  # 2: the whitened metric, the stores' default; 3: alignment thumbnails
REBUILT_RECIPE_VERSION = 1
BASE_SEED = 3
THUMBNAIL_TEXTURES = 64
IMAGE_SIZE = (640, 480)
IMAGE_FILES = 50
IMAGE_QUALITY = 90


def store_recipe(n: int, model_id: str, mixture: LatentMixture) -> dict[str, Any]:
    """What makes a flat store of `n` synthetic latents: a store built with another recipe is built again."""
    return {
        "version": STORE_RECIPE_VERSION,
        "n": n,
        "model_id": model_id,
        "mixture": asdict(mixture),
        "seed": BASE_SEED,
        "index_type": "flat",
        "metric": "whitened",
        "chunk": BUILD_CHUNK,
    }


def ensure_store(folder: Path, n: int, model_id: str, mixture: LatentMixture) -> tuple[Path, dict[str, Any]]:
    """`folder` holding a flat store of `n` synthetic latents (built now unless built with this recipe).

    Returns the folder and what building it took (this run's, or the earlier run's when reused).
    """
    recipe = store_recipe(n, model_id, mixture)
    if (reused := _made_before(folder, recipe)) is not None:
        return folder, reused
    print(f"{BENCHMARK}: building a store of {n:,} vectors in {folder} (kept for later runs)", flush=True)
    built = build_store(folder, n, model_id, mixture)
    _remember(folder, recipe, built)
    return folder, {**built, "reused": False}


def ensure_rebuilt_store(
    source: Path, source_recipe: dict[str, Any], folder: Path, index_type: str
) -> tuple[Path, dict[str, Any]]:
    """`folder` holding a copy of the flat store in `source` (made with `source_recipe`) rebuilt as
    `index_type`; made now unless made from this recipe.

    Returns the folder and what making it took: copy_s, rebuild_s (the new index, and the whitening
    refit a whitened store does first), build_s (both), the concrete `vector_kind`, the rebuild's notes.
    """
    recipe = {"version": REBUILT_RECIPE_VERSION, "source": source_recipe, "index_type": index_type}
    if (reused := _made_before(folder, recipe)) is not None:
        return folder, reused
    print(f"{BENCHMARK}: copying {source.name} to {folder} and rebuilding it as {index_type}", flush=True)
    started = time.perf_counter()
    shutil.copytree(source, folder)
    copied = time.perf_counter()
    with LatentStore.open(folder) as store:
        notes = store.rebuild(index_type=index_type)
        rebuilt = time.perf_counter()
        built = {
            "n": store.vector_count,
            "index_type": index_type,
            "vector_kind": store.vector_kind,
            "copy_s": copied - started,
            "rebuild_s": rebuilt - copied,
            "build_s": rebuilt - started,
            "notes": notes,
            "disk_mb": store.disk_bytes() / 1e6,
        }
    _remember(folder, recipe, built)
    return folder, {**built, "reused": False}


def build_store(folder: Path, n: int, model_id: str, mixture: LatentMixture) -> dict[str, Any]:
    """Upsert `n` synthetic images in BUILD_CHUNK-row transactions, then flush once; return the times."""
    started = time.perf_counter()
    latents = mixture.sample(n, BASE_SEED)
    sampled = time.perf_counter()
    store = LatentStore.create(
        folder, model_id=model_id, latent_dim=mixture.dim, metric="whitened", index_type="flat"
    )
    # Every row has a thumbnail, as an indexed photo does, so a query by image pays for the copies-first
    # step in full; what they show does not change its cost.
    textures = np.random.default_rng(BASE_SEED).integers(0, 256, (THUMBNAIL_TEXTURES, SIDE, SIDE), np.uint8)
    upsert_s = 0.0
    try:
        for start in range(0, n, BUILD_CHUNK):
            stop = min(n, start + BUILD_CHUNK)
            records = [_record(i, model_id) for i in range(start, stop)]
            thumbnails = [textures[i % THUMBNAIL_TEXTURES].tobytes() for i in range(start, stop)]
            begun = time.perf_counter()
            store.upsert_images(records, latents[start:stop], None, thumbnails)
            upsert_s += time.perf_counter() - begun
        begun = time.perf_counter()
        store.flush()
        flush_s = time.perf_counter() - begun
        disk = store.disk_bytes()
    finally:
        store.close()
    return {
        "n": n,
        "sample_s": sampled - started,
        "upsert_s": upsert_s,
        "upsert_rows_per_s": n / upsert_s,
        "flush_s": flush_s,
        "build_s": time.perf_counter() - started,
        "disk_mb": disk / 1e6,
    }


def _made_before(folder: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """What making `folder` took when it was made with `recipe` (reused: True); else None, and the
    folder and its recipe file are gone, to be made again."""
    marker = _marker(folder)
    if marker.exists() and (folder / "manifest.json").exists():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("recipe") == recipe:
            return {**saved["built"], "reused": True}
    marker.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _remember(folder: Path, recipe: dict[str, Any], built: dict[str, Any]) -> None:
    """Record the recipe beside `folder`, last, so that an interrupted build is made again."""
    _marker(folder).write_text(json.dumps({"recipe": recipe, "built": built}) + "\n", encoding="utf-8")


def _marker(folder: Path) -> Path:
    return folder.with_name(folder.name + ".recipe.json")


def _record(i: int, model_id: str) -> ImageRecord:
    """A plausible photo's metadata, so the reply carries what a real one does."""
    return ImageRecord(
        path=f"photos/{i // 1000:04d}/IMG_{i:07d}.jpg",
        size=2_000_000 + i % 1_000_000,
        mtime_ns=1_700_000_000_000_000_000 + i,
        content_hash=f"{i:064x}",
        width=4032,
        height=3024,
        format="JPEG",
        capture_time=datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, i % 60),
        camera_make="latentdex-bench",
        camera_model="synthetic camera",
        model_id=model_id,
    )


def image_folder(raw: Path, folder: Path, count: int = IMAGE_FILES, seed: int = 0) -> tuple[Path, str]:
    """`folder` of `count` 640x480 JPEGs cut from the wallpaper photos (or generated without them)."""
    photos = source_photos(raw) if raw.is_dir() else []
    if photos:
        recipe = {"kind": "jpeg-crops", "count": count, "seed": seed, "size": IMAGE_SIZE, "q": IMAGE_QUALITY}
        ensure_folder(folder, recipe, lambda: write_files(raw, folder, count, seed, _crop_file))
        return folder, "wallpaper photos"
    recipe = {"kind": "jpeg-generated", "count": count, "seed": seed, "size": IMAGE_SIZE, "q": IMAGE_QUALITY}
    ensure_folder(folder, recipe, lambda: _generate_files(folder, count, seed))
    return folder, "generated (no photos under the data root)"


def _crop_file(picture: Image.Image, folder: Path, j: int, rng: np.random.Generator) -> None:
    width, height = IMAGE_SIZE
    box = crop_box(picture.size, width / height, rng.uniform(0.6, 1.0), rng)
    image = picture.resize(IMAGE_SIZE, Image.Resampling.BICUBIC, box=box)
    image.save(folder / f"query_{j:03d}.jpg", quality=IMAGE_QUALITY)


def _generate_files(folder: Path, count: int, seed: int) -> int:
    width, height = IMAGE_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for j in range(count):
        rng = np.random.default_rng([seed, j])
        channels = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)
            channels.append(127 + 100 * np.sin(fx * x + fy * y + phase))
        pixels = np.stack(channels, axis=-1) + 8 * rng.standard_normal((height, width, 3), dtype=np.float32)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"query_{j:03d}.jpg", quality=IMAGE_QUALITY)
    return count
