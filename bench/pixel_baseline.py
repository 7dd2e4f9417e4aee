"""The pixel baselines for retrieval: small RGB thumbnails, centred and PCA-projected, optionally whitened.

The latent has to beat a linear projection of pixels, and whitening (`indexer.whitening`) lifts that
projection too, so the whitened pixel PCA is the baseline that counts: fitted the same way as the
store's whitening, at the best of `PIXEL_SIZES` x `PCA_DIMS` in each run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentdex.indexer.load import fit_square

PIXEL_SIZE = 32  # the unwhitened baseline's thumbnail side
PIXEL_SIZES = (16, 32)  # the whitened baseline tries each of these ...
PCA_DIMS = (64, 128)  # ... with each of these component counts


def to_pixels(images: np.ndarray, size: int = PIXEL_SIZE) -> np.ndarray:
    """Model inputs (N, S, S, 3) -> the pixel baseline's (N, size, size, 3) via `fit_square`."""
    if len(images) == 0:
        return np.empty((0, size, size, 3), np.uint8)
    return np.stack([fit_square(image, size) for image in images])


@dataclass(frozen=True)
class PixelPCA:
    """PCA of flattened RGB pixels in [0, 1], centred on the indexed set's mean."""

    mean: np.ndarray
    components: np.ndarray  # (dim, 3 * P * P)
    explained: float  # share of the indexed set's variance the components keep

    @classmethod
    def fit(cls, pixels: np.ndarray, dim: int, seed: int = 0) -> PixelPCA:
        """Fit the top `dim` components with a seeded randomised SVD (6 power iterations: near exact).

        A full SVD of a few thousand 3072-d rows takes tens of seconds on two cores; this about one.
        """
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255
        mean = flat.mean(axis=0)
        centred = torch.from_numpy(flat - mean)
        rank = min(dim + 32, *centred.shape)
        threads = torch.get_num_threads()
        # A small problem: one thread takes a fraction of a second, while several threads spent 50x
        # longer synchronising in the QR steps when another process shared the cores.
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _, singular, vectors = torch.svd_lowrank(centred, q=rank, niter=6)
        finally:
            torch.set_num_threads(threads)
        total = float(centred.double().pow(2).sum())
        kept = float(singular[:dim].double().pow(2).sum())
        components = vectors[:, :dim].T.contiguous().numpy()
        return cls(mean, components, kept / total if total > 0 else 1.0)

    def project(self, pixels: np.ndarray) -> np.ndarray:
        """(N, P, P, 3) uint8 pixels -> (N, dim) float32 coordinates on the components."""
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255
        return np.ascontiguousarray((flat - self.mean) @ self.components.T, dtype=np.float32)
