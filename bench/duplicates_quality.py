"""Near-duplicate detection: calibrate the `near` and `similar` presets and compare with perceptual hashes.

Pairs (`bench.duplicate_pairs`) come from images the model never trained on: square crops of the
eval-split photos and eval-split clip art. Positives are an item and an altered copy of it (JPEG, resize,
crop, colour, small rotation, border, caption, two of these); negatives are neighbouring crops of one
photo (30-60% overlap), burst-like frames of one photo (10-20% shift, small zoom) and random pairs of
different items. Sources are split 50/50 into a calibration and a held-out split (by photo and by clip-art
file): thresholds are chosen on the calibration pairs, precision and recall reported on the held-out ones.

Methods, each a distance per pair:
- "vae whitened": 1 - cosine of mu whitened by `Whitening.fit` on every image of the run (as a store fits
  on its library), the store's search distance and what `latentdex duplicates` thresholds;
- "vae cosine": 1 - cosine of raw mu;
- "phash" / "dhash": Hamming distance of `imagehash`'s 64-bit hashes of the source-resolution images;
- "pixels PCA whitened": the best (by calibration AUC) of `bench.pixel_baseline`'s whitened pixel PCAs.

`near` is the largest threshold whose calibration pair precision is >= 0.98, `similar` >= 0.90 (the
threshold is placed halfway to the next pair's distance). Pair precision depends on the share of
positives among the pairs (here 1 in 3); a photo library holds far more different pairs than duplicates,
which is why the held-out false-positive rate per negative kind is reported as well.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.datasets import MAX_SOURCE_PIXELS, clipart_sources, fetch, photo_sources
from bench.duplicate_pairs import (
    ALTERATION_KINDS,
    GROUPS,
    NEGATIVE_KINDS,
    SPLITS,
    Pair,
    PairSource,
    assign_splits,
    plan_pairs,
    render_images,
)
from bench.pixel_baseline import PCA_DIMS, PIXEL_SIZES, PixelPCA, to_pixels
from bench.report import table
from bench.retrieval_items import SEED
from latentdex.indexer.whitening import Whitening
from latentdex.models.checkpoint import load_model
from latentdex.models.inference import LatentCodec

NAME = "duplicates_quality"
PRESET_PRECISION = {"near": 0.98, "similar": 0.90}  # calibration pair precision each preset must reach
HASH_THRESHOLDS = (4, 6, 10)  # Hamming distances reported for pHash and dHash (10: imagededup's default)
GOAL = {"precision": 0.98, "recall": 0.95}  # the target for `near` on the held-out split
VAE_WHITENED = "vae whitened"
VAE_COSINE = "vae cosine"
PIXELS = "pixels PCA whitened"
HASHES = ("phash", "dhash")
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "duplicates-roc.png"
QUICK_FIGURE = Path(__file__).resolve().parent / "work" / "duplicates-roc-quick.png"
ROC_POINTS = 240  # false-positive rates (log-spaced) at which the JSON keeps each ROC curve
EXACT_FPR = 0.05
HARDEST = 12  # missed positives and false positives listed in the JSON


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
    whitened = _unit(Whitening.fit(mu[used]).apply(mu))
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
    near = methods[VAE_WHITENED]["presets"]["near"]["held_out"]
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
    figure = QUICK_FIGURE if quick else FIGURE
    started = time.perf_counter()
    draw_roc(methods, labels, figure)
    seconds["figure"] = time.perf_counter() - started

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
        "goal": goal,
        "methods": methods,
        "vae_distances_held_out": distance_quantiles(distances[VAE_WHITENED], labels),
        "vae_near_by_photo": by_photo(distances[VAE_WHITENED], pairs, plan.images, sources, methods),
        "hardest": hardest_pairs(distances[VAE_WHITENED], pairs, plan.images, sources, methods),
        "figure": str(figure.relative_to(Path(__file__).resolve().parents[1])),
        "seconds": seconds,
    }


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
    """Drop pairs with an image that failed, and negative pairs whose two model inputs are identical
    (the same picture in two files of the data set: not a different picture)."""
    digests = [hashlib.sha256(pixels.tobytes()).digest() for pixels in inputs]
    kept = []
    dropped = Counter()
    for pair in pairs:
        if not (ok[pair.a] and ok[pair.b]):
            dropped["failed"] += 1
        elif not pair.positive and digests[pair.a] == digests[pair.b]:
            dropped["identical_negative"] += 1
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
            vectors = _unit(Whitening.fit(projected[used]).apply(projected))
            out[f"{PIXELS} {size}px {dim}"] = 1 - np.einsum("ij,ij->i", vectors[a], vectors[b])
    return out


@dataclass(frozen=True)
class PairLabels:
    """Per pair: sign, kind, group and split, as arrays."""

    positive: np.ndarray
    kind: np.ndarray
    group: np.ndarray
    calibration: np.ndarray  # bool: in the calibration split
    held_out: np.ndarray

    @classmethod
    def of(cls, pairs: list[Pair]) -> PairLabels:
        split = np.array([p.split for p in pairs], dtype=object)
        return cls(
            positive=np.array([p.positive for p in pairs], dtype=bool),
            kind=np.array([p.kind for p in pairs], dtype=object),
            group=np.array([p.group for p in pairs], dtype=object),
            calibration=split == SPLITS[0],
            held_out=split == SPLITS[1],
        )


def roc(distance: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, threshold) for "duplicate when distance <= threshold" at every distinct distance,
    starting from (0, 0) at -inf; ties move together."""
    order = np.argsort(distance, kind="stable")
    ordered, labels = distance[order], positive[order]
    true_pos, false_pos = np.cumsum(labels), np.cumsum(~labels)
    last = np.r_[ordered[1:] != ordered[:-1], True]
    positives, negatives = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    fpr = np.r_[0.0, false_pos[last] / negatives]
    tpr = np.r_[0.0, true_pos[last] / positives]
    return fpr, tpr, np.r_[-np.inf, ordered[last]]


