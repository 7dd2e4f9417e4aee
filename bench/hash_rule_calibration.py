"""Calibrate the two-signal duplicate rule (`indexer.duplicates.HashRule`) on the calibration pairs.

A pair is linked if its latent distance is at most `latent_threshold`, or if its closest same-place pair of
the pHashes the indexer keeps (whole picture and five regions: `perceptual_hash.closest_bits`) differs by
at most `max_bits` and its latent distance is at most `max_distance`. The three are chosen jointly: the
largest calibration recall at the preset's pair precision, over latent thresholds at the positives'
distance percentiles, 0-12 bits (the usual pHash range), and loose distances of 1-4x the method's own
`similar` threshold (a looser guard lets unrelated flat pictures with alike hashes chain into one group
in a library; the pair benchmark does not see that, so the guard is bounded here). Ties go to the
smaller guard, then the fewer bits, then the smaller threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.pair_metrics import PairLabels, operating_point

MAX_BITS = 12
GUARD_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)
THRESHOLD_PERCENTILES = np.linspace(0, 100, 101)


def calibrate_rule(
    distance: np.ndarray, bits: np.ndarray, labels: PairLabels, min_precision: float, loose: float
) -> dict[str, Any]:
    """The best rule on the calibration split, with its operating points on both splits."""
    cal = labels.calibration
    positive = labels.positive[cal]
    cal_distance, cal_bits = distance[cal], bits[cal]
    thresholds = np.unique(np.r_[0.0, np.percentile(cal_distance[positive], THRESHOLD_PERCENTILES)])
    best: tuple[Any, ...] | None = None
    for factor in GUARD_FACTORS:
        guard = loose * factor
        for max_bits in range(MAX_BITS + 1):
            by_hash = (cal_bits <= max_bits) & (cal_distance <= guard)
            for threshold in thresholds:
                linked = by_hash | (cal_distance <= threshold)
                true_pos = int((linked & positive).sum())
                chosen = int(linked.sum())
                if not chosen or true_pos / chosen < min_precision:
                    continue
                key = (true_pos, -guard, -max_bits, -threshold)
                if best is None or key > best[0]:
                    best = (key, float(threshold), max_bits, float(guard))
    if best is None:
        return {"reached": False, "min_precision": min_precision}
    _, threshold, max_bits, guard = best
    decision = np.where((distance <= threshold) | ((bits <= max_bits) & (distance <= guard)), 0.0, 1.0)
    return {
        "reached": True,
        "min_precision": min_precision,
        "rule": {"latent_threshold": threshold, "max_bits": max_bits, "max_distance": guard},
        "calibration": operating_point(decision, labels, 0.5, cal),
        "held_out": operating_point(decision, labels, 0.5, labels.held_out),
    }
