"""Retrieval quality of the VAE's mu latents against a pixel-PCA baseline, on images the model never saw.

(a) Copy detection: index square crops of the eval-split photos (one file per picture, so no version of
    an eval picture is in training; the crops of a photo are distinct items), eval-split clip art and
    the tuxpaint stamps, then query with altered copies (`bench.alterations`) made with Pillow at source
    resolution and loaded through `indexer.load.load_for_model`; report top-1 and top-10 hit rates of
    the original, by alteration and by source group (photo / clipart / stamp).
(b) Category precision@10 on the tuxpaint stamps (category = top-level stamp folder), with the chance rate.
(c) Reconstruction PSNR of the VAE on the same images.

Methods: "vae_cosine" (mu, L2-normalised, exact L2 search == cosine), "vae_l2" (raw mu) and
"pixel_pca_cosine" (`bench.pixel_baseline`: 32x32 RGB pixels, centred, PCA fitted on the indexed set to
the latent dimension, L2-normalised). Every search is exact (`faiss.IndexFlatL2`).

This module selects the data, runs the steps and formats the report; `bench.retrieval_items` decodes the
items and queries, `bench.retrieval_metrics` scores them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.alterations import QUERY_KINDS
from bench.copy_ranking import SUFFIX as COPIES_FIRST
from bench.copy_ranking import alignment_thumbnails, copies_first_precision, copies_first_search
from bench.datasets import clipart_sources, fetch, photo_sources, stamp_categories
from bench.look_alike import INDISTINGUISHABLE_RMS, rms_between, thumbnails
from bench.pixel_baseline import PCA_DIMS, PIXEL_SIZE, PIXEL_SIZES, PixelPCA, to_pixels
from bench.report import table
from bench.retrieval_items import (
    SEED,
    SOURCE_GROUPS,
    Source,
    build_index,
    gather_queries,
    load_sources,
    plan_queries,
)
from bench.retrieval_metrics import (
    category_precision,
    chance_precision,
    hit_rates,
    reconstruction_quality,
    search,
)
from latentdex.indexer.whitening import DUPLICATE_POWER, WHITENING_POWER, Whitening
from latentdex.models.checkpoint import load_model
from latentdex.models.inference import LatentCodec

NAME = "retrieval_quality"
CROP_SCALE = (0.15, 1.0)  # photo crop side as a share of the photo's shorter side
MIRROR_SUFFIX = "_mirror"


@dataclass(frozen=True)
class RetrievalSizes:
    """How big the indexed set and the query set are."""

    crops_per_photo: int
    clipart: int | None  # eval clip-art images to index (None: all)
    stamps: int | None  # stamps to index (None: all)
    queries: int
    k: int = 10


# About 10 eval photos (one per picture): 100 crops each give ~1000 photo items next to 1300 clip art and
# ~785 stamps, ~3000 in all; the quick run keeps about the same photo share (~30% of items and queries).
FULL = RetrievalSizes(crops_per_photo=100, clipart=1300, stamps=None, queries=500)
QUICK = RetrievalSizes(crops_per_photo=20, clipart=220, stamps=200, queries=100)


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    workers: int | None = None,
    compare: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Build the index and queries from `data_root`, evaluate every method; returns the JSON-ready result.

    `model_dir` (None: the shipped model) is the model under test; `compare` are more model directories
    scored the same way in the same run (e.g. the model shipped before). All must share an input size.
    """
    sizes = QUICK if quick else FULL
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    codecs = [LatentCodec(*load_model(model_dir))]
    codecs += [LatentCodec(*load_model(other)) for other in compare]
    size = codecs[0].image_size
    if any(codec.image_size != size for codec in codecs):
        raise ValueError("every compared model must take the same input size")
    raw = fetch(Path(data_root))
    sources = select_sources(raw, sizes)
    items_total = sum(s.items for s in sources)
    queries = plan_queries(sources, sizes.queries)
    seconds["select"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = load_sources(sources, queries, size, workers)
    seconds["load_and_alter"] = time.perf_counter() - started

    index = build_index(sources, loaded)
    queries_set = gather_queries(index, loaded, size)
    targets = queries_set.targets

    vectors: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    models: dict[str, Any] = {}
    for role, codec in zip(("under test", *("compared",) * len(compare)), codecs, strict=True):
        started = time.perf_counter()
        index_mu = codec.encode(index.inputs)
        query_mu = codec.encode(queries_set.inputs)
        seconds[f"encode {codec.model_id}"] = time.perf_counter() - started
        quality = reconstruction_quality(codec, index.inputs, index_mu, index.groups, SOURCE_GROUPS)
        models[codec.model_id] = {"role": role, "latent_dim": codec.latent_dim, "decoding": quality}
        whitening = Whitening.fit(index_mu)
        vectors[f"{codec.model_id} whitened"] = (whitening.apply(index_mu), whitening.apply(query_mu), True)
        if role == "under test":
            for floor in FLOOR_VARIANTS:
                varied = Whitening.fit(index_mu, variance_floor=floor)
                name = f"{codec.model_id} whitened, floor {floor:g}"
                vectors[name] = (varied.apply(index_mu), varied.apply(query_mu), True)
            for power in POWER_VARIANTS:
                varied = Whitening.fit(index_mu, power=power)
                name = f"{codec.model_id} whitened, power {power:g}"
                vectors[name] = (varied.apply(index_mu), varied.apply(query_mu), True)
        vectors[f"{codec.model_id} cosine"] = (index_mu, query_mu, True)
        vectors[f"{codec.model_id} l2"] = (index_mu, query_mu, False)

    started = time.perf_counter()
    pixel_vectors, pixel_baseline = pixel_baselines(index.inputs, queries_set.inputs, codecs[0].latent_dim)
    vectors |= pixel_vectors
    seconds["pixel_pca"] = time.perf_counter() - started

    started = time.perf_counter()
    groups = np.array([index.groups[t] for t in targets], dtype=object)
    copy_detection: dict[str, Any] = {}
    small = thumbnails(index.inputs)
    for method, (base_vectors, query_vectors, normalise) in vectors.items():
        found = search(base_vectors, query_vectors, sizes.k, normalise)
        copy_detection[method] = hit_rates(
            found, targets, queries_set.kinds, groups, QUERY_KINDS, SOURCE_GROUPS
        )
        copy_detection[method]["look_alike"] = look_alike_hits(found, targets, small, groups)
    stamp_ids = np.flatnonzero(np.array([g == "stamp" for g in index.groups]))
    stamp_labels = [index.categories[i] or "" for i in stamp_ids]
    precision = {
        method: category_precision(base_vectors[stamp_ids], stamp_labels, sizes.k, normalise)
        for method, (base_vectors, _, normalise) in vectors.items()
    }
    seconds["search"] = time.perf_counter() - started
    best_pixels = max(
        (m for m in vectors if m.startswith(PIXEL_WHITENED_PREFIX)),
        key=lambda m: copy_detection[m]["overall"]["top1"] or 0.0,
    )
    pixel_baseline["best_whitened"] = best_pixels

    # As the server answers by default: the nearest by vector re-ranked copies first; the best whitened
    # pixels get the same re-ranking, so the latent's margin is measured like for like.
    started = time.perf_counter()
    index_thumbnails = alignment_thumbnails(index.inputs)
    query_thumbnails = alignment_thumbnails(queries_set.inputs)
    ranked_methods = [f"{codec.model_id} whitened" for codec in codecs] + [best_pixels]
    for method in ranked_methods:
        base_vectors, query_vectors, _ = vectors[method]
        found = copies_first_search(base_vectors, query_vectors, index_thumbnails, query_thumbnails, sizes.k)
        name = method + COPIES_FIRST
        copy_detection[name] = hit_rates(
            found, targets, queries_set.kinds, groups, QUERY_KINDS, SOURCE_GROUPS
        )
        copy_detection[name]["look_alike"] = look_alike_hits(found, targets, small, groups)
        precision[name] = copies_first_precision(
            base_vectors[stamp_ids], index_thumbnails[stamp_ids], stamp_labels, sizes.k
        )
    pixel_baseline["best_whitened_copies_first"] = best_pixels + COPIES_FIRST
    seconds["copies_first"] = time.perf_counter() - started

    photos = [s for s in sources if s.kind == "photo"]
    failed = [(s.relative, r.error) for s, r in zip(sources, loaded, strict=True) if r.error]
    return {
        "model_id": codecs[0].model_id,
        "models": models,
        "sizes": asdict(sizes),
        "seed": SEED,
        "image_size": size,
        "latent_dim": codecs[0].latent_dim,
        "pixel_baseline": pixel_baseline,
        "dataset": {
            "eval_photos": len(photos),
            "photo_crops_planned": sum(s.items for s in photos),
            "items_planned": items_total,
            "items_indexed": len(index.inputs),
            "items_failed": items_total - len(index.inputs) - index.duplicates,
            "duplicates_dropped": index.duplicates,
            "indexed_by_group": {g: index.groups.count(g) for g in SOURCE_GROUPS},
            "queries": len(targets),
            "queries_by_kind": {k: int((queries_set.kinds == k).sum()) for k in QUERY_KINDS},
            "combos": dict(sorted(Counter(queries_set.ops[queries_set.kinds == "combo"]).items())),
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
        "seconds": seconds,
    }


def look_alike_hits(
    found: np.ndarray, targets: np.ndarray, small: np.ndarray, groups: np.ndarray
) -> dict[str, float | None]:
    """Top-1 where a first hit that looks the same as the original (`bench.look_alike`: another crop of
    the photo covering the same ground, or an openclipart drawing kept in two files) counts too."""
    if not len(found):
        return {"top1": None, "photo_top1": None}
    first = found[:, 0]
    hit = (first == targets) | (rms_between(small[first], small[targets]) <= INDISTINGUISHABLE_RMS)
    photos = groups == "photo"
    return {
        "top1": float(hit.mean()),
        "photo_top1": float(hit[photos].mean()) if photos.any() else None,
    }


# The store's whitening floors small variances at VARIANCE_FLOOR x the mean; these are measured beside it.
FLOOR_VARIANTS = (0.001, 0.1)
# Full whitening (the space duplicates are measured in), beside the stores' half-way search space.
POWER_VARIANTS = (DUPLICATE_POWER,)
# The pixel baseline is whitened at both powers; the best variant of all is the one to beat.
PIXEL_POWERS = (WHITENING_POWER, DUPLICATE_POWER)
PIXEL_COSINE = "pixels PCA cosine"
PIXEL_WHITENED_PREFIX = "pixels PCA whitened"


def pixel_baselines(
    index_inputs: np.ndarray, query_inputs: np.ndarray, latent_dim: int
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, bool]], dict[str, Any]]:
    """The pixel methods' vectors: PCA of 32-px pixels to the latent dimension, and whitened PCA at every
    size in `PIXEL_SIZES` and component count in `PCA_DIMS` (the best of them is the one to beat)."""
    vectors: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    facts: dict[str, Any] = {"variants": {}}
    for pixel_size in sorted({PIXEL_SIZE, *PIXEL_SIZES}):
        index_pixels, query_pixels = to_pixels(index_inputs, pixel_size), to_pixels(query_inputs, pixel_size)
        dims = set(PCA_DIMS) if pixel_size in PIXEL_SIZES else set()
        if pixel_size == PIXEL_SIZE:
            dims.add(latent_dim)
        for dim in sorted(dims):
            dim = min(dim, len(index_inputs), 3 * pixel_size**2)
            pca = PixelPCA.fit(index_pixels, dim, seed=SEED)
            base, queries = pca.project(index_pixels), pca.project(query_pixels)
            if pixel_size == PIXEL_SIZE and dim == min(latent_dim, len(index_inputs), 3 * pixel_size**2):
                vectors[PIXEL_COSINE] = (base, queries, True)
                facts |= {"size": pixel_size, "pca_dim": dim, "explained_variance": pca.explained}
            if pixel_size in PIXEL_SIZES and dim in PCA_DIMS:
                for power in PIXEL_POWERS:
                    whitening = Whitening.fit(base, power=power)
                    name = f"{PIXEL_WHITENED_PREFIX} {pixel_size}px {dim}, power {power:g}"
                    vectors[name] = (whitening.apply(base), whitening.apply(queries), True)
                    facts["variants"][name] = {"explained_variance": pca.explained}
    return vectors, facts


