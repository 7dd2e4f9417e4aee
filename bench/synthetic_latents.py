"""Make seeded synthetic latents shaped like an image collection: clusters with a low-dimensional spread.

Each of `clusters` clusters has a centre drawn from N(0, 1) per coordinate, a random `rank`-dimensional
subspace along which its points spread with standard deviation `spread`, and isotropic noise of standard
deviation `noise` on top. So neighbours are found mostly along the subspace (as real latents lie near a
low-dimensional manifold), not in pure 128-d Gaussian noise, where every approximate index does badly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 100_000  # points generated at a time, to bound the temporary memory at a million points


@dataclass(frozen=True)
class LatentMixture:
    """The mixture's shape; `seed` fixes its centres and subspaces, not the points drawn from it."""

    dim: int = 128
    clusters: int = 200
    rank: int = 16
    spread: float = 1.5
    noise: float = 0.15
    seed: int = 0

    def sample(self, n: int, seed: int) -> np.ndarray:
        """`n` points as a C-contiguous float32 (n, dim) array; the same `seed` gives the same points."""
        centres, bases = self._components()
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            block = out[start:stop]
            block[:] = rng.standard_normal(block.shape, dtype=np.float32)
            block *= self.noise
            members = rng.integers(0, self.clusters, stop - start)
            for cluster in np.unique(members):
                rows = np.flatnonzero(members == cluster)
                along = rng.standard_normal((len(rows), self.rank), dtype=np.float32) * self.spread
                block[rows] += centres[cluster] + along @ bases[cluster]
        return out

    def _components(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (clusters, dim) and orthonormal subspace bases (clusters, rank, dim), float32."""
        rng = np.random.default_rng(self.seed)
        centres = rng.standard_normal((self.clusters, self.dim)).astype(np.float32)
        raw = rng.standard_normal((self.clusters, self.dim, self.rank))
        bases = np.linalg.qr(raw)[0].transpose(0, 2, 1).astype(np.float32)  # rows orthonormal
        return centres, bases
