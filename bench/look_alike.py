"""Which images of a benchmark look the same: one rule shared by the retrieval and duplicate benchmarks.

Two images are *indistinguishable* when their 32-px RGB thumbnails (box-filtered from the model inputs)
differ by at most INDISTINGUISHABLE_RMS root-mean-square on the [0, 1] scale: 0.02, about 5 grey levels,
is under what a JPEG re-encode at quality 50-90 changes at that size for half the copies it makes, and
far under a neighbouring crop (median 0.19). Shifted frames of a smooth gradient wallpaper, two crops of
one photo that cover the same ground, and the near-identical drawings openclipart holds in several files
fall under it: to a person they are one picture, so no benchmark can count them as different pictures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMBNAIL = 32
INDISTINGUISHABLE_RMS = 0.02


def thumbnails(inputs: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 model inputs -> (N, 32 * 32 * 3) float32 in [0, 1]."""
    if len(inputs) == 0:
        return np.empty((0, THUMBNAIL * THUMBNAIL * 3), np.float32)
    small = [
        np.asarray(Image.fromarray(pixels).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX))
        for pixels in inputs
    ]
    return np.stack(small).reshape(len(inputs), -1).astype(np.float32) / 255


def rms_between(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise RMS difference of two (N, D) thumbnail arrays."""
    return np.sqrt(np.mean((first - second) ** 2, axis=1))
