"""Near-duplicate detection: calibrate the `near` and `similar` presets and compare with perceptual hashes.

Pairs (`bench.duplicate_pairs`) come from images the model never trained on: square crops of the
eval-split photos and eval-split clip art. Positives are an item and an altered copy of it (JPEG, resize,
crop, colour, small rotation, border, caption, two of these); negatives are neighbouring crops of one
photo (30-60% overlap), burst-like frames of one photo (10-20% shift, small zoom) and random pairs of
different items; a negative pair whose two images look the same (`bench.look_alike`: 32-px thumbnails
within 0.02 RMS, e.g. shifted frames of a smooth gradient) is dropped and counted, since it is not two
different pictures. Sources are split 50/50 into a calibration and a held-out split (by photo and by clip-art
file): thresholds are chosen on the calibration pairs, precision and recall reported on the held-out ones.

Methods, each a distance per pair:
- "vae whitened": 1 - cosine of mu fully whitened by `Whitening.fit` on every image of the run (as a store
  fits on its library and measures duplicates: `VectorSpec.to_duplicate_space`), what `latentdex
  duplicates` thresholds;
- "vae cosine": 1 - cosine of raw mu;
- "phash" / "dhash": Hamming distance of `imagehash`'s 64-bit hashes of the source-resolution images;
- "pixels PCA whitened": the best (by calibration AUC) of `bench.pixel_baseline`'s whitened pixel PCAs.

`near` is the largest threshold whose calibration pair precision is >= 0.98, `similar` >= 0.90 (the
threshold is placed halfway to the next pair's distance). Pair precision depends on the share of
positives among the pairs (here 1 in 3); a photo library holds far more different pairs than duplicates,
which is why the held-out false-positive rate per negative kind is reported as well.

This module selects the data, measures the distances and prints the report; the pair statistics
live in `bench.pair_metrics`, the ROC figure in `bench.roc_figure`.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.datasets import MAX_SOURCE_PIXELS, clipart_sources, fetch, photo_sources
from bench.duplicate_pairs import (
    ALTERATION_KINDS,
    GROUPS,
    NEGATIVE_KINDS,
    SPLITS,
    ImageSpec,
    Pair,
    PairSource,
    assign_splits,
    plan_pairs,
    render_images,
)
from bench.hash_rule_calibration import calibrate_rule
from bench.look_alike import INDISTINGUISHABLE_RMS, rms_between, thumbnails
from bench.pair_metrics import (
    PIXELS,
    PRESET_PRECISION,
    VAE_COSINE,
    VAE_WHITENED,
    PairLabels,
    auc,
    by_photo,
    distance_quantiles,
    evaluate_method,
    hardest_pairs,
)
from bench.pixel_baseline import PCA_DIMS, PIXEL_SIZES, PixelPCA, to_pixels
from bench.region_rule_calibration import (
    GUARD_FACTORS,
    calibrate_region_rule,
    neighbour_pairs,
    pair_overlaps,
)
from bench.report import table
from bench.retrieval_items import SEED
from bench.roc_figure import draw_roc
from latentdex.indexer.duplicates import HashRule
from latentdex.indexer.perceptual_hash import closest_bits
from latentdex.indexer.whitening import DUPLICATE_POWER, Whitening
from latentdex.models.checkpoint import load_model
from latentdex.models.inference import LatentCodec

NAME = "duplicates_quality"
GOAL = {"precision": 0.98, "recall": 0.95}  # the target for `near` on the held-out split
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "duplicates-roc.png"
QUICK_FIGURE = Path(__file__).resolve().parent / "work" / "duplicates-roc-quick.png"


@dataclass(frozen=True)
class DuplicateSizes:
    """How many pairs of each sign to plan (half of the positives are photo crops, half clip art)."""

    positives: int
    negatives: int


FULL = DuplicateSizes(positives=2000, negatives=4000)
QUICK = DuplicateSizes(positives=300, negatives=600)


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Make the pairs, measure every method's distances, calibrate the presets; returns the JSON result."""
    sizes = QUICK if quick else FULL
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    codec = LatentCodec(*load_model(model_dir))
    raw = fetch(Path(data_root))
    sources, skipped = select_sources(raw)
    plan = plan_pairs(sources, sizes.positives, sizes.negatives, SEED)
    seconds["select"] = time.perf_counter() - started

    started = time.perf_counter()
    rendered = render_images(sources, plan.images, codec.image_size, SEED, workers)
    seconds["load_and_alter"] = time.perf_counter() - started

    pairs, dropped = usable_pairs(plan.pairs, rendered.inputs, rendered.ok)
    used = np.flatnonzero(rendered.ok)
    started = time.perf_counter()
    mu = np.zeros((len(plan.images), codec.latent_dim), np.float32)
    mu[used] = codec.encode(rendered.inputs[used])
    seconds["encode"] = time.perf_counter() - started

    started = time.perf_counter()
    a = np.array([p.a for p in pairs], dtype=np.int64)
    b = np.array([p.b for p in pairs], dtype=np.int64)
    whitened = _unit(Whitening.fit(mu[used]).at_power(DUPLICATE_POWER).apply(mu))
    raw_mu = _unit(mu)
    distances = {
        VAE_WHITENED: 1 - np.einsum("ij,ij->i", whitened[a], whitened[b]),
        VAE_COSINE: 1 - np.einsum("ij,ij->i", raw_mu[a], raw_mu[b]),
        "phash": np.bitwise_count(rendered.phash[a] ^ rendered.phash[b]).astype(np.float64),
        "dhash": np.bitwise_count(rendered.dhash[a] ^ rendered.dhash[b]).astype(np.float64),
    }
    labels = PairLabels.of(pairs)
    pixel_variants = pixel_distances(rendered.inputs, used, a, b)
    pixel_auc = {
        name: auc(d[labels.calibration], labels.positive[labels.calibration])
        for name, d in pixel_variants.items()
    }
    best_pixels = max(pixel_auc, key=lambda name: pixel_auc[name])
    distances[PIXELS] = pixel_variants[best_pixels]
    seconds["distances"] = time.perf_counter() - started

    methods = {name: evaluate_method(name, d, labels) for name, d in distances.items()}
    kept_bits = closest_bits(rendered.kept_hashes[a], rendered.kept_hashes[b]).astype(np.int64)
    hash_rules = {
        space: {
            preset: calibrate_rule(
                distances[method],
                kept_bits,
                labels,
                min_precision,
                methods[method]["presets"]["similar"]["threshold"],
            )
            for preset, min_precision in PRESET_PRECISION.items()
        }
        for space, method in (("whitened", VAE_WHITENED), ("cosine", VAE_COSINE))
    }
    started = time.perf_counter()
    spaces = {"whitened": (VAE_WHITENED, whitened), "cosine": (VAE_COSINE, raw_mu)}
    neighbours = {space: neighbour_pairs(vectors, used, a, b) for space, (_, vectors) in spaces.items()}
    loose = {
        space: methods[method]["presets"]["similar"]["threshold"] for space, (method, _) in spaces.items()
    }
    checked = np.zeros(len(a), bool)
    for space, (method, _) in spaces.items():
        checked |= neighbours[space] & (distances[method] <= max(GUARD_FACTORS) * loose[space])
    overlaps = pair_overlaps(rendered.features, a, b, checked)
    seconds["region_check"] = time.perf_counter() - started
    region_rules = {
        space: {
            preset: calibrate_region_rule(
                _hash_decision(hash_rules[space][preset], distances[method], kept_bits),
                distances[method],
                neighbours[space],
                overlaps,
                labels,
                min_precision,
                loose[space],
            )
            for preset, min_precision in PRESET_PRECISION.items()
        }
        for space, (method, _) in spaces.items()
    }
    figure = QUICK_FIGURE if quick else FIGURE
    started = time.perf_counter()
    draw_roc(methods, labels, figure, hash_rules["whitened"], region_rules["whitened"])
    seconds["figure"] = time.perf_counter() - started
    near = region_rules["whitened"]["near"]["held_out"]
    phash_default = methods["phash"]["fixed"]["<=10"]["held_out"]
    goal = {
        **GOAL,
        "precision_met": near["precision"] is not None and near["precision"] >= GOAL["precision"],
        "recall_met": near["recall"] >= GOAL["recall"],
        "ahead_of_phash_10": {
            "precision": (near["precision"] or 0) > (phash_default["precision"] or 0),
            "recall": near["recall"] > phash_default["recall"],
        },
    }

    return {
        "model_id": codec.model_id,
        "sizes": asdict(sizes),
        "seed": SEED,
        "image_size": codec.image_size,
        "latent_dim": codec.latent_dim,
        "dataset": describe_dataset(sources, skipped, plan.images, pairs, dropped, rendered.errors),
        "pixel_baseline": {"chosen": best_pixels, "calibration_auc": pixel_auc},
        "thresholds": {
            preset: methods[VAE_WHITENED]["presets"][preset]["threshold"] for preset in PRESET_PRECISION
        },
        "hash_rules": hash_rules,
        "region_rules": {
            "pairs_among_neighbours": {space: int(n.sum()) for space, n in neighbours.items()},
            "pairs_checked": int(checked.sum()),
            "pairs_per_second": round(int(checked.sum()) / max(seconds["region_check"], 1e-9), 1),
            **region_rules,
        },
        "goal": goal,
        "methods": methods,
        "vae_distances_held_out": distance_quantiles(distances[VAE_WHITENED], labels),
        "vae_near_by_photo": by_photo(distances[VAE_WHITENED], pairs, plan.images, sources, methods),
        "hardest": hardest_pairs(distances[VAE_WHITENED], pairs, plan.images, sources, methods),
        "figure": str(figure.relative_to(Path(__file__).resolve().parents[1])),
        "seconds": seconds,
    }


