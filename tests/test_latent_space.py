"""Tests for models.latent_space: each function against a known answer or the statistic it promises."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from latentdex.models import latent_space
from latentdex.models.latent_space import (
    MAX_STEPS,
    active_dimensions,
    apply_direction,
    choose_direction,
    direction_separation,
    fit_gaussian,
    grid_layout,
    interpolate,
    mean_difference_direction,
    pca_2d,
    probe_direction,
    sample_around,
    sample_fitted,
    sample_prior,
    traversal,
)

DIM = 16


def _confounded_groups(n: int = 100, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Groups split by dimension 0 (tight) whose means also differ along dimension 1, mostly noise."""
    rng = np.random.default_rng(seed)

    def group(sign: float) -> np.ndarray:
        x = rng.normal(size=(n, dim))
        x[:, 0] = sign + 0.3 * rng.normal(size=n)
        x[:, 1] = sign + 5.0 * rng.normal(size=n)
        return x.astype(np.float32)

    return group(1.0), group(-1.0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# Sampling


def test_sample_prior_has_the_temperature_as_std_and_is_seeded() -> None:
    z = sample_prior(20_000, 8, temperature=0.7, seed=1)
    assert z.shape == (20_000, 8) and z.dtype == np.float32
    np.testing.assert_allclose(z.std(axis=0), 0.7, rtol=0.03)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_array_equal(sample_prior(5, 8, seed=3), sample_prior(5, 8, seed=3))
    assert not np.array_equal(sample_prior(5, 8, seed=3), sample_prior(5, 8, seed=4))


@pytest.mark.parametrize(
    ("count", "dim", "temperature"),
    [(0, 8, 1.0), (4, 0, 1.0), (4, 8, 0.0), (4, 8, -1.0), (4, 8, math.inf), (4, 8, math.nan), (2.5, 8, 1.0)],
)
def test_sample_prior_rejects_bad_arguments(count: int, dim: int, temperature: float) -> None:
    with pytest.raises(ValueError):
        sample_prior(count, dim, temperature)


def test_sample_around_matches_the_scaled_posterior() -> None:
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=8), rng.uniform(-3, 1, size=8)
    sigma = np.exp(0.5 * logvar)
    z = sample_around(mu, logvar, 40_000, spread=0.5, seed=2)
    assert z.shape == (40_000, 8) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), mu, atol=0.02 * sigma.max())
    np.testing.assert_allclose(z.std(axis=0), 0.5 * sigma, rtol=0.03)
    np.testing.assert_array_equal(
        sample_around(mu, logvar, 3, spread=0.0), np.tile(mu.astype(np.float32), (3, 1))
    )


@pytest.mark.parametrize(
    ("mu", "logvar", "count", "spread"),
    [
        (np.zeros(4), np.zeros(5), 2, 1.0),  # lengths differ
        (np.zeros((2, 4)), np.zeros((2, 4)), 2, 1.0),  # not 1-D
        (np.array([0.0, np.nan]), np.zeros(2), 2, 1.0),
        (np.zeros(2), np.array([0.0, np.inf]), 2, 1.0),
        (np.zeros(2), np.zeros(2), 0, 1.0),
        (np.zeros(2), np.zeros(2), 2, -0.1),
        (np.zeros(2), np.full(2, 2000.0), 2, 1.0),  # sigma overflows
    ],
)
def test_sample_around_rejects_bad_arguments(
    mu: np.ndarray, logvar: np.ndarray, count: int, spread: float
) -> None:
    with pytest.raises(ValueError):
        sample_around(mu, logvar, count, spread)


def test_fit_gaussian_and_sample_fitted_reproduce_the_library() -> None:
    rng = np.random.default_rng(0)
    centre, width = rng.normal(size=6), np.array([0.5, 1.0, 2.0, 0.1, 3.0, 0.0])
    library = centre + width * rng.normal(size=(20_000, 6))
    mean, std = fit_gaussian(library)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (6,)
    np.testing.assert_allclose(mean, centre, atol=0.05)
    np.testing.assert_allclose(std, width, rtol=0.03, atol=1e-6)
    z = sample_fitted(mean, std, 20_000, temperature=0.5, seed=1)
    np.testing.assert_allclose(z.std(axis=0, dtype=np.float64), 0.5 * width, rtol=0.04, atol=1e-6)
    np.testing.assert_allclose(z[:, 5], mean[5])  # a dimension with no spread stays put
    np.testing.assert_allclose(
        fit_gaussian([[0.0, 1.0], [2.0, 1.0]])[1], [math.sqrt(2), 0.0], rtol=1e-6
    )  # ddof 1