def auc(distance: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (ties count half): the chance a positive pair is closer than a negative."""
    if not positive.any() or positive.all():
        return float("nan")
    fpr, tpr, _ = roc(distance, positive)
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def calibrate(distance: np.ndarray, positive: np.ndarray, min_precision: float, integer: bool) -> dict:
    """The largest threshold whose pair precision is >= `min_precision` (when none reaches it, the one
    that maximises precision); float thresholds sit halfway to the next distinct distance."""
    order = np.argsort(distance, kind="stable")
    ordered, labels = distance[order], positive[order]
    last = np.r_[ordered[1:] != ordered[:-1], True]
    values = ordered[last]
    true_pos = np.cumsum(labels)[last]
    precision = true_pos / np.cumsum(np.ones(len(labels)))[last]
    reached = precision >= min_precision
    k = (
        int(np.flatnonzero(reached)[-1])
        if reached.any()
        else int(np.flatnonzero(precision == precision.max())[-1])
    )
    if integer or k == len(values) - 1:
        threshold = float(values[k])
    else:
        threshold = float((values[k] + values[k + 1]) / 2)
    return {
        "threshold": threshold,
        "reached": bool(reached.any()),
        "min_precision": min_precision,
        "calibration": {
            "precision": float(precision[k]),
            "recall": float(true_pos[k] / max(int(labels.sum()), 1)),
        },
    }


def operating_point(distance: np.ndarray, labels: PairLabels, threshold: float, split: np.ndarray) -> dict:
    """Pair precision, recall and false-positive rate on one split at "distance <= threshold", with
    recall per alteration kind, false-positive rate per negative kind and both per source group."""
    chosen = distance[split] <= threshold
    positive, kind, group = labels.positive[split], labels.kind[split], labels.group[split]
    true_pos = int((chosen & positive).sum())
    false_pos = int((chosen & ~positive).sum())

    def rate(mask: np.ndarray) -> float | None:
        return float(chosen[mask].mean()) if mask.any() else None

    return {
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
        "true_positives": true_pos,
        "false_positives": false_pos,
        "precision": true_pos / (true_pos + false_pos) if true_pos + false_pos else None,
        "recall": rate(positive) or 0.0,
        "fpr": rate(~positive) or 0.0,
        "recall_by_alteration": {k: rate(positive & (kind == k)) for k in ALTERATION_KINDS},
        "fpr_by_negative": {k: rate(~positive & (kind == k)) for k in NEGATIVE_KINDS},
        "recall_by_group": {g: rate(positive & (group == g)) for g in GROUPS},
        "fpr_by_group": {g: rate(~positive & (group == g)) for g in GROUPS},
    }


def evaluate_method(name: str, distance: np.ndarray, labels: PairLabels) -> dict[str, Any]:
    """AUC per split, the calibrated presets (and for hashes the fixed thresholds) on the held-out split,
    the held-out ROC sampled for the figure, and the best held-out recall at precision >= 0.98 (oracle)."""
    integer = name in HASHES
    cal, held = labels.calibration, labels.held_out
    presets = {}
    for preset, min_precision in PRESET_PRECISION.items():
        chosen = calibrate(distance[cal], labels.positive[cal], min_precision, integer)
        chosen["held_out"] = operating_point(distance, labels, chosen["threshold"], held)
        presets[preset] = chosen
    oracle = calibrate(distance[held], labels.positive[held], PRESET_PRECISION["near"], integer)
    result: dict[str, Any] = {
        "auc": {
            "calibration": auc(distance[cal], labels.positive[cal]),
            "held_out": auc(distance[held], labels.positive[held]),
        },
        "presets": presets,
        "held_out_recall_at_precision_0.98": oracle["calibration"]["recall"] if oracle["reached"] else None,
        "roc_held_out": sampled_roc(distance[held], labels.positive[held]),
    }
    if integer:
        result["fixed"] = {
            f"<={t}": {
                "threshold": t,
                "calibration": operating_point(distance, labels, t, cal),
                "held_out": operating_point(distance, labels, t, held),
            }
            for t in HASH_THRESHOLDS
        }
    return result


def sampled_roc(distance: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """The ROC's best TPR at ROC_POINTS log-spaced false-positive rates from 1 / negatives to 1, and at
    every false-positive rate the curve takes up to EXACT_FPR."""
    fpr, tpr, _ = roc(distance, positive)
    negatives = max(int((~positive).sum()), 1)
    # Every actual false-positive rate up to EXACT_FPR (where the presets sit), log-spaced ones above.
    grid = np.unique(np.r_[0.0, fpr[fpr <= EXACT_FPR], np.geomspace(1 / negatives, 1.0, ROC_POINTS)])
    at = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
    best = np.maximum.accumulate(tpr)[at]
    return {"fpr": [round(float(x), 6) for x in grid], "tpr": [round(float(y), 6) for y in best]}


def distance_quantiles(distance: np.ndarray, labels: PairLabels) -> dict[str, dict[str, float]]:
    """Held-out distance quantiles (10%, median, 90%) per pair kind."""
    out = {}
    for kind in (*ALTERATION_KINDS, *NEGATIVE_KINDS):
        values = distance[labels.held_out & (labels.kind == kind)]
        if len(values):
            low, mid, high = np.quantile(values, [0.1, 0.5, 0.9])
            out[kind] = {
                "p10": round(float(low), 4),
                "median": round(float(mid), 4),
                "p90": round(float(high), 4),
            }
    return out


def by_photo(
    distance: np.ndarray,
    pairs: list[Pair],
    images: list,
    sources: list[PairSource],
    methods: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Per eval photo (both splits): recall of its crops' copies and the false-positive rate of its
    neighbouring crops and burst frames at the `near` threshold."""
    near = methods[VAE_WHITENED]["presets"]["near"]["threshold"]
    out: dict[str, dict[str, Any]] = {}
    for index, pair in enumerate(pairs):
        if pair.group != "photo" or pair.kind == "random_photo":
            continue
        source = sources[images[pair.a].source]
        row = out.setdefault(source.relative, {"split": source.split, "copies": 0, "found": 0})
        key = "copies" if pair.positive else pair.kind
        row[key] = row.get(key, 0) + 1
        if distance[index] <= near:
            hit = "found" if pair.positive else f"{pair.kind} accepted"
            row[hit] = row.get(hit, 0) + 1
    return out


def hardest_pairs(
    distance: np.ndarray,
    pairs: list[Pair],
    images: list,
    sources: list[PairSource],
    methods: dict[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    """The held-out positives the `near` preset misses by most and the negatives it accepts by most."""
    near = methods[VAE_WHITENED]["presets"]["near"]["threshold"]

    def describe(index: int) -> dict[str, Any]:
        pair = pairs[index]
        first, second = images[pair.a], images[pair.b]
        return {
            "distance": round(float(distance[index]), 4),
            "kind": pair.kind,
            "ops": pair.ops,
            "source": sources[first.source].relative,
            "other_source": sources[second.source].relative if second.source != first.source else None,
            "boxes": [first.box, second.box],
        }

    held = [i for i, p in enumerate(pairs) if p.split == SPLITS[1]]
    misses = sorted((i for i in held if pairs[i].positive and distance[i] > near), key=lambda i: -distance[i])
    accepted = sorted(
        (i for i in held if not pairs[i].positive and distance[i] <= near), key=lambda i: distance[i]
    )
    return {
        "missed_positives": [describe(i) for i in misses[:HARDEST]],
        "false_positives": [describe(i) for i in accepted[:HARDEST]],
    }


def describe_dataset(
    sources: list[PairSource],
    skipped: list[str],
    images: list,
    pairs: list[Pair],
    dropped: dict[str, int],
    errors: list[tuple[str, str]],
) -> dict[str, Any]:
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


# -- the ROC figure -------------------------------------------------------------------------------------

COLOURS = {
    VAE_WHITENED: (31, 119, 180),
    VAE_COSINE: (120, 180, 225),
    "phash": (214, 39, 40),
    "dhash": (255, 140, 30),
    PIXELS: (130, 130, 130),
}
LABELS = {
    VAE_WHITENED: "VAE whitened cosine",
    VAE_COSINE: "VAE raw cosine",
    "phash": "pHash (Hamming)",
    "dhash": "dHash (Hamming)",
    PIXELS: "whitened pixel PCA",
}


def draw_roc(
    methods: dict[str, Any], labels: PairLabels, path: Path, width: int = 800, height: int = 600
) -> None:
    """The held-out ROC of every method on a log false-positive axis, with the presets marked (Pillow,
    drawn at 2x and downsampled for smooth lines)."""
    scale = 2
    image = Image.new("RGB", (width * scale, height * scale), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13 * scale)
    small = ImageFont.load_default(size=11 * scale)
    title_font = ImageFont.load_default(size=16 * scale)
    left, right, top, bottom = 78 * scale, (width - 24) * scale, 54 * scale, (height - 62) * scale
    negatives = int((~labels.positive[labels.held_out]).sum())
    positives = int(labels.positive[labels.held_out].sum())
    low = 10.0 ** np.floor(np.log10(1 / max(negatives, 1)))

    def x_of(fpr: float) -> float:
        return left + (np.log10(max(fpr, low)) - np.log10(low)) / -np.log10(low) * (right - left)

    def y_of(tpr: float) -> float:
        return bottom - tpr * (bottom - top)

    grid, axis, ink = (228, 228, 228), (90, 90, 90), (40, 40, 40)
    for exponent in range(int(np.log10(low)), 1):
        x = x_of(10.0**exponent)
        draw.line((x, top, x, bottom), fill=grid, width=scale)
        label = "1" if exponent == 0 else f"1e{exponent}"
        draw.text((x, bottom + 8 * scale), label, fill=ink, font=font, anchor="mt")
        for minor in range(2, 10):
            if exponent < 0:
                mx = x_of(minor * 10.0**exponent)
                draw.line((mx, bottom, mx, bottom - 4 * scale), fill=axis, width=scale)
    for tick in np.linspace(0, 1, 11):
        y = y_of(tick)
        draw.line((left, y, right, y), fill=grid, width=scale)
        draw.text((left - 8 * scale, y), f"{tick:.1f}", fill=ink, font=font, anchor="rm")
    draw.rectangle((left, top, right, bottom), outline=axis, width=scale)
    draw.text(
        ((left + right) / 2, 18 * scale),
        f"Near-duplicate pairs, held-out split ({positives} same / {negatives} different pictures)",
        fill=ink,
        font=title_font,
        anchor="mt",
    )
    draw.text(
        ((left + right) / 2, bottom + 30 * scale),
        "false-positive rate (different pictures called duplicates, log scale)",
        fill=ink,
        font=font,
        anchor="mt",
    )
    axis_label = Image.new("RGBA", (300 * scale, 20 * scale), (255, 255, 255, 0))
    ImageDraw.Draw(axis_label).text(
        (150 * scale, 10 * scale), "true-positive rate (recall)", fill=ink, font=font, anchor="mm"
    )
    axis_label = axis_label.rotate(90, expand=True)
    image.paste(axis_label, (12 * scale, round((top + bottom) / 2 - 150 * scale)), axis_label)

    order = [PIXELS, "dhash", "phash", VAE_COSINE, VAE_WHITENED]  # the VAE drawn last, on top
    for name in order:
        curve = methods[name]["roc_held_out"]
        points = [(x_of(f), y_of(t)) for f, t in zip(curve["fpr"], curve["tpr"], strict=True)]
        steps = []
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            steps += [(x0, y0), (x1, y0), (x1, y1)]
        draw.line(steps, fill=COLOURS[name], width=(3 if name == VAE_WHITENED else 2) * scale, joint="curve")

    marks = []
    for preset, shape in (("near", "dot"), ("similar", "ring")):
        point = methods[VAE_WHITENED]["presets"][preset]
        held = point["held_out"]
        marks.append(
            (
                held["fpr"],
                held["recall"],
                shape,
                f"{preset} ({point['threshold']:.4f})",
                COLOURS[VAE_WHITENED],
            )
        )
    phash = methods["phash"]["fixed"]["<=10"]["held_out"]
    marks.append((phash["fpr"], phash["recall"], "square", "pHash <= 10", COLOURS["phash"]))
    for fpr, tpr, shape, text, colour in marks:
        x, y, r = x_of(fpr), y_of(tpr), 6 * scale
        if shape == "dot":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="white", width=scale)
        elif shape == "ring":
            draw.ellipse((x - r, y - r, x + r, y + r), fill="white", outline=colour, width=2 * scale)
        else:
            draw.rectangle((x - r, y - r, x + r, y + r), fill="white", outline=colour, width=2 * scale)
        box = draw.textbbox((x + 9 * scale, y + 9 * scale), text, font=small, anchor="lt")
        draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(255, 255, 255))
        draw.text((x + 9 * scale, y + 9 * scale), text, fill=ink, font=small, anchor="lt")

    rows = [name for name in reversed(order)]
    line_height = 20 * scale
    box_width = 250 * scale
    box_left, box_top = right - box_width - 12 * scale, bottom - line_height * len(rows) - 22 * scale
    draw.rectangle(
        (box_left, box_top, right - 12 * scale, bottom - 12 * scale), fill="white", outline=grid, width=scale
    )
    for n, name in enumerate(rows):
        y = box_top + 10 * scale + n * line_height + line_height / 2
        draw.line((box_left + 10 * scale, y, box_left + 38 * scale, y), fill=COLOURS[name], width=3 * scale)
        value = methods[name]["auc"]["held_out"]
        draw.text(
            (box_left + 46 * scale, y), f"{LABELS[name]}  AUC {value:.4f}", fill=ink, font=small, anchor="lm"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.resize((width, height), Image.Resampling.LANCZOS).save(path, optimize=True)


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
    points = table(
        "Held-out operating points (thresholds from the calibration split; `near`: precision >= 0.98 there, "
        "`similar`: >= 0.90; hashes also at fixed Hamming distances)",
        ["method / threshold", "threshold", "precision", "recall", "FPR", *NEGATIVE_KINDS],
        point_rows,
    )
    shown = [
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
        f"goal at near (held out): precision >= {goal['precision']}: {_yes(goal['precision_met'])}, "
        f"recall >= {goal['recall']}: {_yes(goal['recall_met'])}; ahead of pHash <= 10 on precision: "
        f"{_yes(goal['ahead_of_phash_10']['precision'])}, "
        f"on recall: {_yes(goal['ahead_of_phash_10']['recall'])}",
        f"pixel baseline: {result['pixel_baseline']['chosen']}; ROC figure: {result['figure']}",
    ]
    return "\n\n".join([summary, points, recall, "\n".join(lines)])


def _point_row(label: str, threshold: float, point: dict[str, Any]) -> list[Any]:
    return [
        label,
        f"{threshold:g}" if float(threshold).is_integer() else f"{threshold:.4f}",
        point["precision"],
        point["recall"],
        point["fpr"],
        *(point["fpr_by_negative"][kind] for kind in NEGATIVE_KINDS),
    ]


def _yes(value: bool) -> str:
    return "yes" if value else "NO"