def _hash_decision(calibrated: dict[str, Any], distance: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Which pairs a calibrated two-signal rule links (none if it reached no rule)."""
    if not calibrated["reached"]:
        return np.zeros(len(distance), bool)
    return HashRule(**calibrated["rule"]).links(distance, bits)


def select_sources(raw: Path) -> tuple[list[PairSource], list[str]]:
    """The eval photos and eval clip art with their header sizes and splits (50/50 at random per file);
    files over the decoder's pixel cap or with unreadable headers are skipped (returned by name)."""
    rng = np.random.default_rng([SEED, 5])
    sources: list[PairSource] = []
    skipped: list[str] = []
    for group, paths in (("photo", photo_sources(raw, "eval")), ("clipart", clipart_sources(raw, "eval"))):
        splits = assign_splits(len(paths), rng)
        for path, split in zip(paths, splits, strict=True):
            relative = str(path.relative_to(raw))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(path) as image:
                        width, height = image.size
            except (OSError, Image.DecompressionBombError):
                skipped.append(relative)
                continue
            if width * height > MAX_SOURCE_PIXELS:
                skipped.append(relative)
                continue
            sources.append(PairSource(str(path), relative, group, split, width, height))
    return sources, skipped


def usable_pairs(pairs: list[Pair], inputs: np.ndarray, ok: np.ndarray) -> tuple[list[Pair], dict[str, int]]:
    """Drop pairs with an image that failed, and negative pairs that are not two different pictures:
    identical model inputs (the same picture in two files of the data set), or inputs that look the same
    (`bench.look_alike`: e.g. burst frames of a smooth gradient, shifted by less than it changes)."""
    digests = [hashlib.sha256(pixels.tobytes()).digest() for pixels in inputs]
    negatives = [i for i, pair in enumerate(pairs) if not pair.positive and ok[pair.a] and ok[pair.b]]
    small = thumbnails(inputs)
    rms = np.full(len(pairs), np.inf)
    if negatives:
        first = np.array([pairs[i].a for i in negatives])
        second = np.array([pairs[i].b for i in negatives])
        rms[negatives] = rms_between(small[first], small[second])
    kept = []
    dropped = Counter()
    for pair, difference in zip(pairs, rms, strict=True):
        if not (ok[pair.a] and ok[pair.b]):
            dropped["failed"] += 1
        elif not pair.positive and digests[pair.a] == digests[pair.b]:
            dropped["identical_negative"] += 1
        elif not pair.positive and difference <= INDISTINGUISHABLE_RMS:
            dropped[f"indistinguishable_{pair.kind}"] += 1
        else:
            kept.append(pair)
    return kept, dict(dropped)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float64)


