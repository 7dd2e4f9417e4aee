"""The region check's results and its rule, without OpenCV (`indexer.region_match` compares the files).

`RegionRule` is the link `indexer.duplicates` adds from an `Overlap`: a candidate pair (one among the
other's nearest latent neighbours, within a loose distance) is the same picture when the transform has at
least `min_inliers` inliers, one frame lies at least `min_contained` inside the other, and the detail
agrees by at least `min_agreement`. Calibrated with the other rules by
`python -m bench --only duplicates_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints of one picture: their positions, descriptors and the picture's (height, width)."""

    points: np.ndarray  # (n, 2) float32, x and y in the VERIFY_SIDE picture's pixels
    descriptors: np.ndarray  # (n, 32) uint8
    size: tuple[int, int]
    grey: np.ndarray  # the picture at CHECK_SIDE, uint8, for comparing aligned pixels

    @property
    def nbytes(self) -> int:
        return int(self.points.nbytes + self.descriptors.nbytes + self.grey.nbytes)


class Overlap(NamedTuple):  # a tuple: a later run builds one per remembered pair
    """What RANSAC found between two pictures: inlier matches; how far the frame that lies more inside
    the other does (1: wholly; the share of its area); and how well their detail agrees once aligned (the
    median over blocks of the overlap of the normalised cross-correlation of the pictures less their
    blur: brightness and contrast changes cancel, two different smooth gradients do not agree, a caption
    strip spoils only its blocks; 0 where the overlap has no detail to compare, -1 without a transform)."""

    inliers: int
    contained: float
    agreement: float = -1.0


NO_OVERLAP = Overlap(0, 0.0)


@dataclass(frozen=True)
class RegionRule:
    """Links a candidate pair within `max_distance` whose `Overlap` has at least `min_inliers` inliers,
    `min_contained` containment and `min_agreement` agreement."""

    max_distance: float
    min_inliers: int
    min_contained: float
    min_agreement: float

    def links(self, overlap: Overlap) -> bool:
        return (
            overlap.inliers >= self.min_inliers
            and overlap.contained >= self.min_contained
            and overlap.agreement >= self.min_agreement
        )
