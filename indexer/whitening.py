"""The whitened search space: a PCA whitening of a store's latents, fitted on the store's own latents.

Centring, rotating onto the principal axes and scaling each axis to unit variance, then comparing by
cosine, weighs every direction the library varies in alike instead of letting a few dominant ones decide
(Jegou & Chum, ECCV 2012, "Negative evidences and co-occurrences in image retrieval: the benefit of PCA
and whitening"). Axes whose variance is tiny (latent dimensions the VAE left at the prior) would turn
noise into signal if scaled up fully, so their variance is floored at a share of the mean variance.
Each axis is divided by its standard deviation raised to a power: 1 is full whitening, 0 a PCA rotation
alone. The two uses of the space want different powers, so one fit serves both (`Whitening.at_power`):
searches run half-way (WHITENING_POWER), which keeps more of the category structure that full whitening
flattens out of the dominant axes; duplicates are measured fully whitened (DUPLICATE_POWER), where altered
copies of one picture sit nearest relative to different pictures. Measured by `python -m bench --only
retrieval_quality` (its "whitened, power 1" row) and `--only duplicates_quality`; README "Search space".
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from latentdex.errors import StoreError

WHITENING_VERSION = 1
STORE_METRICS = ("whitened", "cosine", "l2")
MIN_FIT_PER_DIMENSION = 2  # fit once the store holds at least 2 x latent_dim latents
REFIT_SHARE = 0.2  # refit when images added, changed or removed since the fit reach this share of it
VARIANCE_FLOOR = 0.01  # axes with less variance than this share of the mean are scaled as if they had it
WHITENING_POWER = 0.5  # searches: an axis is divided by its standard deviation to this power
DUPLICATE_POWER = 1.0  # duplicate distances: the same fit, fully whitened
_FIT_CHUNK = 65_536


@dataclass(frozen=True)
class Whitening:
    """x -> (x - mean) @ projection.T, where the projection's rows are principal axes over deviations."""

    mean: np.ndarray  # (d,) float32
    projection: np.ndarray  # (d, d) float32
    fitted_count: int
    version: int = WHITENING_VERSION
    power: float = WHITENING_POWER  # transforms saved before the power was recorded were fitted at 1

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def id(self) -> str:
        """A content hash naming this transform (the vectors file records which one it was built with)."""
        digest = hashlib.sha256(f"v{self.version}|{self.fitted_count}|".encode())
        digest.update(self.mean.tobytes())
        digest.update(self.projection.tobytes())
        return "whiten-" + digest.hexdigest()[:16]

    @classmethod
    def fit(
        cls, latents: np.ndarray, variance_floor: float = VARIANCE_FLOOR, power: float = WHITENING_POWER
    ) -> Whitening:
        """Fit on (n, d) latents, n >= 2; the covariance is accumulated in float64, in chunks."""
        power = _checked_power(power)
        n, dim = latents.shape
        if n < 2:
            raise ValueError(f"whitening needs at least 2 latents, got {n}")
        total = np.zeros(dim, np.float64)
        for start in range(0, n, _FIT_CHUNK):
            total += latents[start : start + _FIT_CHUNK].sum(axis=0, dtype=np.float64)
        mean = total / n
        scatter = np.zeros((dim, dim), np.float64)
        for start in range(0, n, _FIT_CHUNK):
            centred = latents[start : start + _FIT_CHUNK].astype(np.float64) - mean
            scatter += centred.T @ centred
        variances, axes = np.linalg.eigh(scatter / (n - 1))
        order = np.argsort(variances)[::-1]
        variances, axes = np.clip(variances[order], 0, None), axes[:, order]
        floor = max(variance_floor * float(variances.mean()), np.finfo(np.float32).tiny)
        scale = np.maximum(variances, floor) ** (-power / 2)
        projection = (axes * scale).T
        return cls(mean.astype(np.float32), np.ascontiguousarray(projection, np.float32), int(n), power=power)

    def at_power(self, power: float) -> Whitening:
        """The same fit (mean, axes, floored variances) dividing each axis by its deviation to `power`.

        Each projection row is an axis times the deviation to -self.power, so its norm gives the
        deviation back; a rotation alone (power 0) has lost it and can only stay one."""
        power = _checked_power(power)
        if power == self.power:
            return self
        if self.power == 0:
            raise ValueError("a whitening fitted at power 0 keeps no variances to change its power with")
        scales = np.linalg.norm(self.projection.astype(np.float64), axis=1)
        factors = scales ** ((power - self.power) / self.power)
        projection = (self.projection.astype(np.float64) * factors[:, None]).astype(np.float32)
        return Whitening(self.mean, np.ascontiguousarray(projection), self.fitted_count, self.version, power)

    def apply(self, latents: np.ndarray) -> np.ndarray:
        """(n, d) latents -> (n, d) float32 whitened vectors."""
        centred = np.asarray(latents, dtype=np.float32) - self.mean
        return np.ascontiguousarray(centred @ self.projection.T, dtype=np.float32)

    def to_text(self) -> str:
        """The transform as one JSON string (arrays as base64 float32), for the catalog's meta table."""
        return json.dumps(
            {
                "version": self.version,
                "dim": self.dim,
                "fitted_count": self.fitted_count,
                "power": self.power,
                "mean": base64.b64encode(self.mean.astype("<f4").tobytes()).decode(),
                "projection": base64.b64encode(self.projection.astype("<f4").tobytes()).decode(),
            }
        )

    @classmethod
    def from_text(cls, text: str) -> Whitening:
        """Parse `to_text`'s output; StoreError if it is damaged or from an unknown version."""
        try:
            document = json.loads(text)
            if document["version"] != WHITENING_VERSION:
                raise StoreError(
                    f"the store's whitening has version {document['version']}, "
                    f"this build reads {WHITENING_VERSION}: rebuild the store's vectors"
                )
            dim = int(document["dim"])
            mean = np.frombuffer(base64.b64decode(document["mean"]), dtype="<f4").astype(np.float32)
            projection = np.frombuffer(base64.b64decode(document["projection"]), dtype="<f4")
            projection = projection.astype(np.float32).reshape(dim, dim)
            if mean.shape != (dim,) or not (np.isfinite(mean).all() and np.isfinite(projection).all()):
                raise ValueError("arrays of the wrong size or with non-finite values")
            power = _checked_power(float(document.get("power", 1.0)))
            return cls(mean, projection, int(document["fitted_count"]), power=power)
        except StoreError:
            raise
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise StoreError(f"the store's whitening transform is damaged: {exc}") from exc


def _checked_power(power: float) -> float:
    if not 0 <= power <= 1:  # also refuses NaN
        raise ValueError(f"the whitening power must be in [0, 1], got {power}")
    return float(power)


def needs_fit(count: int, dim: int, current: Whitening | None, changes: int) -> bool:
    """Whether a whitened store of `count` latents should (re)fit, given `changes` since the last fit."""
    if count < MIN_FIT_PER_DIMENSION * dim:
        return False
    if current is None or current.dim != dim or current.power != WHITENING_POWER:
        return True
    return changes >= REFIT_SHARE * max(current.fitted_count, 1)


def describe(current: Whitening | None, changes: int, count: int, dim: int) -> str:
    """One line for `stats`: which transform the store searches with, and when it refits."""
    if current is None:
        needed = MIN_FIT_PER_DIMENSION * dim
        return f"not fitted yet: needs {needed} images, has {count} (cosine on mu until then)"
    due = max(1, int(np.ceil(REFIT_SHARE * current.fitted_count)))
    return (
        f"{current.id} (searches at power {current.power:g}, duplicates at {DUPLICATE_POWER:g}), "
        f"fitted on {current.fitted_count} images; {changes} changed since (refit at {due})"
    )