def pixel_distances(
    inputs: np.ndarray, used: np.ndarray, a: np.ndarray, b: np.ndarray
) -> dict[str, np.ndarray]:
    """1 - cosine of whitened pixel PCA (PCA and whitening fitted on every image of the run), per variant."""
    out = {}
    for size in PIXEL_SIZES:
        pixels = to_pixels(inputs, size)
        for dim in PCA_DIMS:
            dim = min(dim, len(used), 3 * size**2)
            pca = PixelPCA.fit(pixels[used], dim, seed=SEED)
            projected = pca.project(pixels)
            vectors = _unit(Whitening.fit(projected[used], power=DUPLICATE_POWER).apply(projected))
            out[f"{PIXELS} {size}px {dim}"] = 1 - np.einsum("ij,ij->i", vectors[a], vectors[b])
    return out


def describe_dataset(
    sources: list[PairSource],
    skipped: list[str],
    images: list[ImageSpec],
    pairs: list[Pair],
    dropped: dict[str, int],
    errors: list[tuple[str, str]],
) -> dict[str, Any]:
    """Sources, images and pairs per group, split and kind, for the JSON."""
    sources_by = Counter((s.group, s.split) for s in sources)
    return {
        "sources": {g: {split: sources_by[(g, split)] for split in SPLITS} for g in GROUPS},
        "photos": {
            split: [s.relative for s in sources if s.group == "photo" and s.split == split]
            for split in SPLITS
        },
        "sources_skipped": len(skipped),
        "images": len(images),
        "pairs": len(pairs),
        "pairs_by_kind": {
            split: {
                kind: sum(1 for p in pairs if p.kind == kind and p.split == split)
                for kind in (*ALTERATION_KINDS, *NEGATIVE_KINDS)
            }
            for split in SPLITS
        },
        "combos": dict(sorted(Counter(p.ops for p in pairs if p.kind == "combo").items())),
        "pairs_dropped": dropped,
        "failed_sources": errors,
    }


