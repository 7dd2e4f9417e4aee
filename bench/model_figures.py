"""The README's model figures, reproducible: a contact sheet and an interpolation strip per model.

    python -m bench.model_figures --model DIR --name v2 [--model DIR2 --name v3 ...] [--out docs/images]

A gallery of pictures no model trained on (square crops of the eval-split wallpaper photos, and some
eval-split clip art) is written once under bench/work/figures and indexed with each model, through the
same commands a user runs (`latentdex index`, `query --sheet`, `interpolate --out`). The query is an
altered copy of one gallery crop (cropped to 85%, JPEG quality 40); the interpolation walks between two
photos. Each sheet is saved as `contact-NAME.jpg` and `interpolation-NAME.jpg`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.datasets import clipart_sources, photo_sources
from latentdex.indexer.load import load_image
from latentdex.models.checkpoint import read_card

WORK_DIR = Path("bench/work/figures")
CROPS_PER_PHOTO = 12
CROP_SIDE = 256
CLIPART = 60
SEED = 0
QUERY_SOURCE = "photo03-04.jpg"
INTERPOLATION_ENDS = ("photo01-02.jpg", "photo05-07.jpg")
STEPS = 8
MATCHES = 7
JPEG_QUALITY = 88


def write_gallery(raw: Path, folder: Path) -> Path:
    """Square crops of every eval photo and some eval clip art into `folder` (once); the query image
    beside it. Returns the query's path."""
    query = folder.parent / "query.jpg"
    if query.is_file():
        return query
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for number, path in enumerate(photo_sources(raw, "eval")):
        pixels = load_image(path).pixels
        height, width = pixels.shape[:2]
        for crop in range(CROPS_PER_PHOTO):
            side = int(min(height, width) * rng.uniform(0.3, 0.7))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            square = Image.fromarray(pixels[top : top + side, left : left + side])
            square = square.resize((CROP_SIDE, CROP_SIDE), Image.Resampling.LANCZOS)
            square.save(folder / f"photo{number:02d}-{crop:02d}.jpg", quality=92)
    clipart = clipart_sources(raw, "eval")
    for index in sorted(rng.choice(len(clipart), min(CLIPART, len(clipart)), replace=False)):
        shutil.copyfile(clipart[index], folder / f"clip-{index:05d}.png")
    original = Image.open(folder / QUERY_SOURCE)
    margin = int(CROP_SIDE * (1 - 0.85**0.5) / 2)  # 85% of the area, centred
    altered = original.crop((margin, margin, CROP_SIDE - margin, CROP_SIDE - margin))
    buffer = io.BytesIO()
    altered.save(buffer, format="JPEG", quality=40)
    query.write_bytes(buffer.getvalue())
    return query


def figures(model: Path, name: str, gallery: Path, query: Path, out: Path) -> tuple[Path, Path]:
    """Index `gallery` with `model` (a store per latent space, kept for the next run) and write its
    contact sheet and interpolation strip into `out` as JPEGs."""
    card = read_card(model)
    store = WORK_DIR / f"store-{card.latent_space_id}"
    _latentdex("index", str(gallery), "--store", str(store), "--model", str(model))
    sheet_png, strip_png = WORK_DIR / f"contact-{name}.png", WORK_DIR / f"interpolation-{name}.png"
    common = ["--store", str(store), "--model", str(model)]
    _latentdex("query", str(query), *common, "--k", str(MATCHES), "--sheet", str(sheet_png))
    start, end = (str(gallery / n) for n in INTERPOLATION_ENDS)
    _latentdex("interpolate", start, end, *common, "--steps", str(STEPS), "--out", str(strip_png))
    written = []
    for png, stem in ((sheet_png, "contact"), (strip_png, "interpolation")):
        target = out / f"{stem}-{name}.jpg"
        Image.open(png).convert("RGB").save(target, quality=JPEG_QUALITY)
        written.append(target)
    return written[0], written[1]


def _latentdex(*args: str) -> None:
    command = [sys.executable, "-m", "latentdex.service.cli", *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--name", action="append", required=True, help="one per --model: file suffix")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    if len(args.name) != len(args.model):
        parser.error("give one --name per --model")
    gallery = WORK_DIR / "gallery"
    query = write_gallery(args.raw, gallery)
    args.out.mkdir(parents=True, exist_ok=True)
    for model, name in zip(args.model, args.name, strict=True):
        for path in figures(model, name, gallery, query, args.out):
            print(path)


if __name__ == "__main__":
    main()
