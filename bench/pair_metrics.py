"""Statistics of labelled pairs: ROC, AUC, preset calibration and operating points per method.

Every function works on one distance per pair ("duplicate when distance <= threshold") and the pairs'
labels (sign, kind, source group, calibration or held-out split); nothing here renders, encodes or draws.
A preset's threshold is the largest one whose calibration pair precision reaches `PRESET_PRECISION`;
the held-out split then reports precision, recall and false-positive rates at that threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.duplicate_pairs import (
    ALTERATION_KINDS,
    GROUPS,
    NEGATIVE_KINDS,
    SPLITS,
    ImageSpec,
    Pair,
    PairSource,
)

# Method names: the keys of the benchmark's `methods` and of the figure's colours and labels.
VAE_WHITENED = "vae whitened"
VAE_COSINE = "vae cosine"
PIXELS = "pixels PCA whitened"
HASHES = ("phash", "dhash")

PRESET_PRECISION = {"near": 0.98, "similar": 0.90}  # calibration pair precision each preset must reach
HASH_THRESHOLDS = (4, 6, 10)  # Hamming distances reported for pHash and dHash (10: imagededup's default)
ROC_POINTS = 240  # false-positive rates (log-spaced) at which the JSON keeps each ROC curve
EXACT_FPR = 0.05
HARDEST = 12  # missed positives and false positives listed in the JSON


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


def calibrate(
    distance: np.ndarray, positive: np.ndarray, min_precision: float, integer: bool
) -> dict[str, Any]:
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


def operating_point(
    distance: np.ndarray, labels: PairLabels, threshold: float, split: np.ndarray
) -> dict[str, Any]:
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
    images: list[ImageSpec],
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
    images: list[ImageSpec],
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