# -- the printed report ---------------------------------------------------------------------------------


def format_result(result: dict[str, Any]) -> str:
    """Tables: every method's AUC and held-out operating points, then recall by alteration kind."""
    methods = result["methods"]
    data = result["dataset"]
    held = data["pairs_by_kind"][SPLITS[1]]
    cal = data["pairs_by_kind"][SPLITS[0]]
    summary = table(
        f"Duplicate pairs: {data['pairs']} ({sum(cal.values())} calibration, {sum(held.values())} held out) "
        f"over {data['images']} images of {sum(data['sources']['photo'].values())} eval photos and "
        f"{sum(data['sources']['clipart'].values())} eval clip-art files; AUC and the best held-out "
        "recall at pair precision >= 0.98 (oracle threshold)",
        ["method", "AUC calibration", "AUC held out", "recall @ precision 0.98"],
        [
            [name, m["auc"]["calibration"], m["auc"]["held_out"], m["held_out_recall_at_precision_0.98"]]
            for name, m in methods.items()
        ],
    )
    point_rows = []
    for name, m in methods.items():
        for preset, point in m["presets"].items():
            point_rows.append(_point_row(f"{name} {preset}", point["threshold"], point["held_out"]))
        for label, point in m.get("fixed", {}).items():
            point_rows.append(_point_row(f"{name} {label}", point["threshold"], point["held_out"]))
    for space, rules in result["hash_rules"].items():
        for preset, calibrated in rules.items():
            if calibrated["reached"]:
                rule = calibrated["rule"]
                label = f"vae {space} + phash {preset}"
                threshold = (
                    f"{rule['latent_threshold']:.4f} | {rule['max_bits']}b & {rule['max_distance']:.3f}"
                )
                point_rows.append(_point_row(label, threshold, calibrated["held_out"]))
    points = table(
        "Held-out operating points (thresholds from the calibration split; `near`: precision >= 0.98 there, "
        "`similar`: >= 0.90; hashes also at fixed Hamming distances)",
        ["method / threshold", "threshold", "precision", "recall", "FPR", *NEGATIVE_KINDS],
        point_rows,
    )
    for space in ("whitened", "cosine"):
        for preset, calibrated in result["region_rules"][space].items():
            if calibrated["reached"]:
                rule = calibrated["rule"]
                text = (
                    f"<= {rule['max_distance']:.3f}, {rule['min_inliers']} inl, "
                    f"{rule['min_contained']:g} in, {rule['min_agreement']:g} agr"
                )
                label = f"vae {space} + phash + regions {preset}"
                point_rows.append(_point_row(label, text, calibrated["held_out"]))
    regions = {p: r for p, r in result["region_rules"]["whitened"].items() if r["reached"]}
    two_signal = result["hash_rules"]["whitened"]
    shown = [
        *((f"+ regions {preset}", calibrated["held_out"]) for preset, calibrated in regions.items()),
        ("vae whitened + phash near", two_signal["near"]["held_out"]),
        ("vae whitened + phash similar", two_signal["similar"]["held_out"]),
        (f"{VAE_WHITENED} near", methods[VAE_WHITENED]["presets"]["near"]["held_out"]),
        (f"{VAE_WHITENED} similar", methods[VAE_WHITENED]["presets"]["similar"]["held_out"]),
        ("phash <=10", methods["phash"]["fixed"]["<=10"]["held_out"]),
        ("phash near", methods["phash"]["presets"]["near"]["held_out"]),
        ("dhash <=10", methods["dhash"]["fixed"]["<=10"]["held_out"]),
    ]
    recall = table(
        "Held-out recall by alteration (n held-out pairs)",
        ["alteration", "n", *(label for label, _ in shown)],
        [
            [kind, held[kind], *(point["recall_by_alteration"][kind] for _, point in shown)]
            for kind in ALTERATION_KINDS
        ]
        + [["photo crops", None, *(point["recall_by_group"]["photo"] for _, point in shown)]]
        + [["clip art", None, *(point["recall_by_group"]["clipart"] for _, point in shown)]],
    )
    near = methods[VAE_WHITENED]["presets"]["near"]
    similar = methods[VAE_WHITENED]["presets"]["similar"]
    goal = result["goal"]
    lines = [
        f"presets (VAE whitened, 1 - cosine): near <= {near['threshold']:.4f} (calibration precision "
        f"{near['calibration']['precision']:.4f}{'' if near['reached'] else ', 0.98 not reached'}), "
        f"similar <= {similar['threshold']:.4f} (calibration precision "
        f"{similar['calibration']['precision']:.4f})",
        "two-signal presets (`duplicates` where images have a pHash; threshold | bits & guard): "
        + ", ".join(
            f"{preset}: distance <= {r['rule']['latent_threshold']:.4f}, or pHash <= {r['rule']['max_bits']} "
            f"bits and distance <= {r['rule']['max_distance']:.3f}"
            for preset, r in two_signal.items()
            if r["reached"]
        ),
        "region check (`duplicates` reads the files of each image's nearest neighbours): "
        + ", ".join(
            f"{preset}: distance <= {r['rule']['max_distance']:.3f}, >= {r['rule']['min_inliers']} RANSAC "
            f"inliers, one frame >= {r['rule']['min_contained']:g} inside the other, aligned detail's "
            f"block NCC >= {r['rule']['min_agreement']:g}"
            for preset, r in regions.items()
        )
        + f" ({result['region_rules']['pairs_checked']} pairs checked, "
        f"{result['region_rules']['pairs_per_second']:.0f} pairs/s)",
        f"goal at near, with the region check (held out): precision >= {goal['precision']}: "
        f"{_yes(goal['precision_met'])}, "
        f"recall >= {goal['recall']}: {_yes(goal['recall_met'])}; ahead of pHash <= 10 on precision: "
        f"{_yes(goal['ahead_of_phash_10']['precision'])}, "
        f"on recall: {_yes(goal['ahead_of_phash_10']['recall'])}",
        f"pixel baseline: {result['pixel_baseline']['chosen']}; ROC figure: {result['figure']}",
    ]
    return "\n\n".join([summary, points, recall, "\n".join(lines)])


def _point_row(label: str, threshold: float | str, point: dict[str, Any]) -> list[Any]:
    """A table row; a number threshold is formatted here, a rule comes as its text."""
    if not isinstance(threshold, str):
        threshold = f"{threshold:g}" if float(threshold).is_integer() else f"{threshold:.4f}"
    return [
        label,
        threshold,
        point["precision"],
        point["recall"],
        point["fpr"],
        *(point["fpr_by_negative"][kind] for kind in NEGATIVE_KINDS),
    ]


def _yes(value: bool) -> str:
    return "yes" if value else "NO"
