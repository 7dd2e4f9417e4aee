"""Retrieval quality of the VAE's mu latents against a pixel-PCA baseline, on images the model never saw.

(a) Copy detection: index eval-split photo crops, eval-split clip art and the tuxpaint stamps, then
    query with altered copies (crop, resize, JPEG, brightness, contrast, rotation, or two of those)
    made with Pillow at source resolution and loaded through `indexer.load.load_for_model`; report
    top-1 and top-10 hit rates of the original.
(b) Category precision@10 on the tuxpaint stamps (category = top-level stamp folder), with the chance rate.
(c) Reconstruction PSNR of the VAE on the same images.

Methods: "vae_cosine" (mu, L2-normalised, exact L2 search == cosine), "vae_l2" (raw mu) and
"pixel_pca_cosine" (32x32 RGB pixels, centred, PCA fitted on the indexed set to the latent dimension,
L2-normalised). Every search is exact (`faiss.IndexFlatL2`).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from PIL import Image, ImageEnhance

from bench.datasets import (
    MAX_SOURCE_PIXELS,
    PHOTO_DIRS,
    clipart_sources,
    fetch,
    photo_sources,
    split_of,
    stamp_categories,
)
from bench.report import table
from indexer.load import fit_square, load_for_model, load_image
from indexer.scan import iter_image_files
from models import losses
from models.checkpoint import load_model
from models.errors import BadImage
from models.inference import LatentCodec

NAME = "retrieval_quality"
SEED = 0
ALTERATIONS = ("crop", "resize", "jpeg", "brightness", "contrast", "rotate")
QUERY_KINDS = (*ALTERATIONS, "combo")
METHODS = ("vae_cosine", "vae_l2", "pixel_pca_cosine")
PIXEL_SIZE = 32
SOURCE_CAP = 1024  # longest side of the source image that alterations work on (memory and time)
CROP_SCALE = (0.15, 1.0)  # photo crop side as a share of the photo's shorter side
SOURCE_GROUPS = ("photo_clean", "photo_train_sibling", "clipart", "stamp")


@dataclass(frozen=True)
class RetrievalSizes:
    """How big the indexed set and the query set are."""

    crops_per_photo: int
    clipart: int | None  # eval clip-art images to index (None: all)
    stamps: int | None  # stamps to index (None: all)
    queries: int
    k: int = 10


FULL = RetrievalSizes(crops_per_photo=30, clipart=1300, stamps=None, queries=500)
QUICK = RetrievalSizes(crops_per_photo=6, clipart=220, stamps=200, queries=100)


@dataclass(frozen=True)
class Source:
    """One image file and the indexed items it gives: whole (no crops) or several square crops."""

    path: str
    relative: str
    kind: str  # "photo", "clipart" or "stamp"
    category: str | None = None
    crops: tuple[tuple[float, float, float], ...] = ()  # (side share, left share, top share) per crop
    train_sibling: bool = False  # another version of this picture is in the training split

    @property
    def items(self) -> int:
        return len(self.crops) or 1

    @property
    def group(self) -> str:
        if self.kind == "photo":
            return "photo_train_sibling" if self.train_sibling else "photo_clean"
        return self.kind


@dataclass(frozen=True)
class QuerySpec:
    """An altered copy to make of one indexed item (`offset` within its source)."""

    offset: int
    kind: str
    seed: int


@dataclass
class SourceResult:
    """What a worker decoded from one source: a model input per item, and the altered queries."""

    inputs: list[np.ndarray | None]
    queries: list[tuple[int, str, tuple[str, ...], np.ndarray | None]] = field(default_factory=list)
    error: str | None = None


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build the index and queries from `data_root`, evaluate every method; returns the JSON-ready result."""
    sizes = QUICK if quick else FULL
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model, card = load_model(model_dir)
    codec = LatentCodec(model, card)
    size = codec.image_size
    raw = fetch(Path(data_root))
    sources = select_sources(raw, sizes)
    items_total = sum(s.items for s in sources)
    queries = plan_queries(sources, sizes.queries)
    seconds["select"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = load_sources(sources, queries, size, workers)
    seconds["load_and_alter"] = time.perf_counter() - started

    index = build_index(sources, loaded)
    query_inputs, query_targets, query_kinds, query_ops = [], [], [], []
    for source_index, result in enumerate(loaded):
        base = index.first_item[source_index]
        for offset, kind, ops, pixels in result.queries:
            kept = index.kept_of.get(base + offset)
            if pixels is None or kept is None:
                continue
            query_inputs.append(pixels)
            query_targets.append(kept)
            query_kinds.append(kind)
            query_ops.append("+".join(ops))
    targets = np.array(query_targets, dtype=np.int64)
    queries_array = np.stack(query_inputs) if query_inputs else np.empty((0, size, size, 3), np.uint8)

    started = time.perf_counter()
    index_mu = codec.encode(index.inputs)
    query_mu = codec.encode(queries_array)
    seconds["encode"] = time.perf_counter() - started
    started = time.perf_counter()
    psnr = reconstruction_psnr(codec, index.inputs, index_mu, index.groups)
    seconds["reconstruct"] = time.perf_counter() - started

    started = time.perf_counter()
    dim = min(codec.latent_dim, len(index.inputs), 3 * PIXEL_SIZE**2)
    pca = PixelPCA.fit(to_pixels(index.inputs), dim)
    vectors = {
        "vae_cosine": (index_mu, query_mu, True),
        "vae_l2": (index_mu, query_mu, False),
        "pixel_pca_cosine": (
            pca.project(to_pixels(index.inputs)),
            pca.project(to_pixels(queries_array)),
            True,
        ),
    }
    groups = np.array([index.groups[t] for t in targets], dtype=object)
    copy_detection: dict[str, Any] = {}
    for method, (base_vectors, query_vectors, normalise) in vectors.items():
        found = search(base_vectors, query_vectors, sizes.k, normalise)
        copy_detection[method] = hit_rates(found, targets, np.array(query_kinds, dtype=object), groups)
    stamp_ids = np.flatnonzero(np.array([g == "stamp" for g in index.groups]))
    stamp_labels = [index.categories[i] or "" for i in stamp_ids]
    precision = {
        method: category_precision(base_vectors[stamp_ids], stamp_labels, sizes.k, normalise)
        for method, (base_vectors, _, normalise) in vectors.items()
    }
    seconds["search"] = time.perf_counter() - started

    photos = [s for s in sources if s.kind == "photo"]
    failed = [(s.relative, r.error) for s, r in zip(sources, loaded, strict=True) if r.error]
    return {
        "model_id": card.model_id,
        "sizes": asdict(sizes),
        "seed": SEED,
        "image_size": size,
        "latent_dim": codec.latent_dim,
        "pixel_baseline": {"size": PIXEL_SIZE, "pca_dim": dim, "explained_variance": pca.explained},
        "dataset": {
            "eval_photos": len(photos),
            "eval_photos_with_train_sibling": sum(s.train_sibling for s in photos),
            "photo_crops_planned": sum(s.items for s in photos),
            "items_planned": items_total,
            "items_indexed": len(index.inputs),
            "items_failed": items_total - len(index.inputs) - index.duplicates,
            "duplicates_dropped": index.duplicates,
            "indexed_by_group": {g: index.groups.count(g) for g in SOURCE_GROUPS},
            "queries": len(targets),
            "queries_by_kind": {k: query_kinds.count(k) for k in QUERY_KINDS},
            "stamps": len(stamp_ids),
            "stamp_categories": {c: stamp_labels.count(c) for c in sorted(set(stamp_labels))},
            "failed_sources": failed[:20],
        },
        "copy_detection": copy_detection,
        "category_precision": {
            "k": sizes.k,
            "chance": chance_precision(stamp_labels),
            **precision,
        },
        "psnr_db": psnr,
        "seconds": seconds,
    }


def select_sources(raw: Path, sizes: RetrievalSizes) -> list[Source]:
    """The indexed sources in a fixed order: stamps, clip art, then photo crops (all eval-split or unseen).

    Stamps come first so that an image that is both a stamp and a clip-art file keeps its stamp label
    when duplicates are dropped.
    """
    rng = np.random.default_rng([SEED, 4])
    stamps = [
        Source(str(p), str(p.relative_to(raw)), "stamp", category)
        for category, paths in sorted(stamp_categories(raw).items())
        for p in paths
    ]
    if sizes.stamps is not None and sizes.stamps < len(stamps):
        stamps = [stamps[i] for i in sorted(rng.choice(len(stamps), sizes.stamps, replace=False))]
    clipart = [Source(str(p), str(p.relative_to(raw)), "clipart") for p in clipart_sources(raw, "eval")]
    if sizes.clipart is not None and sizes.clipart < len(clipart):
        clipart = [clipart[i] for i in sorted(rng.choice(len(clipart), sizes.clipart, replace=False))]
    train_groups = {_picture_group(r) for r in _train_photo_paths(raw)}
    photos = []
    for number, path in enumerate(photo_sources(raw, "eval")):
        crop_rng = np.random.default_rng([SEED, 1, number])
        crops = tuple(
            (float(crop_rng.uniform(*CROP_SCALE)), float(crop_rng.random()), float(crop_rng.random()))
            for _ in range(sizes.crops_per_photo)
        )
        relative = str(path.relative_to(raw))
        sibling = _picture_group(relative) in train_groups
        photos.append(Source(str(path), relative, "photo", crops=crops, train_sibling=sibling))
    return stamps + clipart + photos


def plan_queries(sources: Sequence[Source], count: int) -> dict[int, list[QuerySpec]]:
    """Pick `count` random items and give them alteration kinds in equal shares; keyed by source index."""
    owners = [(s, offset) for s, source in enumerate(sources) for offset in range(source.items)]
    rng = np.random.default_rng([SEED, 2])
    chosen = rng.choice(len(owners), min(count, len(owners)), replace=False)
    planned: dict[int, list[QuerySpec]] = {}
    for n, item in enumerate(chosen):
        source, offset = owners[int(item)]
        planned.setdefault(source, []).append(QuerySpec(offset, QUERY_KINDS[n % len(QUERY_KINDS)], int(item)))
    return planned


def load_sources(
    sources: Sequence[Source], queries: dict[int, list[QuerySpec]], size: int, workers: int | None = None
) -> list[SourceResult]:
    """Decode every source (in worker processes) into model inputs and its planned altered queries."""
    workers = workers or os.cpu_count() or 1
    jobs = [(s, queries.get(i, []), size) for i, s in enumerate(sources)]
    if workers == 1:
        return [_load_job(job) for job in jobs]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_load_job, jobs, chunksize=4))