def select_sources(raw: Path, sizes: RetrievalSizes) -> list[Source]:
    """The indexed sources in a fixed order: stamps, clip art, then photo crops (all eval-split or unseen).

    Stamps come first so that an image that is both a stamp and a clip-art file keeps its stamp label
    when duplicates are dropped. `*_mirror` stamps are left out: they are flipped copies of another
    stamp, which would count a flip-invariant model's correct match as a copy-detection miss and give
    it a free same-category neighbour. Photos are one file per picture (`photo_sources`), so no eval
    photo has another version in the training split.
    """
    rng = np.random.default_rng([SEED, 4])
    stamps = [
        Source(str(p), str(p.relative_to(raw)), "stamp", category)
        for category, paths in sorted(stamp_categories(raw).items())
        for p in paths
        if not p.stem.endswith(MIRROR_SUFFIX)
    ]
    if sizes.stamps is not None and sizes.stamps < len(stamps):
        stamps = [stamps[i] for i in sorted(rng.choice(len(stamps), sizes.stamps, replace=False))]
    clipart = [Source(str(p), str(p.relative_to(raw)), "clipart") for p in clipart_sources(raw, "eval")]
    if sizes.clipart is not None and sizes.clipart < len(clipart):
        clipart = [clipart[i] for i in sorted(rng.choice(len(clipart), sizes.clipart, replace=False))]
    photos = []
    for number, path in enumerate(photo_sources(raw, "eval")):
        crop_rng = np.random.default_rng([SEED, 1, number])
        crops = tuple(
            (float(crop_rng.uniform(*CROP_SCALE)), float(crop_rng.random()), float(crop_rng.random()))
            for _ in range(sizes.crops_per_photo)
        )
        photos.append(Source(str(path), str(path.relative_to(raw)), "photo", crops=crops))
    return stamps + clipart + photos


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: copy detection by alteration and by source, precision@k, decode quality."""
    data = result["dataset"]
    k = result["sizes"]["k"]
    copy = result["copy_detection"]
    methods = _shown_methods(result)
    headers = ["queries", "n"] + [f"{m} {h}" for m in methods for h in ("@1", f"@{k}")]

    def rows(section: str, keys: Sequence[str]) -> list[list[Any]]:
        out = []
        for key in keys:
            n = copy[methods[0]][section][key]["n"]
            if n:
                cells = [copy[m][section][key][h] for m in methods for h in ("top1", "top10")]
                out.append([key, n, *cells])
        return out

    overall = [
        ["all", copy[methods[0]]["overall"]["n"]]
        + [copy[m]["overall"][h] for m in methods for h in ("top1", "top10")]
    ]
    by_group = data["indexed_by_group"]
    title = (
        f"Copy detection: {data['items_indexed']} indexed ({by_group['photo']} crops of "
        f"{data['eval_photos']} eval photos, {by_group['clipart']} clip art, {by_group['stamp']} stamps; "
        f"{data['duplicates_dropped']} duplicates dropped)\n{data['queries']} altered queries; hit rate "
        f"of the original at rank 1 / in the top {k}"
    )
    copy_table = table(title, headers, rows("by_alteration", QUERY_KINDS) + overall)
    source_table = table(
        "Copy detection by source of the original", headers, rows("by_source", SOURCE_GROUPS)
    )
    every = list(copy)
    summary_rows = []
    precision = result["category_precision"]
    chance = precision["chance"]
    for method in every:
        by_source = copy[method]["by_source"]
        look_alike = copy[method].get("look_alike", {})
        summary_rows.append(
            [
                method,
                copy[method]["overall"]["top1"],
                by_source["photo"]["top1"],
                look_alike.get("top1"),
                look_alike.get("photo_top1"),
                copy[method]["overall"]["top10"],
                precision[method],
                precision[method] / chance if precision[method] is not None and chance else None,
            ]
        )
    summary_rows.append(
        ["chance (random neighbours)", None, None, None, None, None, chance, 1.0 if chance else None]
    )
    summary_table = table(
        f"Every method: copy top-1 (all, photos; then counting a first hit that looks the same as the "
        f"original), top-{k}; category precision@{k} on {data['stamps']} tuxpaint stamps in "
        f"{len(data['stamp_categories'])} categories",
        [
            "method",
            "copy @1",
            "photos @1",
            "look-alike @1",
            "photos",
            f"copy @{k}",
            f"precision@{k}",
            "x chance",
        ],
        summary_rows,
    )
    quality_rows = []
    for model_id, facts in result["models"].items():
        for group in ("photo", "clipart", "stamp", "all"):
            q = facts["decoding"].get(group)
            if q is not None:
                quality_rows.append(
                    [model_id, group, q["psnr_db"], q["ssim"], q["sharpness"], q["checkerboard"]]
                )
    quality_table = table(
        "decode(mu) against the input: PSNR dB, SSIM, sharpness (high-frequency energy, decoded / "
        "original), checkerboard (period-2 spectral peak, decoded / original)",
        ["model", "images", "PSNR dB", "SSIM", "sharpness", "checkerboard"],
        quality_rows,
    )
    pixel = result["pixel_baseline"]
    extra = (
        f"pixel baseline: {pixel['size']}px RGB -> PCA {pixel['pca_dim']}-d keeps "
        f"{100 * pixel['explained_variance']:.1f}% of the variance; best whitened pixel PCA: "
        f"{pixel['best_whitened']}"
    )
    return "\n\n".join([copy_table, source_table, summary_table, quality_table, extra])


def _shown_methods(result: dict[str, Any]) -> list[str]:
    """The by-alteration tables' columns: the model under test whitened (re-ranked copies first, as the
    server answers, and not) and cosine, every compared model whitened, the best whitened pixels (both
    ways) and plain pixel PCA."""
    under_test = result["model_id"]
    pixels = result["pixel_baseline"]
    shown = [f"{under_test} whitened{COPIES_FIRST}", f"{under_test} whitened", f"{under_test} cosine"]
    shown += [f"{m} whitened" for m, facts in result["models"].items() if facts["role"] == "compared"]
    shown += [pixels["best_whitened_copies_first"]] if "best_whitened_copies_first" in pixels else []
    return [*shown, pixels["best_whitened"], PIXEL_COSINE]
