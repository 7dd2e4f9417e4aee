"""Real image sets from Debian packages, and the training crops the default model is trained on.

    python -m bench.datasets fetch --root data            # download + unpack the packages
    python -m bench.datasets training-crops --root data --out data/train-crops
    python -m bench.datasets training-crops --root data --out data/train-crops-more --more-photos

Every source is assigned to "train" or "eval" by a hash of its path (photos: of their picture group, so
resolution and light/dark variants stay together), so benchmarks and the default model's held-out PSNR
only ever use images the model never saw. The wallpaper packages in TRAINING_ONLY_PACKAGES add photos to
training alone (`--more-photos`): they are unpacked apart from the others, so the benchmarks' eval sets
stay the same pictures whether or not they are fetched, and a photo among them that looks like an eval
photo (perceptual hash within EVAL_LOOK_ALIKE_BITS) is left out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from latentdex.errors import BadImage
from latentdex.indexer.load import load_image
from latentdex.indexer.perceptual_hash import picture_phash
from latentdex.indexer.scan import iter_image_files

PACKAGES = (
    "tuxpaint-stamps-default",
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "openclipart-png",
)
# Wallpaper photos for training only, unpacked under raw/TRAINING_ONLY_DIR: 32 pictures (links, such as
# lomiri's default background, are skipped: they point at one of the others).
TRAINING_ONLY_PACKAGES = (
    "lomiri-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "ukui-wallpapers",
)
TRAINING_ONLY_DIR = "training-only"
EVAL_LOOK_ALIKE_BITS = 12
PHOTO_DIRS = ("usr/share/backgrounds", "usr/share/wallpapers")
CLIPART_DIR = "usr/share/openclipart/png"
STAMPS_DIR = "usr/share/tuxpaint/stamps"
EVAL_FRACTION = 0.2
CROP_SIZE = 80
PHOTO_MIN_SIDE = CROP_SIZE * 8  # photos with a shorter side give no training crops, whatever the crop size
CROPS_PER_PHOTO = 250
CLIPART_LIMIT = 4000
MAX_SOURCE_PIXELS = 60_000_000


def fetch(root: Path, more_photos: bool = False) -> Path:
    """Download the Debian packages into `root`/debs and unpack them into `root`/raw (idempotent); with
    `more_photos`, also TRAINING_ONLY_PACKAGES, into `root`/raw/TRAINING_ONLY_DIR."""
    raw = root / "raw"
    _fetch_packages(root, PACKAGES, raw, raw / ".complete")
    if more_photos:
        extra = raw / TRAINING_ONLY_DIR
        _fetch_packages(root, TRAINING_ONLY_PACKAGES, extra, extra / ".complete")
    return raw


def _fetch_packages(root: Path, packages: Sequence[str], into: Path, marker: Path) -> None:
    if marker.exists():
        return
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    download = ["apt-get", "download", *missing]
    if missing and subprocess.run(download, cwd=debs, check=False).returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(download, cwd=debs, check=True)
    into.mkdir(parents=True, exist_ok=True)
    for package in packages:
        for deb in sorted(debs.glob(f"{package}_*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(into)], check=True)
    marker.touch()


def split_of(relative: str) -> str:
    """'train' or 'eval' for a source image, fixed by a hash of its path under the raw root."""
    digest = hashlib.sha256(relative.encode("utf-8", "surrogateescape")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < EVAL_FRACTION else "train"


def photo_group(relative: str) -> str:
    """The picture a wallpaper file shows, whatever its resolution or light/dark variant.

    KDE wallpapers are folders (`usr/share/wallpapers/<Name>/contents/images/<WxH>.jpg`, plus a
    screenshot); GNOME and MATE ship `<name>-l.jpg` / `<name>-d.jpg` and `<name>_<WxH>.jpg` variants.
    """
    parts = Path(relative).parts
    if "wallpapers" in parts and parts.index("wallpapers") + 1 < len(parts) - 1:
        return "wallpapers/" + parts[parts.index("wallpapers") + 1]
    stem = re.sub(r"[_-]?\d{3,5}x\d{3,5}", "", Path(relative).stem)
    stem = re.sub(r"[-_](d|l|dark|light|day|night|morning|evening)$", "", stem, flags=re.IGNORECASE)
    return str(Path(relative).parent / stem)


def photo_sources(raw: Path, split: str) -> list[Path]:
    """One photo per picture group (its largest file) from the wallpaper packages, in the given split.

    The split is decided per group, so no version of a training picture is ever evaluated on.
    """
    groups: dict[str, list[Path]] = {}
    for sub in PHOTO_DIRS:
        if (raw / sub).is_dir():
            for path in iter_image_files(raw / sub):
                groups.setdefault(photo_group(str(path.relative_to(raw))), []).append(path)
    chosen = []
    for group, paths in sorted(groups.items()):
        if split_of(group) == split:
            real = [p for p in paths if p.stem != "screenshot"] or paths
            chosen.append(max(real, key=lambda p: (p.stat().st_size, str(p))))
    return chosen


def training_only_photos(raw: Path) -> list[Path]:
    """One photo per picture group from TRAINING_ONLY_PACKAGES (fetched with `more_photos`), leaving out
    any that looks like an eval photo: none of them is ever evaluated on, and none may be an eval picture
    shipped again under another name."""
    extra = raw / TRAINING_ONLY_DIR
    backgrounds = extra / "usr/share/backgrounds"
    if not backgrounds.is_dir():
        raise FileNotFoundError(f"{extra} has no photos: fetch with more_photos first")
    groups: dict[str, list[Path]] = {}
    for path in iter_image_files(backgrounds):
        if not path.is_symlink():
            groups.setdefault(photo_group(str(path.relative_to(extra))), []).append(path)
    chosen = [max(paths, key=lambda p: (p.stat().st_size, str(p))) for _, paths in sorted(groups.items())]
    eval_hashes = np.array([_file_phash(p) for p in photo_sources(raw, "eval")], dtype=np.uint64)
    kept = []
    for path in chosen:
        bits = np.bitwise_count(eval_hashes ^ np.uint64(_file_phash(path)))
        if not len(bits) or int(bits.min()) > EVAL_LOOK_ALIKE_BITS:
            kept.append(path)
        else:
            print(f"left out {path}: it looks like an eval photo", file=sys.stderr)
    return kept


def _file_phash(path: Path) -> int:
    return picture_phash(Image.fromarray(load_image(path, max_pixels=MAX_SOURCE_PIXELS).pixels))


def clipart_sources(raw: Path, split: str) -> list[Path]:
    """openclipart PNGs in the given split."""
    folder = raw / CLIPART_DIR
    return [p for p in iter_image_files(folder) if split_of(str(p.relative_to(raw))) == split]


def stamp_categories(raw: Path) -> dict[str, list[Path]]:
    """tuxpaint stamps (PNG) by their top-level category folder: the labelled set for precision@k."""
    base = raw / STAMPS_DIR
    categories: dict[str, list[Path]] = {}
    for path in iter_image_files(base):
        if path.suffix.lower() == ".png" and "_thumb" not in path.stem:
            categories.setdefault(path.relative_to(base).parts[0], []).append(path)
    return categories


def training_crops(
    root: Path, out: Path, seed: int = 0, crop_size: int = CROP_SIZE, more_photos: bool = False
) -> int:
    """Write `crop_size`-pixel training crops from train-split sources into `out`; return how many.

    Photos give CROPS_PER_PHOTO random crops each at scales from 12% to 100% of the shorter side;
    clip art gives one full-image square each (up to CLIPART_LIMIT). Crops of one source share the
    `<source>__` name prefix, so the trainer holds out whole sources. `more_photos` adds the
    training-only photos after the others, so every other source's crops stay as they were.
    """
    raw = fetch(root, more_photos)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    photos = photo_sources(raw, "train") + (training_only_photos(raw) if more_photos else [])
    rng = np.random.default_rng(seed)
    clipart = clipart_sources(raw, "train")
    clipart = [
        clipart[i] for i in sorted(rng.choice(len(clipart), min(CLIPART_LIMIT, len(clipart)), replace=False))
    ]
    jobs = [
        (str(p), str(out / "photos"), f"p{i:04d}", CROPS_PER_PHOTO, seed + i, crop_size)
        for i, p in enumerate(photos)
    ]
    jobs += [
        (str(p), str(out / "clipart"), f"c{i:05d}", 1, seed + i, crop_size) for i, p in enumerate(clipart)
    ]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        written = sum(pool.map(_crop_job, jobs, chunksize=8))
    print(f"{written} crops from {len(photos)} photos and {len(clipart)} clip-art images in {out}")
    return written


def _crop_job(job: tuple[str, str, str, int, int, int]) -> int:
    path, folder, name, count, seed, crop_size = job
    try:
        image = load_image(
            path, max_pixels=MAX_SOURCE_PIXELS, min_side=PHOTO_MIN_SIDE if count > 1 else crop_size
        )
    except BadImage as exc:
        print(f"skipped {path}: {exc.reason}", file=sys.stderr)
        return 0
    Path(folder).mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image.pixels)
    rng = np.random.default_rng(seed)
    for k, box in enumerate(_crop_boxes(picture.size, count, rng, crop_size)):
        crop = picture.resize((crop_size, crop_size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        crop.save(Path(folder) / f"{name}__{k:03d}.png")
    return count


def _crop_boxes(
    size: tuple[int, int], count: int, rng: np.random.Generator, crop_size: int
) -> Iterator[tuple[int, int, int, int]]:
    width, height = size
    short = min(width, height)
    if count == 1:
        left, top = (width - short) // 2, (height - short) // 2
        yield (left, top, left + short, top + short)
        return
    for _ in range(count):
        side = max(crop_size, int(short * rng.uniform(0.12, 1.0)))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        yield (left, top, left + side, top + side)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_parser = sub.add_parser("fetch", help="download and unpack the Debian image packages")
    fetch_parser.add_argument("--root", type=Path, default=Path("data"))
    crops_parser = sub.add_parser("training-crops", help="write the default model's training crops")
    crops_parser.add_argument("--root", type=Path, default=Path("data"))
    crops_parser.add_argument("--out", type=Path, required=True)
    crops_parser.add_argument("--seed", type=int, default=0)
    crops_parser.add_argument(
        "--more-photos",
        action="store_true",
        help="add the training-only wallpaper packages' photos (never in any eval set)",
    )
    crops_parser.add_argument(
        "--crop-size",
        type=int,
        default=CROP_SIZE,
        help=f"side of each crop in pixels (default {CROP_SIZE}: a 64-px model's input x 1.25)",
    )
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch(args.root))
    else:
        training_crops(args.root, args.out, args.seed, args.crop_size, args.more_photos)


if __name__ == "__main__":
    main()