def _load_job(job: tuple[Source, list[QuerySpec], int]) -> SourceResult:
    source, queries, size = job
    try:
        return _load_source(source, queries, size)
    except BadImage as exc:
        return SourceResult(inputs=[None] * source.items, error=exc.reason)


def _load_source(source: Source, queries: list[QuerySpec], size: int) -> SourceResult:
    wanted = {q.offset for q in queries}
    originals: dict[int, np.ndarray] = {}
    if source.crops:
        pixels = load_image(source.path, max_pixels=MAX_SOURCE_PIXELS).pixels
        inputs: list[np.ndarray | None] = []
        for offset, box in enumerate(source.crops):
            crop = _crop(pixels, box, size)
            inputs.append(fit_square(crop, size))
            if offset in wanted:
                originals[offset] = _cap(crop)
    else:
        inputs = [load_for_model(source.path, size, max_pixels=MAX_SOURCE_PIXELS)]
        if wanted:
            originals[0] = _cap(load_image(source.path, max_pixels=MAX_SOURCE_PIXELS).pixels)
    result = SourceResult(inputs=inputs)
    for query in queries:
        rng = np.random.default_rng([SEED, 3, query.seed])
        ops = choose_ops(query.kind, rng)
        encoded = alter(Image.fromarray(originals[query.offset]), ops, rng)
        try:
            result.queries.append((query.offset, query.kind, ops, load_for_model(encoded, size)))
        except BadImage:
            result.queries.append((query.offset, query.kind, ops, None))
    return result


