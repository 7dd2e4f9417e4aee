"""Duplicate finding on an indexed library of real files: what the region check adds, and what it costs.

Library (written once to bench/work/duplicates_files, indexed with the shipped model and kept):
non-overlapping square tiles of the wallpaper photos (both splits: this measures time and reads, the pair
benchmark measures quality on unseen pictures), each saved as a 1024-px JPEG as a camera would, plus
planted copies of every fifth one in turn: a crop to 85% of the area, a caption strip, a white border, a
2-degree rotation and a re-encode at quality 60; and burst pairs: two frames of a photo region panned
by 15% of the side, whose wider shot is not in the library.

`find_duplicates` at `near` runs twice on the store, alternating three times (the median is reported):
latents and pHashes alone, then with the region check reading the files on one thread per CPU
(`service.duplicate_files`, as `latentdex duplicates` does). Then, on a copy of the store whose catalog
remembers nothing yet, as the command runs it: once keeping what pairs gave (`indexer.region_memory`),
and three times more from what that run kept. Reported: seconds of each and their ratios to latents and
pHashes alone, the pairs checked and remembered and the files read, the planted copies found (a copy in
its original's group) and the burst pairs joined.

Last, the library is indexed afresh as `latentdex index` runs, alternating three times without and with
the comparison of the new images' files (`service.duplicate_files.compare_new_images`), and a first report
runs on the store that compared: the index time the check adds, and what it spares the report.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from bench.datasets import fetch, photo_sources
from bench.report import table
from latentdex.indexer.duplicates import find_duplicates, resolve_hash_rule, resolve_threshold
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.duplicate_files import compare_new_images, region_check

NAME = "duplicates_files"
WORK = Path(__file__).resolve().parent / "work" / NAME
SIDE = 1024
COPY_KINDS = ("crop", "caption", "border", "rotate", "jpeg")
ROUNDS = 3
THREADS = os.cpu_count() or 1  # files read at once, as `latentdex duplicates` reads them
SEED = 5
TILE_SHARE = 0.45  # tile side as a share of the photo's shorter side


@dataclass(frozen=True)
class LibrarySize:
    originals: int
    bursts: int


FULL = LibrarySize(originals=400, bursts=40)
QUICK = LibrarySize(originals=100, bursts=10)


def run(
    model_dir: str | os.PathLike[str] | None, data_root: str | os.PathLike[str], quick: bool = False
) -> dict[str, Any]:
    size = QUICK if quick else FULL
    folder = WORK / f"{'quick' if quick else 'full'}-{size.originals}"
    photos, store = folder / "photos", folder / "store"
    planted = None if (folder / ".written").exists() else _write_library(fetch(Path(data_root)), photos, size)
    if planted is not None:
        (folder / ".written").write_text("\n".join(f"{kind}\t{a}\t{b}" for kind, a, b in planted))
    pairs = [tuple(line.split("\t")) for line in (folder / ".written").read_text().splitlines()]
    started = time.perf_counter()
    report = index_folder(photos, store, LatentCodec.load(model_dir), IndexOptions())
    index_seconds = time.perf_counter() - started
    runs: dict[str, list[dict[str, Any]]] = {"latent and hashes": [], "with the region check": []}
    with LatentStore.open(store, read_only=True) as opened:
        ids = {entry.path: entry.id for entry in opened.entries()}
        for _ in range(ROUNDS):
            for label, files in (("latent and hashes", False), ("with the region check", True)):
                runs[label].append(_near(opened, pairs, ids, check_files=files, remember=False))
    runs |= _remembering_runs(store, folder / "store-remembering", pairs, ids)
    indexing, runs[AFTER_INDEX] = _index_runs(photos, folder / "store-indexed", model_dir, pairs)
    summary = {label: _median(rows) for label, rows in runs.items()}
    plain, checked = summary["latent and hashes"], summary["with the region check"]
    return {
        "library": {
            "folder": str(folder),
            "images": len(ids),
            "originals": sum(1 for _ in (photos / "library").iterdir()),
            "copies": sum(1 for kind, _, _ in pairs if kind != "burst"),
            "burst_pairs": sum(1 for kind, _, _ in pairs if kind == "burst"),
            "side": SIDE,
            "indexed_new": report.counts.new,
            "index_seconds": round(index_seconds, 1),
        },
        "rounds": ROUNDS,
        "runs": summary,
        "ratio_region_check_over_plain": round(checked["seconds"] / max(plain["seconds"], 1e-9), 2),
        "ratio_remembering_first_over_plain": round(
            summary[FIRST_REMEMBERING]["seconds"] / max(plain["seconds"], 1e-9), 2
        ),
        "ratio_remembered_over_plain": round(summary[REMEMBERED]["seconds"] / max(plain["seconds"], 1e-9), 2),
        "indexing": indexing,
        "ratio_after_index_over_plain": round(
            summary[AFTER_INDEX]["seconds"] / max(plain["seconds"], 1e-9), 2
        ),
    }


FIRST_REMEMBERING = "region check, first run (keeps what pairs gave)"
REMEMBERED = "region check, later runs (from what the first kept)"


AFTER_INDEX = "region check, first run after an index that compared the new images' files"
PLAIN_INDEX = "index"
CHECKED_INDEX = "index, then compare the new images' files"


def _index_runs(
    photos: Path, store: Path, model_dir: str | os.PathLike[str] | None, pairs: list[tuple[str, ...]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`latentdex index` of the library into a fresh store, ROUNDS times each way, alternating: without
    and with comparing the new images' files (medians); then a first report on the last store compared."""
    codec = LatentCodec.load(model_dir)
    times: dict[str, list[float]] = {PLAIN_INDEX: [], CHECKED_INDEX: []}
    compared: Any = None
    for _ in range(ROUNDS):
        for label in times:
            shutil.rmtree(store, ignore_errors=True)
            started = time.perf_counter()
            report = index_folder(photos, store, codec, IndexOptions())
            if label == CHECKED_INDEX:
                with LatentStore.open(store, read_only=True) as opened:
                    compared = compare_new_images(opened, report.indexed_ids, threads=THREADS)
            times[label].append(time.perf_counter() - started)
    plain, checked = statistics.median(times[PLAIN_INDEX]), statistics.median(times[CHECKED_INDEX])
    with LatentStore.open(store, read_only=True) as opened:
        ids = {entry.path: entry.id for entry in opened.entries()}
        first = [_near(opened, pairs, ids, check_files=True, remember=True)]
    indexing = {
        PLAIN_INDEX: {"seconds": round(plain, 2)},
        CHECKED_INDEX: {
            "seconds": round(checked, 2),
            "pairs_checked": compared.pairs_checked,
            "pairs_linked": compared.pairs_linked,
            "files_read": compared.files_read,
            "check_seconds": round(compared.seconds, 2),
        },
        "ratio_checked_over_plain": round(checked / max(plain, 1e-9), 2),
    }
    return indexing, first