def test_fit_gaussian_and_sample_fitted_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fit_gaussian(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="negative"):
        sample_fitted(np.zeros(3), np.array([1.0, -1.0, 1.0]), 2)
    with pytest.raises(ValueError, match="dimensions"):
        sample_fitted(np.zeros(3), np.ones(4), 2)
    with pytest.raises(ValueError, match="temperature"):
        sample_fitted(np.zeros(3), np.ones(3), 2, temperature=0.0)


# Interpolation


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_includes_the_endpoints_bit_for_bit(method: latent_space.InterpolationMethod) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=DIM) * 3, rng.normal(size=DIM)  # float64: the endpoints are rounded once, exactly
    path = interpolate(a, b, 7, method)
    assert path.shape == (7, DIM) and path.dtype == np.float32
    assert path[0].tobytes() == a.astype(np.float32).tobytes()
    assert path[-1].tobytes() == b.astype(np.float32).tobytes()


def test_linear_midpoint_is_the_average() -> None:
    a, b = np.arange(DIM, dtype=np.float32), np.ones(DIM, np.float32)
    path = interpolate(a, b, 5)
    np.testing.assert_allclose(path[2], (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(path[1], 0.75 * a + 0.25 * b, rtol=1e-6)


def test_slerp_moves_the_norm_linearly_and_the_angle_monotonically() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=128), rng.normal(size=128)
    a, b = 3 * a / np.linalg.norm(a), 10 * b / np.linalg.norm(b)
    path = interpolate(a, b, 21, "slerp").astype(np.float64)
    norms = np.linalg.norm(path, axis=1)
    t = np.linspace(0, 1, 21)
    np.testing.assert_allclose(norms, (1 - t) * 3 + t * 10, rtol=1e-5)
    assert (norms >= 3 - 1e-4).all() and (norms <= 10 + 1e-4).all()
    angles = np.arccos(np.clip(path @ a / (norms * 3), -1, 1))
    assert (np.diff(angles) > 0).all()
    np.testing.assert_allclose(angles, t * angles[-1], atol=1e-3)  # constant angular speed
    # The reason for slerp: the midpoint keeps its length where the straight line's sags.
    linear = interpolate(a, b, 21, "linear")
    assert np.linalg.norm(path[10]) > np.linalg.norm(linear[10]) + 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones(DIM), 2.5 * np.ones(DIM)),  # parallel
        (np.ones(DIM), -np.ones(DIM)),  # opposite
        (np.zeros(DIM), np.ones(DIM)),  # no direction at the start
        (np.ones(DIM), np.ones(DIM) + 1e-6),  # nearly parallel
    ],
)
def test_slerp_falls_back_to_linear_without_nan(a: np.ndarray, b: np.ndarray) -> None:
    path = interpolate(a, b, 9, "slerp")
    assert np.isfinite(path).all()
    np.testing.assert_allclose(path, interpolate(a, b, 9, "linear"), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("start", "end", "steps", "method", "match"),
    [
        (np.zeros(4), np.zeros(4), 1, "linear", "at least 2"),
        (np.zeros(4), np.zeros(4), MAX_STEPS + 1, "linear", "at most"),
        (np.zeros(4), np.zeros(5), 3, "linear", "dimensions"),
        (np.zeros(4), np.array([0, 0, 0, np.inf]), 3, "slerp", "NaN or infinite"),
        (np.zeros(4), np.zeros(4), 3, "cubic", "unknown method"),
        (np.zeros((2, 4)), np.zeros(4), 3, "linear", "shape"),
    ],
)
def test_interpolate_rejects_bad_arguments(
    start: np.ndarray, end: np.ndarray, steps: int, method: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        interpolate(start, end, steps, method)  # type: ignore[arg-type]


# Directions


def test_mean_difference_known_answer() -> None:
    direction = mean_difference_direction([[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [2.0, 0.0]])
    assert direction.dtype == np.float32
    np.testing.assert_array_equal(direction, [1.0, 3.0])


@pytest.mark.parametrize("fit", [mean_difference_direction, probe_direction])
def test_direction_fitters_reject_bad_groups(fit: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit(np.zeros((0, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        fit(np.zeros((2, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fit(np.full((2, 4), np.nan), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="shape"):
        fit(np.zeros(4), np.zeros((3, 4)))


def test_probe_follows_the_separating_dimension_where_mean_difference_is_misled() -> None:
    positive, negative = _confounded_groups()
    probe, mean_diff = probe_direction(positive, negative), mean_difference_direction(positive, negative)
    axis = np.eye(DIM)[0]
    assert _cosine(probe, axis) > 0.9
    assert _cosine(mean_diff, axis) < _cosine(probe, axis) - 0.1
    assert direction_separation(probe, positive, negative) >= direction_separation(
        mean_diff, positive, negative
    )
    # Strength 1 moves the negative mean's projection onto the positive mean's.
    unit = probe / np.linalg.norm(probe)
    np.testing.assert_allclose((negative.mean(0) + probe) @ unit, positive.mean(0) @ unit, rtol=1e-4)


def test_probe_is_scale_free_and_safe_on_degenerate_groups() -> None:
    positive, negative = _confounded_groups(n=30)
    np.testing.assert_allclose(
        probe_direction(positive * 100, negative * 100), 100 * probe_direction(positive, negative), rtol=1e-3
    )
    same = np.ones((3, DIM))
    np.testing.assert_array_equal(probe_direction(same, same), np.zeros(DIM))
    with pytest.raises(ValueError, match="l2"):
        probe_direction(positive, negative, l2=0.0)


def test_direction_separation_is_the_auc() -> None:
    positive, negative = np.array([[1.0], [2.0]]), np.array([[2.0], [0.0]])
    # Pairs (1,2) lost, (1,0) won, (2,2) tied, (2,0) won: (0 + 1 + 0.5 + 1) / 4.
    assert direction_separation(np.array([1.0]), positive, negative) == 0.625
    assert direction_separation(np.array([-1.0]), positive, negative) == 0.375
    assert direction_separation(np.array([0.0]), positive, negative) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, size=(40, 3)), rng.normal(0, 1, size=(30, 3))
    direction = np.array([1.0, 0.5, -0.2])
    a, b = pos @ direction, neg @ direction
    pairwise = ((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean()
    assert direction_separation(direction, pos, neg) == pytest.approx(pairwise)
    with pytest.raises(ValueError, match="dimensions"):
        direction_separation(np.ones(4), pos, neg)


def test_choose_direction_picks_the_probe_on_confounded_groups() -> None:
    positive, negative = _confounded_groups()
    direction, method, auc = choose_direction(positive, negative, seed=3)
    assert method == "probe" and auc > 0.9
    np.testing.assert_allclose(direction, probe_direction(positive, negative))  # refitted on everything
    again = choose_direction(positive, negative, seed=3)
    assert again[1:] == (method, auc) and np.array_equal(again[0], direction)


def test_choose_direction_uses_the_mean_difference_for_small_groups() -> None:
    positive, negative = _confounded_groups(n=3)
    direction, method, auc = choose_direction(positive, negative)
    assert method == "mean_difference" and math.isnan(auc)
    np.testing.assert_array_equal(direction, mean_difference_direction(positive, negative))


def test_choose_direction_prefers_the_mean_difference_on_a_tie() -> None:
    # One dimension, perfectly separated halves: both methods score AUC 1 on any split.
    positive, negative = np.arange(1, 9, dtype=float)[:, None] + 10, np.arange(8, dtype=float)[:, None]
    _, method, auc = choose_direction(positive, negative)
    assert (method, auc) == ("mean_difference", 1.0)


def test_apply_direction_broadcasts() -> None:
    direction = np.arange(DIM, dtype=np.float32)
    one = np.ones(DIM, np.float32)
    np.testing.assert_array_equal(apply_direction(one, direction, 2.0), one + 2 * direction)
    many = np.stack([one, 2 * one, 3 * one])
    moved = apply_direction(many, direction, -1.0)
    assert moved.shape == (3, DIM) and moved.dtype == np.float32
    np.testing.assert_array_equal(moved, many - direction)
    strip = apply_direction(one, direction, [-2.0, 0.0, 0.5])
    assert strip.shape == (3, DIM)
    np.testing.assert_array_equal(strip[1], one)
    np.testing.assert_array_equal(strip[2], one + 0.5 * direction)


@pytest.mark.parametrize(
    ("latents", "direction", "strength", "match"),
    [
        (np.zeros(4), np.zeros(5), 1.0, "dimensions"),
        (np.zeros((2, 4)), np.zeros(5), 1.0, "dimensions"),
        (np.zeros(4), np.zeros(4), math.nan, "NaN"),
        (np.zeros(4), np.array([0, np.nan, 0, 0]), 1.0, "NaN"),
        (np.zeros((2, 4)), np.zeros(4), [1.0, 2.0], "one \\(dim,\\) latent"),
        (np.zeros(4), np.zeros(4), [], "non-empty"),
        (np.zeros(4), np.zeros(4), [[1.0]], "non-empty"),
        (np.zeros((2, 2, 4)), np.zeros(4), 1.0, "shape"),
    ],
)
def test_apply_direction_rejects_bad_arguments(
    latents: np.ndarray, direction: np.ndarray, strength: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        apply_direction(latents, direction, strength)


# Dimensions


def test_active_dimensions_ranks_the_dimensions_that_carry_information_first() -> None:
    rng = np.random.default_rng(0)
    carrying = [3, 7, 11]
    mu = 0.01 * rng.normal(size=(500, DIM))  # unused: the posterior is the prior
    logvar = 0.01 * rng.normal(size=(500, DIM))
    mu[:, carrying] = rng.normal(0, [2.0, 1.0, 0.5], size=(500, 3))
    logvar[:, carrying] = -3.0
    activity = active_dimensions(mu, logvar)
    assert activity.kl is not None and activity.kl.dtype == np.float32
    assert activity.order.tolist()[:3] == carrying  # by KL: the widest spread of mu first
    assert activity.active().tolist() == carrying
    assert (np.delete(activity.kl, carrying) < 0.01).all()
    expected_kl = (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).mean(axis=0)
    np.testing.assert_allclose(activity.kl, expected_kl, rtol=1e-5, atol=1e-7)
    by_variance = active_dimensions(mu)
    assert by_variance.kl is None
    assert by_variance.order.tolist()[:3] == carrying and by_variance.active().tolist() == carrying
    np.testing.assert_allclose(by_variance.variance, mu.var(axis=0), rtol=1e-5)
    with pytest.raises(ValueError):
        by_variance.order[0] = 1  # read-only


def test_active_dimensions_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        active_dimensions(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="logvar has shape"):
        active_dimensions(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        active_dimensions(np.zeros((3, 4)), np.full((3, 4), np.inf))


def test_traversal_moves_only_the_chosen_dimension() -> None:
    latent = np.arange(DIM, dtype=np.float32)
    scale = np.linspace(0.5, 2.0, DIM)
    grid = traversal(latent, [2, 9], [-1.0, 0.0, 3.0], scale=scale)
    assert grid.shape == (2, 3, DIM) and grid.dtype == np.float32
    for row, d in enumerate([2, 9]):
        changed = grid[row] - latent
        np.testing.assert_allclose(changed[:, d], np.array([-1.0, 0.0, 3.0]) * scale[d], rtol=1e-6)
        np.testing.assert_array_equal(np.delete(changed, d, axis=1), 0.0)
    np.testing.assert_array_equal(traversal(latent, [0], [1.5])[0, 0], latent + np.eye(DIM)[0] * 1.5)


@pytest.mark.parametrize(
    ("dimensions", "values", "scale", "match"),
    [
        ([DIM], [1.0], None, "out of range"),
        ([-1], [1.0], None, "at least 0"),
        ([1.5], [1.0], None, "integer"),
        ([], [1.0], None, "dimensions is empty"),
        ([0], [], None, "values is empty"),
        ([0], [np.nan], None, "NaN"),
        ([0], [1.0], np.ones(DIM + 1), "dimensions"),
    ],
)
def test_traversal_rejects_bad_arguments(
    dimensions: list[int], values: list[float], scale: np.ndarray | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        traversal(np.zeros(DIM), dimensions, values, scale)


# Projection and atlas


def test_pca_2d_recovers_a_plane_embedded_in_128_dimensions() -> None:
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(128, 2)))
    plane = rng.normal(size=(200, 2)) * [3.0, 1.0]
    latents = (plane @ basis.T + rng.normal(size=128)).astype(np.float32)
    coords, ratios = pca_2d(latents)
    assert coords.shape == (200, 2) and ratios.shape == (2,) and coords.dtype == ratios.dtype == np.float32
    assert ratios.sum() == pytest.approx(1.0, abs=1e-5) and ratios[0] > ratios[1]
    original = np.linalg.norm(latents[:, None] - latents[None], axis=-1)
    projected = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.testing.assert_allclose(projected, original, atol=1e-3)


def test_pca_2d_signs_are_fixed() -> None:
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(50, 8)) * [0.1, 0.1, 0.1, 0.1, 0.1, 5.0, 0.1, 0.1]
    coords, _ = pca_2d(latents)
    # The first component is dimension 5, with a positive loading.
    assert _cosine(coords[:, 0], latents[:, 5] - latents[:, 5].mean()) > 0.99
    mirrored, _ = pca_2d(-latents)
    np.testing.assert_allclose(mirrored, -coords, atol=1e-5)
    order = rng.permutation(50)
    np.testing.assert_allclose(pca_2d(latents[order])[0], coords[order], atol=1e-5)


def test_pca_2d_handles_tiny_and_degenerate_sets() -> None:
    coords, ratios = pca_2d(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]))
    np.testing.assert_allclose(ratios, [1.0, 0.0])
    np.testing.assert_allclose(coords, [[-2.5, 0.0], [2.5, 0.0]], atol=1e-6)
    coords, ratios = pca_2d(np.ones((4, 3)))
    assert not coords.any() and not ratios.any()
    coords, ratios = pca_2d(np.array([[1.0], [2.0], [4.0]]))  # one dimension: one component
    assert ratios.tolist() == [1.0, 0.0] and not coords[:, 1].any()
    with pytest.raises(ValueError, match="at least 2 latents"):
        pca_2d(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        pca_2d(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_grid_layout_places_at_most_one_point_per_cell() -> None:
    coords = np.random.default_rng(0).uniform(-3, 5, size=(300, 2))
    layout = grid_layout(coords, columns=6, rows=4)
    cells = [(column, row) for _, column, row in layout]
    assert len(set(cells)) == len(cells) == 24  # 300 uniform points fill every cell of a 6 x 4 grid
    assert len({index for index, _, _ in layout}) == len(layout)
    assert all(0 <= column < 6 and 0 <= row < 4 for column, row in cells)
    assert cells == sorted(cells, key=lambda cell: (cell[1], cell[0]))
    assert grid_layout(coords, 6, 4) == layout


def test_grid_layout_puts_corners_in_corners_and_keeps_the_most_central_point() -> None:
    coords = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0], [4.9, 4.9], [4.0, 4.0], [6.0, 4.0]])
    layout = grid_layout(coords, columns=4, rows=4)
    assert (0, 0, 0) in layout and (1, 3, 3) in layout and (2, 0, 3) in layout
    # Cell (1, 1) spans [2.5, 5) on both axes, centre 3.75: point 4 (at 4.0) beats point 3 (at 4.9).
    assert (4, 1, 1) in layout and 3 not in [index for index, _, _ in layout]
    assert [index for index, _, _ in layout] == [0, 4, 5, 2, 1]  # by row, then column
    # A tie goes to the lowest index; a set with no spread lands in the middle cell.
    assert grid_layout(np.zeros((3, 2)), 3, 3) == [(0, 1, 1)]
    assert grid_layout(np.zeros((0, 2)), 3, 3) == []


@pytest.mark.parametrize(
    ("coords", "columns", "rows", "match"),
    [
        (np.zeros((3, 3)), 2, 2, "dimensions"),
        (np.array([[0.0, np.nan]]), 2, 2, "NaN"),
        (np.zeros((3, 2)), 0, 2, "columns"),
        (np.zeros((3, 2)), 2, 0, "rows"),
    ],
)
def test_grid_layout_rejects_bad_arguments(coords: np.ndarray, columns: int, rows: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grid_layout(coords, columns, rows)