def _crop(pixels: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    short = min(height, width)
    side = min(short, max(size, round(short * box[0])))
    left = round((width - side) * box[1])
    top = round((height - side) * box[2])
    return pixels[top : top + side, left : left + side]


def _cap(pixels: np.ndarray) -> np.ndarray:
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


@dataclass
class IndexSet:
    """The decoded, de-duplicated indexed items with their labels."""

    inputs: np.ndarray  # (N, S, S, 3) uint8 model inputs
    groups: list[str]
    categories: list[str | None]
    first_item: list[int]  # per source: the planned item number of its first item
    kept_of: dict[int, int]  # planned item number -> row in `inputs` (duplicates map to the kept copy)
    duplicates: int


def build_index(sources: Sequence[Source], loaded: Sequence[SourceResult]) -> IndexSet:
    """Stack the decoded items, dropping failures and byte-identical model inputs (keeping the first)."""
    inputs: list[np.ndarray] = []
    groups: list[str] = []
    categories: list[str | None] = []
    first_item: list[int] = []
    kept_of: dict[int, int] = {}
    seen: dict[bytes, int] = {}
    duplicates = 0
    planned = 0
    for source, result in zip(sources, loaded, strict=True):
        first_item.append(planned)
        for pixels in result.inputs:
            if pixels is not None:
                digest = hashlib.sha256(pixels.tobytes()).digest()
                if digest in seen:
                    kept_of[planned] = seen[digest]
                    duplicates += 1
                else:
                    seen[digest] = kept_of[planned] = len(inputs)
                    inputs.append(pixels)
                    groups.append(source.group)
                    categories.append(source.category)
            planned += 1
    if not inputs:
        raise RuntimeError("no benchmark image could be decoded")
    return IndexSet(np.stack(inputs), groups, categories, first_item, kept_of, duplicates)


def to_pixels(images: np.ndarray) -> np.ndarray:
    """Model inputs (N, S, S, 3) -> the pixel baseline's (N, 32, 32, 3) via `fit_square`."""
    if len(images) == 0:
        return np.empty((0, PIXEL_SIZE, PIXEL_SIZE, 3), np.uint8)
    return np.stack([fit_square(image, PIXEL_SIZE) for image in images])


@dataclass(frozen=True)
class PixelPCA:
    """PCA of flattened RGB pixels in [0, 1], centred on the indexed set's mean."""

    mean: np.ndarray
    components: np.ndarray  # (dim, 3 * P * P)
    explained: float  # share of the indexed set's variance the components keep

    @classmethod
    def fit(cls, pixels: np.ndarray, dim: int) -> PixelPCA:
        flat = pixels.reshape(len(pixels), -1).astype(np.float64) / 255
        mean = flat.mean(axis=0)
        _, singular, components = np.linalg.svd(flat - mean, full_matrices=False)
        variance = singular**2
        explained = float(variance[:dim].sum() / variance.sum()) if variance.sum() > 0 else 1.0
        return cls(mean.astype(np.float32), components[:dim].astype(np.float32), explained)

    def project(self, pixels: np.ndarray) -> np.ndarray:
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255
        return np.ascontiguousarray((flat - self.mean) @ self.components.T, dtype=np.float32)


def search(base: np.ndarray, queries: np.ndarray, k: int, normalise: bool) -> np.ndarray:
    """Ids (Q, k) of the k nearest `base` rows per query, exact L2 (cosine when `normalise`)."""
    base = np.array(base, dtype=np.float32, order="C")
    queries = np.array(queries, dtype=np.float32, order="C")
    if normalise:
        faiss.normalize_L2(base)
        if len(queries):
            faiss.normalize_L2(queries)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    if len(queries) == 0:
        return np.empty((0, k), np.int64)
    _, ids = index.search(queries, min(k, len(base)))
    return ids


def hit_rates(
    found: np.ndarray, targets: np.ndarray, kinds: np.ndarray, groups: np.ndarray
) -> dict[str, Any]:
    """Top-1 and top-k hit rates overall, per alteration kind and per source group."""
    top1 = found[:, 0] == targets if len(found) else np.zeros(0, bool)
    topk = (found == targets[:, None]).any(axis=1) if len(found) else np.zeros(0, bool)

    def rates(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        return {
            "n": n,
            "top1": float(top1[mask].mean()) if n else None,
            "top10": float(topk[mask].mean()) if n else None,
        }

    everything = np.ones(len(targets), bool)
    return {
        "overall": rates(everything),
        "by_alteration": {kind: rates(kinds == kind) for kind in QUERY_KINDS},
        "by_source": {group: rates(groups == group) for group in SOURCE_GROUPS},
    }


def category_precision(vectors: np.ndarray, labels: Sequence[str], k: int, normalise: bool) -> float | None:
    """Mean share of each item's k nearest other items that carry its label."""
    if len(vectors) < 2:
        return None
    found = search(vectors, vectors, k + 1, normalise)
    labels_array = np.array(labels, dtype=object)
    scores = []
    for i, row in enumerate(found):
        neighbours = [j for j in row if j != i and j >= 0][:k]
        scores.append(float(np.mean(labels_array[neighbours] == labels_array[i])))
    return float(np.mean(scores))


def chance_precision(labels: Sequence[str]) -> float | None:
    """Expected precision of random neighbours: mean over items of (same-label others) / (all others)."""
    if len(labels) < 2:
        return None
    counts = {label: labels.count(label) for label in set(labels)}
    return float(np.mean([(counts[label] - 1) / (len(labels) - 1) for label in labels]))


def reconstruction_psnr(
    codec: LatentCodec, images: np.ndarray, latents: np.ndarray, groups: Sequence[str], batch: int = 256
) -> dict[str, float | None]:
    """Mean PSNR (dB) of decode(mu) against the model inputs: over all items and per source group."""
    scores = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            target = torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).float().div(255)
            decoded = codec.model.decode(torch.from_numpy(latents[start : start + batch]))
            scores.append(losses.psnr(decoded, target).numpy())
    per_item = np.concatenate(scores)
    labels = np.array(groups, dtype=object)
    out: dict[str, float | None] = {"all": float(per_item.mean())}
    for group in SOURCE_GROUPS:
        mask = labels == group
        out[group] = float(per_item[mask].mean()) if mask.any() else None
    photos = np.isin(labels, ["photo_clean", "photo_train_sibling"])
    out["photo"] = float(per_item[photos].mean()) if photos.any() else None
    return out


LABELS = {"vae_cosine": "VAE cosine", "vae_l2": "VAE L2", "pixel_pca_cosine": "pixel-PCA cosine"}


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: copy detection by alteration and by source, precision@10, PSNR."""
    data = result["dataset"]
    k = result["sizes"]["k"]
    copy = result["copy_detection"]
    headers = ["queries", "n"] + [f"{LABELS[m]} {h}" for m in METHODS for h in ("@1", f"@{k}")]

    def rows(section: str, keys: Sequence[str]) -> list[list[Any]]:
        out = []
        for key in keys:
            n = copy[METHODS[0]][section][key]["n"]
            if n:
                cells = [copy[m][section][key][h] for m in METHODS for h in ("top1", "top10")]
                out.append([key, n, *cells])
        return out

    overall = [
        ["all", copy[METHODS[0]]["overall"]["n"]]
        + [copy[m]["overall"][h] for m in METHODS for h in ("top1", "top10")]
    ]
    by_group = data["indexed_by_group"]
    crops = by_group["photo_clean"] + by_group["photo_train_sibling"]
    title = (
        f"Copy detection: {data['items_indexed']} indexed ({crops} crops of {data['eval_photos']} eval "
        f"photos, {by_group['clipart']} clip art, {by_group['stamp']} stamps; {data['duplicates_dropped']} "
        f"duplicates dropped)\n{data['queries']} altered queries; hit rate of the original at rank 1 / top {k}"
    )
    copy_table = table(title, headers, rows("by_alteration", QUERY_KINDS) + overall)
    source_table = table(
        "Copy detection by source of the original (photo_train_sibling: another version of the picture is "
        "in the training split)",
        headers,
        rows("by_source", SOURCE_GROUPS),
    )
    precision = result["category_precision"]
    chance = precision["chance"]
    precision_rows: list[list[Any]] = [
        [LABELS[m], precision[m], precision[m] / chance if precision[m] is not None and chance else None]
        for m in METHODS
    ]
    precision_rows.append(["chance (random neighbours)", chance, 1.0 if chance else None])
    precision_table = table(
        f"Category precision@{k}: {data['stamps']} tuxpaint stamps, "
        f"{len(data['stamp_categories'])} categories",
        ["method", f"precision@{k}", "x chance"],
        precision_rows,
    )
    psnr = result["psnr_db"]
    psnr_table = table(
        "VAE reconstruction PSNR of decode(mu), dB",
        ["images", "PSNR dB"],
        [[name, psnr[name]] for name in ("photo", "clipart", "stamp", "all") if psnr.get(name) is not None],
    )
    pixel = result["pixel_baseline"]
    extra = (
        f"pixel baseline: {pixel['size']}px RGB -> PCA {pixel['pca_dim']}-d "
        f"keeps {100 * pixel['explained_variance']:.1f}% of the variance; "
        f"{data['eval_photos_with_train_sibling']} of {data['eval_photos']} eval photos have another version "
        f"in the training split"
    )
    return "\n\n".join([copy_table, source_table, precision_table, psnr_table, extra])


def _train_photo_paths(raw: Path) -> list[str]:
    found = []
    for sub in PHOTO_DIRS:
        if (raw / sub).is_dir():
            found += [str(p.relative_to(raw)) for p in iter_image_files(raw / sub)]
    return [r for r in found if split_of(r) == "train"]


_VARIANT_SUFFIX = re.compile(r"([-_](d|l|dark|light)|_\d+x\d+)$", re.IGNORECASE)


def _picture_group(relative: str) -> str:
    """Files that are versions of one picture: a KDE wallpaper folder, or a stem minus -d/-l/size suffixes."""
    parts = Path(relative).parts
    if len(parts) > 3 and parts[:3] == ("usr", "share", "wallpapers"):
        return "/".join(parts[:4])
    path = Path(relative)
    return str(path.parent / _VARIANT_SUFFIX.sub("", path.stem).lower())