def _remembering_runs(
    store: Path, copy: Path, pairs: list[tuple[str, ...]], ids: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """The region check as `latentdex duplicates` runs it, keeping what pairs gave in the catalog: a first
    run on a copy of the store that remembers nothing, then ROUNDS runs from what it kept."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    with sqlite3.connect(copy / "catalog.sqlite") as catalog:
        catalog.execute("DELETE FROM region_overlaps")
    runs: dict[str, list[dict[str, Any]]] = {FIRST_REMEMBERING: [], REMEMBERED: []}
    with LatentStore.open(copy, read_only=True) as opened:
        for label in (FIRST_REMEMBERING, *(REMEMBERED,) * ROUNDS):
            runs[label].append(_near(opened, pairs, ids, check_files=True, remember=True))
    return runs


def _near(
    opened: LatentStore,
    pairs: list[tuple[str, ...]],
    ids: dict[str, int],
    *,
    check_files: bool,
    remember: bool,
) -> dict[str, Any]:
    """`find_duplicates` at `near` once, as `latentdex duplicates` runs it, timed and scored."""
    space = opened.distance_space
    check = region_check(
        "near", None, space, opened.indexed_root(), check_files, threads=THREADS, remember=remember
    )
    threshold, rule = resolve_threshold("near", None, space), resolve_hash_rule("near", None, space)
    started = time.perf_counter()
    found = find_duplicates(opened, threshold, hash_rule=rule, regions=check)
    return _scored(found, pairs, ids, time.perf_counter() - started, check)


def _write_library(raw: Path, photos: Path, size: LibrarySize) -> list[tuple[str, str, str]]:
    """Originals, planted copies and burst pairs as files; returns (kind, path, path) per planted pair.
    Originals are non-overlapping square tiles of the photos, so that no original holds another."""
    rng = np.random.default_rng(SEED)
    sources = photo_sources(raw, "eval") + photo_sources(raw, "train")
    (photos / "library").mkdir(parents=True, exist_ok=True)
    (photos / "copies").mkdir(exist_ok=True)
    tiles = []
    for path in sources:
        with Image.open(path) as opened:
            width, height = ImageOps.exif_transpose(opened).size
        side = int(min(width, height) * TILE_SHARE)
        tiles += [
            (path, (x, y, x + side, y + side))
            for x in range(0, width - side + 1, side)
            for y in range(0, height - side + 1, side)
        ]
    order = rng.permutation(len(tiles))
    planted: list[tuple[str, str, str]] = []
    for n in range(min(size.originals, len(tiles))):
        path, box = tiles[int(order[n])]
        original = _picture(path).crop(box).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        name = f"library/photo-{n:04d}.jpg"
        original.save(photos / name, quality=90)
        if n % 5 == 0:
            kind = COPY_KINDS[(n // 5) % len(COPY_KINDS)]
            copy_name = f"copies/{kind}-{n:04d}.jpg"
            _copy(original, kind).save(photos / copy_name, quality=60 if kind == "jpeg" else 90)
            planted.append((kind, name, copy_name))
    for n in range(size.bursts):  # two frames panned by 15% of the side; the wider shot left out
        picture = _picture(sources[n % len(sources)])
        side = int(min(picture.size) * TILE_SHARE)
        shift = int(0.15 * side)
        left = int(rng.integers(0, picture.width - side - shift + 1))
        top = int(rng.integers(0, picture.height - side + 1))
        names = []
        for k, dx in enumerate((0, shift)):
            frame = picture.crop((left + dx, top, left + dx + side, top + side)).resize((SIDE, SIDE))
            names.append(f"copies/burst-{n:04d}-{k}.jpg")
            frame.save(photos / names[-1], quality=90)
        planted.append(("burst", names[0], names[1]))
    return planted


def _picture(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def _copy(original: Image.Image, kind: str) -> Image.Image:
    if kind == "crop":
        margin = int(original.width * (1 - 0.85**0.5) / 2)
        return original.crop((margin, margin, original.width - margin, original.height - margin))
    if kind == "caption":
        copy = original.copy()
        strip = int(0.12 * copy.height)
        ImageDraw.Draw(copy).rectangle(
            (0, copy.height - strip, copy.width, copy.height), fill=(245, 245, 245)
        )
        ImageDraw.Draw(copy).text((20, copy.height - strip // 2), "Summer 2019", fill=(15, 15, 15))
        return copy
    if kind == "border":
        return ImageOps.expand(original, border=int(0.07 * original.width), fill=(255, 255, 255))
    if kind == "rotate":
        return original.rotate(2, Image.Resampling.BICUBIC)
    return original


def _scored(
    found: Any, pairs: list[tuple[str, ...]], ids: dict[str, int], seconds: float, check: Any
) -> dict[str, Any]:
    group_of = {member.id: number for number, group in enumerate(found.groups) for member in group.members}

    def joined(a: str, b: str) -> bool:
        first, second = group_of.get(ids.get(a)), group_of.get(ids.get(b))
        return first is not None and first == second

    copies = [(kind, a, b) for kind, a, b in pairs if kind != "burst"]
    by_kind = {
        kind: sum(joined(a, b) for k, a, b in copies if k == kind)
        / max(1, sum(k == kind for k, _, _ in copies))
        for kind in COPY_KINDS
    }
    return {
        "seconds": seconds,
        "groups": len(found.groups),
        "copies_found": sum(joined(a, b) for _, a, b in copies) / max(1, len(copies)),
        "copies_found_by_kind": by_kind,
        "burst_pairs_joined": sum(joined(a, b) for kind, a, b in pairs if kind == "burst"),
        "pairs_checked": 0 if check is None else check.pairs_checked,
        "pairs_remembered": 0 if check is None else check.pairs_remembered,
        "pairs_linked": 0 if check is None else check.pairs_linked,
        "files_read": 0 if check is None else check.files_read,
        "files_unreadable": 0 if check is None else check.files_unreadable,
        "region_seconds": 0.0 if check is None else check.seconds,
    }


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    chosen = sorted(rows, key=lambda row: row["seconds"])[len(rows) // 2]
    return {**chosen, "seconds": round(statistics.median(r["seconds"] for r in rows), 3)}


def format_result(result: dict[str, Any]) -> str:
    library = result["library"]
    rows = [
        [
            label,
            run["seconds"],
            run["groups"],
            run["copies_found"],
            *(run["copies_found_by_kind"][kind] for kind in COPY_KINDS),
            f"{run['burst_pairs_joined']} of {library['burst_pairs']}",
            run["pairs_checked"],
            run.get("pairs_remembered", 0),
            run["files_read"],
        ]
        for label, run in result["runs"].items()
    ]
    return table(
        f"`near` on a library of {library['images']} real JPEG files ({library['originals']} photos, "
        f"{library['copies']} planted copies, {library['burst_pairs']} burst pairs; {library['side']} px); "
        f"median of {result['rounds']} runs; region check / plain time: "
        f"{result['ratio_region_check_over_plain']}x; a later run from what the first kept / plain: "
        f"{result.get('ratio_remembered_over_plain', '-')}x" + _indexing_line(result.get("indexing")),
        [
            "rule",
            "seconds",
            "groups",
            "copies found",
            *COPY_KINDS,
            "bursts joined",
            "pairs checked",
            "pairs remembered",
            "files read",
        ],
        rows,
    )


def _indexing_line(indexing: dict[str, Any] | None) -> str:
    if not indexing:
        return ""
    checked = indexing[CHECKED_INDEX]
    return (
        f"; indexing {indexing[PLAIN_INDEX]['seconds']} s, {checked['seconds']} s when it also compares the "
        f"new images' files ({checked['pairs_checked']} pairs, {checked['files_read']} files; "
        f"{indexing['ratio_checked_over_plain']}x)"
    )
