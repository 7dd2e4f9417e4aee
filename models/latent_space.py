"""Math on latents for generation and exploration: sampling, interpolation, attribute directions, the atlas.

Everything here works on plain arrays (the posterior means the store holds, default dim 128), so the service
and the CLI can use it without torch and tests can check it without a model. Work runs in float64 and results
come back as float32, the store's dtype. Bad input raises ValueError saying what is wrong.

Why these choices:

- Samples of a d-dimensional N(0, I) lie near a shell of radius sqrt(d), and so do typical encodings. A
  straight line between two of them cuts through the inside of the shell (the midpoint of two independent
  samples has norm ~sqrt(d/2)), where the decoder has seen little and answers with a blur. "slerp" follows the
  great circle instead and moves the norm linearly from one end's to the other's.
- The prior is often a poor fit to where a trained VAE puts its photos (unused dimensions, others wider or
  narrower than 1): `fit_gaussian` and `sample_fitted` sample "like the library" instead.
- An attribute direction ("at night", "portrait") comes from two groups of latents. The mean difference is
  robust with few examples; a linear probe ignores dimensions that vary a lot within the groups and wins once
  there are enough. `choose_direction` picks between them on held-out halves. Both are scaled so strength 1
  moves the negative group's mean onto the positive group's along the direction.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

InterpolationMethod = Literal["linear", "slerp"]
INTERPOLATION_METHODS: tuple[str, ...] = ("linear", "slerp")
MAX_STEPS = 256  # an interpolation becomes a strip of decoded previews; more frames than this is a mistake
# Slerp divides by sin(angle), so within this many radians of 0 or pi it falls back to linear: near 0 the two
# paths differ by ~angle^2, near pi the great circle through the endpoints is not defined.
SLERP_MIN_ANGLE = 1e-3
MIN_NORM = 1e-6  # a latent shorter than this has no direction to slerp along
PROBE_L2 = 1e-2
MIN_SPLIT = 4  # choose_direction holds half of each group out only when each has at least this many members
# Nats of KL per dimension; without logvar the same bound on the variance of mu is Burda et al.'s
# "active units" criterion (Importance Weighted Autoencoders, 2015).
ACTIVE_THRESHOLD = 0.01


def _count(name: str, value: int, minimum: int = 1) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def _array(name: str, value: np.ndarray, ndim: int, dim: int | None = None, min_rows: int = 1) -> np.ndarray:
    """`value` as finite float64 with `ndim` axes, `dim` on the last if given, `min_rows` rows if 2-D."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must have shape {'(dim,)' if ndim == 1 else '(n, dim)'}, got {array.shape}")
    if array.shape[-1] == 0:
        raise ValueError(f"{name} is empty")
    if dim is not None and array.shape[-1] != dim:
        raise ValueError(f"{name} has {array.shape[-1]} dimensions, expected {dim}")
    if ndim == 2 and len(array) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} row(s), got {len(array)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _groups(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive = _array("positive", positive, 2)
    return positive, _array("negative", negative, 2, dim=positive.shape[1])


def _float32(array: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.asarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} overflows float32")
    return out


def sample_prior(count: int, dim: int, temperature: float = 1.0, seed: int | None = None) -> np.ndarray:
    """`count` latents from the prior N(0, temperature^2 I): (count, dim) float32.

    A temperature below 1 trades variety for more typical, cleaner decodes. ValueError for count or dim < 1
    and for a temperature that is not finite and > 0.
    """
    count, dim = _count("count", count), _count("dim", dim)
    temperature = _positive("temperature", temperature)
    return (np.random.default_rng(seed).standard_normal((count, dim)) * temperature).astype(np.float32)


def sample_around(
    mu: np.ndarray, logvar: np.ndarray, count: int, spread: float = 1.0, seed: int | None = None
) -> np.ndarray:
    """`count` variations on one photo, mu + spread * sigma * eps with sigma = exp(logvar / 2): (count, dim).

    Spread 1 samples the photo's posterior, 0 repeats mu. ValueError for mu and logvar that are not 1-D of
    one length or not finite, count < 1, a spread that is not finite and >= 0, or a sigma that overflows.
    """
    mu = _array("mu", mu, 1)
    logvar = _array("logvar", logvar, 1, dim=len(mu))
    count, spread = _count("count", count), _positive("spread", spread, allow_zero=True)
    with np.errstate(over="ignore"):
        sigma = np.exp(0.5 * logvar)
        eps = np.random.default_rng(seed).standard_normal((count, len(mu)))
        return _float32(mu + spread * sigma * eps, "the sample (logvar too large)")


def fit_gaussian(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (ddof 1) of (n, dim) latents, n >= 2: two (dim,) float32.

    Feed them to `sample_fitted` to sample like the library, or pass the std to `traversal` as its scale.
    """
    latents = _array("latents", latents, 2, min_rows=2)
    return latents.mean(axis=0).astype(np.float32), latents.std(axis=0, ddof=1).astype(np.float32)


def sample_fitted(
    mean: np.ndarray, std: np.ndarray, count: int, temperature: float = 1.0, seed: int | None = None
) -> np.ndarray:
    """`count` latents from N(mean, (temperature * std)^2) per dimension: (count, dim) float32.

    ValueError for mean and std that are not 1-D of one length or not finite, a negative std, count < 1, or a
    temperature that is not finite and > 0.
    """
    mean = _array("mean", mean, 1)
    std = _array("std", std, 1, dim=len(mean))
    if (std < 0).any():
        raise ValueError("std must not be negative")
    count, temperature = _count("count", count), _positive("temperature", temperature)
    eps = np.random.default_rng(seed).standard_normal((count, len(mean)))
    return _float32(mean + temperature * std * eps, "the sample")


def interpolate(
    start: np.ndarray, end: np.ndarray, steps: int, method: InterpolationMethod = "linear"
) -> np.ndarray:
    """`steps` latents from `start` to `end`, both included exactly: (steps, dim) float32.

    "linear" follows the straight line. "slerp" turns the direction along the great circle at a constant rate
    and moves the norm linearly, so every norm lies between the endpoints'; it falls back to linear when the
    endpoints are within SLERP_MIN_ANGLE of parallel or opposite, or either is shorter than MIN_NORM.
    ValueError for steps outside 2..MAX_STEPS, dims that differ, non-finite values or an unknown method.
    """
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(INTERPOLATION_METHODS)}")
    steps = _count("steps", steps, minimum=2)
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be at most {MAX_STEPS}, got {steps}")
    a = _array("start", start, 1)
    b = _array("end", end, 1, dim=len(a))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    path = (1 - t) * a + t * b
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if method == "slerp" and min(norm_a, norm_b) >= MIN_NORM:
        unit_a, unit_b = a / norm_a, b / norm_b
        # atan2 keeps the angle accurate near 0 and pi, where acos of the dot product loses half its digits.
        angle = 2 * math.atan2(np.linalg.norm(unit_a - unit_b), np.linalg.norm(unit_a + unit_b))
        if SLERP_MIN_ANGLE < angle < math.pi - SLERP_MIN_ANGLE:
            direction = (np.sin((1 - t) * angle) * unit_a + np.sin(t * angle) * unit_b) / math.sin(angle)
            path = direction * ((1 - t) * norm_a + t * norm_b)
    out = _float32(path, "the interpolation")
    out[0], out[-1] = a, b  # the endpoints the caller gave, free of the path's rounding
    return out


def mean_difference_direction(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """mean(positive) - mean(negative) of two (n, dim) groups: (dim,) float32, not normalised.

    Its length is the natural strength 1: `apply_direction` with strength 1 moves the negative group's mean
    onto the positive group's. ValueError for an empty group, dims that differ or non-finite values.
    """
    positive, negative = _groups(positive, negative)
    return (positive.mean(axis=0) - negative.mean(axis=0)).astype(np.float32)


def probe_direction(positive: np.ndarray, negative: np.ndarray, l2: float = PROBE_L2) -> np.ndarray:
    """The normal of a ridge-regularised linear probe between two (n, dim) groups: (dim,) float32.

    The mean difference follows a dimension that varies a lot within the groups as readily as the attribute;
    the probe discounts it. The unit normal d is returned as ((mean(pos) - mean(neg)) . d) d, so strength 1
    moves the negative mean's projection onto the positive mean's, as with `mean_difference_direction`.
    `l2` is relative to the mean per-dimension variance, so it means the same at any latent scale. ValueError
    as for `mean_difference_direction`, and for an l2 that is not finite and > 0.
    """
    positive, negative = _groups(positive, negative)
    l2 = _positive("l2", l2)
    dim = positive.shape[1]
    # Closed-form ridge regression on +-1 labels rather than logistic regression: one linear solve, nothing to
    # tune or converge, and finite on small linearly separable groups, where logistic weights grow without
    # bound unless the penalty is strong. Its normal is Fisher's discriminant with shrinkage, proportional to
    # (within-group covariance + penalty I)^-1 (mean difference) whatever the group sizes (Sherman-Morrison).
    data = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(len(positive)), -np.ones(len(negative))])
    centred = data - data.mean(axis=0)
    covariance = centred.T @ centred / len(data)
    mean_variance = float(np.trace(covariance)) / dim
    if mean_variance == 0:  # every latent is the same point: nothing to separate
        return np.zeros(dim, np.float32)
    target = centred.T @ (labels - labels.mean()) / len(data)
    weights = np.linalg.solve(covariance + l2 * mean_variance * np.eye(dim), target)
    norm = float(np.linalg.norm(weights))
    if norm == 0:
        return np.zeros(dim, np.float32)
    unit = weights / norm
    difference = positive.mean(axis=0) - negative.mean(axis=0)
    return (unit * (difference @ unit)).astype(np.float32)


def direction_separation(direction: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """AUC of the groups' projections on `direction`: the chance a positive projects further than a negative.

    1 separates perfectly, 0.5 not at all (so does a zero direction), 0 perfectly the wrong way round; ties
    count a half. ValueError for an empty group, dims that differ or non-finite values.
    """
    positive, negative = _groups(positive, negative)
    direction = _array("direction", direction, 1, dim=positive.shape[1])
    scores = np.concatenate([positive @ direction, negative @ direction])
    # Mann-Whitney U from ranks (ties share their mean rank): n log n rather than every pair.
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _halves(group: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shuffled = group[rng.permutation(len(group))]
    return shuffled[: len(group) // 2], shuffled[len(group) // 2 :]


def choose_direction(
    positive: np.ndarray, negative: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, str, float]:
    """The better of mean difference and probe: (direction, "mean_difference" | "probe", held-out AUC).

    With at least MIN_SPLIT members in each group, both methods are fitted on a random half of each group and
    scored by `direction_separation` on the other half; the winner (the mean difference on a tie, being the
    simpler) is refitted on all members. Smaller groups get the mean difference of all members and an AUC of
    NaN: nothing is left over to measure it on, and an in-sample AUC would flatter. Deterministic per seed.
    """
    positive, negative = _groups(positive, negative)
    if min(len(positive), len(negative)) < MIN_SPLIT:
        return mean_difference_direction(positive, negative), "mean_difference", math.nan
    rng = np.random.default_rng(seed)
    fit_pos, held_pos = _halves(positive, rng)
    fit_neg, held_neg = _halves(negative, rng)
    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "mean_difference": mean_difference_direction,
        "probe": probe_direction,
    }
    scores = {
        name: direction_separation(fit(fit_pos, fit_neg), held_pos, held_neg) for name, fit in methods.items()
    }
    best = max(scores, key=scores.__getitem__)  # max keeps the first of equals: the mean difference
    return methods[best](positive, negative), best, scores[best]


def apply_direction(
    latents: np.ndarray, direction: np.ndarray, strength: float | Sequence[float]
) -> np.ndarray:
    """`latents + strength * direction`, float32.

    `latents` is one (dim,) latent or (n, dim); a scalar strength keeps that shape. A sequence of strengths
    needs one (dim,) latent and gives (len(strength), dim), e.g. a strip of previews from -2 to 2. ValueError
    for dims that differ, non-finite values, an empty or nested sequence, or a sequence with (n, dim) latents.
    """
    direction = _array("direction", direction, 1)
    ndim = np.ndim(latents)
    if ndim not in (1, 2):
        raise ValueError(f"latents must have shape (dim,) or (n, dim), got {np.shape(latents)}")
    latents = _array("latents", latents, ndim, dim=len(direction), min_rows=0)
    strengths = np.asarray(strength, dtype=np.float64)
    if strengths.ndim > 1 or strengths.size == 0:
        raise ValueError(f"strength must be a number or a non-empty 1-D sequence, got {strengths.shape}")
    if not np.isfinite(strengths).all():
        raise ValueError("strength contains NaN or infinite values")
    if strengths.ndim == 0:
        return _float32(latents + strengths * direction, "the edited latents")
    if latents.ndim != 1:
        raise ValueError(f"a sequence of strengths needs one (dim,) latent, got {latents.shape}")
    return _float32(latents + strengths[:, None] * direction, "the edited latents")


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class DimensionActivity:
    """How much each latent dimension is used over a set of photos; the arrays are read-only.

    variance: (dim,) float32 variance of mu over the set; an ignored dimension has a near-constant mu.
    kl: (dim,) float32 mean KL(q(z_d | x) || N(0, 1)) in nats over the set, or None without logvar.
    order: (dim,) int64 dimension indices, most active first by `score`.
    """

    variance: np.ndarray
    kl: np.ndarray | None
    order: np.ndarray

    @property
    def score(self) -> np.ndarray:
        """The measure `order` and `active` use: kl when known, else variance."""
        return self.kl if self.kl is not None else self.variance

    def active(self, threshold: float = ACTIVE_THRESHOLD) -> np.ndarray:
        """Indices of the dimensions whose score exceeds `threshold`, most active first."""
        return self.order[self.score[self.order] > threshold]


def active_dimensions(mu: np.ndarray, logvar: np.ndarray | None = None) -> DimensionActivity:
    """Per-dimension activity of (n, dim) posterior means, and log-variances if given, over a set of photos.

    With logvar the measure is each dimension's mean KL to the prior: an unused dimension's posterior is the
    prior (mu ~0, logvar ~0), so its KL is ~0. Without it, the variance of mu over the set. ValueError for an
    empty set, shapes that differ or non-finite values.
    """
    mu = _array("mu", mu, 2)
    variance = _read_only(mu.var(axis=0).astype(np.float32))
    kl = None
    if logvar is not None:
        logvar = _array("logvar", logvar, 2, dim=mu.shape[1])
        if logvar.shape != mu.shape:
            raise ValueError(f"logvar has shape {logvar.shape}, mu {mu.shape}")
        with np.errstate(over="ignore"):
            kl = _read_only((0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).mean(axis=0).astype(np.float32))
    score = kl if kl is not None else variance
    order = _read_only(np.argsort(-score, kind="stable").astype(np.int64))
    return DimensionActivity(variance=variance, kl=kl, order=order)


def traversal(
    latent: np.ndarray, dimensions: Sequence[int], values: Sequence[float], scale: np.ndarray | None = None
) -> np.ndarray:
    """Copies of `latent` with one dimension moved: out[i, j, d] += values[j] * scale[d], d = dimensions[i].

    Shape (len(dimensions), len(values), dim) float32. Pass the per-dimension std over the store as `scale`
    (e.g. from `fit_gaussian`) to give values in standard deviations; the default is ones. ValueError for an
    empty or out-of-range dimension list, empty or non-finite values, or a scale of the wrong shape.
    """
    latent = _array("latent", latent, 1)
    dim = len(latent)
    chosen = [_count("dimension", d, minimum=0) for d in dimensions]
    if not chosen:
        raise ValueError("dimensions is empty")
    if max(chosen) >= dim:
        raise ValueError(f"dimension {max(chosen)} is out of range for latents of {dim} dimensions")
    steps = _array("values", values, 1)
    scales = np.ones(dim) if scale is None else _array("scale", scale, 1, dim=dim)
    out = np.broadcast_to(latent, (len(chosen), len(steps), dim)).copy()
    for row, d in enumerate(chosen):
        out[row, :, d] += steps * scales[d]
    return _float32(out, "the traversal")


def pca_2d(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) coordinates of (n, dim) latents on their first two principal components, and the share of the
    total variance each explains, (2,); both float32.

    Latents are centred and decomposed by SVD; each component's sign is fixed so its largest-magnitude loading
    is positive, so the same latents always give the same picture. A component that does not exist (n == 2,
    dim == 1, points on a line or all equal) gives a zero column and ratio. ValueError for n < 2.
    """
    latents = _array("latents", latents, 2)
    if len(latents) < 2:
        raise ValueError(f"pca_2d needs at least 2 latents to find a direction, got {len(latents)}")
    centred = latents - latents.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    coords, ratios = np.zeros((len(latents), 2)), np.zeros(2)
    # numpy's matrix_rank cut-off: below it a singular value is rounding noise with an arbitrary direction.
    cutoff = singular[0] * max(centred.shape) * np.finfo(np.float64).eps
    total = float(singular @ singular)
    for k in range(min(2, len(singular))):
        if singular[k] <= cutoff or total == 0:
            continue
        component = components[k]
        if component[np.argmax(np.abs(component))] < 0:
            component = -component
        coords[:, k] = centred @ component
        ratios[k] = singular[k] ** 2 / total
    return coords.astype(np.float32), ratios.astype(np.float32)


def grid_layout(coords: np.ndarray, columns: int, rows: int) -> list[tuple[int, int, int]]:
    """Places 2-D points (e.g. from `pca_2d`) on a columns x rows grid, at most one per cell, for an atlas.

    Points are scaled into the grid by each axis's min and max; the column grows with x and the row with y
    (row 0 holds the smallest y: flip it to draw top down). Each occupied cell keeps the point nearest its
    centre (the lowest index on a tie) and drops the others. Returns (index, column, row) ordered by row, then
    column. ValueError for coords that are not finite (n, 2) or for columns or rows < 1.
    """
    coords = _array("coords", coords, 2, dim=2, min_rows=0)
    columns, rows = _count("columns", columns), _count("rows", rows)
    if len(coords) == 0:
        return []
    low, high = coords.min(axis=0), coords.max(axis=0)
    spread = high > low
    # In cell units, so that "nearest the centre" does not depend on the grid's aspect ratio; an axis with no
    # spread puts every point in the middle.
    size = np.array([columns, rows])
    scaled = np.where(spread, (coords - low) / np.where(spread, high - low, 1.0), 0.5) * size
    cells = np.minimum(np.floor(scaled), size - 1).astype(np.int64)
    distance = ((scaled - (cells + 0.5)) ** 2).sum(axis=1)
    key = cells[:, 1] * columns + cells[:, 0]
    order = np.lexsort((np.arange(len(coords)), distance, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return [(int(i), int(cells[i, 0]), int(cells[i, 1])) for i in order[first]]
