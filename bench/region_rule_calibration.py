"""Calibrate the region check of the duplicate presets (`indexer.region_match.RegionRule`) on the pairs.

A pair is checked as `latentdex duplicates` checks it: only when one image is among the other's
HASH_NEIGHBOURS nearest in the duplicate space, over every image of the run (the library here), and
within the rule's loose latent distance; the check itself runs on each image's local features (found in
the render workers from the source-resolution picture, as the CLI finds them from the file). The check
links on top of the preset's two-signal rule (`bench.hash_rule_calibration`), so the rule chosen is the
one with the largest calibration recall of the combination at the preset's pair precision; ties go to the
smaller distance, then the more inliers, the larger agreement and the larger containment asked for.
Calibrated for both distance spaces a store can search in ("whitened", and "cosine" for a store too small
to fit its whitening), with each space's own neighbours and loose distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from bench.pair_metrics import PairLabels, operating_point
from latentdex.indexer.duplicates import HASH_NEIGHBOURS
from latentdex.indexer.region_match import overlap
from latentdex.indexer.region_rule import LocalFeatures, Overlap

GUARD_FACTORS = (2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 14.0)  # loose distances, in the space's `similar` thresholds
# A floor these pairs cannot show: in a library, with many candidate pairs, RANSAC also fits chance
# matches between different pictures (6-7 inliers with one frame inside the other, between generated
# scenes of the tests' library); these pairs hold too few different pictures among neighbours for that.
MIN_INLIERS = (10, 12, 15, 20)
MIN_CONTAINED = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)
MIN_AGREEMENT = (0.0, 0.3, 0.5, 0.7, 0.9)


def neighbour_pairs(vectors: np.ndarray, used: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which pairs have one image among the other's HASH_NEIGHBOURS nearest (inner product of the unit
    `vectors`, over the `used` rows)."""
    rows = np.ascontiguousarray(vectors[used], dtype=np.float32)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    _, nearest = index.search(rows, min(HASH_NEIGHBOURS + 1, len(rows)))
    neighbours: set[tuple[int, int]] = set()
    for row, found in enumerate(nearest):
        image = int(used[row])
        neighbours.update((image, int(used[other])) for other in found if other >= 0 and used[other] != image)
    return np.array(
        [(int(x), int(y)) in neighbours or (int(y), int(x)) in neighbours for x, y in zip(a, b, strict=True)],
        dtype=bool,
    )


def pair_overlaps(
    features: Sequence[LocalFeatures | None], a: np.ndarray, b: np.ndarray, checked: np.ndarray
) -> np.ndarray:
    """(inliers, contained, agreement) per pair, for the `checked` ones (the rest: no overlap)."""
    found = np.zeros((len(a), 3), np.float64)
    found[:, 2] = -1.0
    for index in np.flatnonzero(checked):
        one, other = features[int(a[index])], features[int(b[index])]
        if one is None or other is None:
            continue
        result: Overlap = overlap(one, other)
        found[index] = (result.inliers, result.contained, result.agreement)
    return found


def calibrate_region_rule(
    base: np.ndarray,
    distance: np.ndarray,
    neighbours: np.ndarray,
    overlaps: np.ndarray,
    labels: PairLabels,
    min_precision: float,
    loose: float,
) -> dict[str, Any]:
    """The best region rule over the `base` decision (True: linked by the two-signal rule) on the
    calibration split, with its operating points on both splits; its loose distance is one of
    GUARD_FACTORS times `loose` (the space's own `similar` threshold)."""
    cal = labels.calibration
    positive = labels.positive[cal]
    inliers, contained, agreement = overlaps[:, 0], overlaps[:, 1], overlaps[:, 2]
    best: tuple[Any, ...] | None = None
    for max_distance in (round(loose * factor, 4) for factor in GUARD_FACTORS):
        candidate = neighbours & (distance <= max_distance)
        for min_inliers in MIN_INLIERS:
            for min_contained in MIN_CONTAINED:
                for min_agreement in MIN_AGREEMENT:
                    verified = (
                        candidate
                        & (inliers >= min_inliers)
                        & (contained >= min_contained)
                        & (agreement >= min_agreement)
                    )
                    linked = (base | verified)[cal]
                    true_pos = int((linked & positive).sum())
                    chosen = int(linked.sum())
                    if not chosen or true_pos / chosen < min_precision:
                        continue
                    key = (true_pos, -max_distance, min_inliers, min_agreement, min_contained)
                    if best is None or key > best[0]:
                        best = (key, max_distance, min_inliers, min_contained, min_agreement)
    if best is None:
        return {"reached": False, "min_precision": min_precision}
    _, max_distance, min_inliers, min_contained, min_agreement = best
    verified = (
        neighbours
        & (distance <= max_distance)
        & (inliers >= min_inliers)
        & (contained >= min_contained)
        & (agreement >= min_agreement)
    )
    decision = np.where(base | verified, 0.0, 1.0)
    return {
        "reached": True,
        "min_precision": min_precision,
        "rule": {
            "max_distance": max_distance,
            "min_inliers": min_inliers,
            "min_contained": min_contained,
            "min_agreement": min_agreement,
        },
        "pairs_checked": int((neighbours & (distance <= max_distance)).sum()),
        "held_out_candidates_by_kind": {
            kind: float(
                (neighbours & (distance <= max_distance))[labels.held_out & (labels.kind == kind)].mean()
            )
            for kind in sorted(set(labels.kind[labels.held_out].tolist()))
        },
        "calibration": operating_point(decision, labels, 0.5, cal),
        "held_out": operating_point(decision, labels, 0.5, labels.held_out),
    }
