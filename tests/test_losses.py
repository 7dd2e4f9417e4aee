"""Tests for models.losses: each objective against a direct computation of its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentdex.models.losses import (
    PatchDiscriminator,
    ProjectionHead,
    discriminator_loss,
    generator_adversarial_loss,
    invariance_loss,
    kl_divergence,
    nt_xent,
    psnr,
    reconstruction_loss,
    ssim_map,
)


def _images(seed: int, n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_kl_divergence_matches_numpy_formula() -> None:
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    expected = np.array(
        [
            -0.5 * sum(1 + lv - m**2 - math.exp(lv) for m, lv in zip(mu[i], logvar[i], strict=True))
            for i in range(4)
        ]
    )
    actual = kl_divergence(torch.from_numpy(mu), torch.from_numpy(logvar))
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-12)


def test_mse_is_per_image_summed_squared_error_averaged_over_batch() -> None:
    reconstruction, target = _images(1), _images(2)
    per_image = []
    for rec, tgt in zip(reconstruction.numpy(), target.numpy(), strict=True):
        per_image.append(float(((rec - tgt) ** 2).sum()))
    expected = sum(per_image) / len(per_image)
    assert math.isclose(float(reconstruction_loss(reconstruction, target, "mse")), expected, rel_tol=1e-12)


def test_l1_ssim_is_zero_for_identical_images_and_positive_otherwise() -> None:
    images = _images(3)
    assert float(reconstruction_loss(images, images.clone(), "l1_ssim")) == pytest.approx(0.0, abs=1e-9)
    assert torch.allclose(ssim_map(images, images.clone()), torch.ones_like(images))
    other = _images(4)
    assert float(reconstruction_loss(other, images, "l1_ssim")) > 1.0
    noisy = (images + 0.05 * _images(5)).clamp(0, 1)
    assert (
        0
        < float(reconstruction_loss(noisy, images, "l1_ssim"))
        < float(reconstruction_loss(other, images, "l1_ssim"))
    )


def test_ssim_map_keeps_shape_and_drops_for_unrelated_images() -> None:
    x, y = _images(6), _images(7)
    ssim = ssim_map(x, y)
    assert ssim.shape == x.shape
    assert float(ssim.mean()) < 0.5


def test_unknown_reconstruction_kind_is_rejected() -> None:
    images = _images(8)
    with pytest.raises(ValueError, match="unknown reconstruction loss 'l2'"):
        reconstruction_loss(images, images, "l2")  # type: ignore[arg-type]


def test_invariance_loss_prefers_matched_pairs() -> None:
    generator = torch.Generator().manual_seed(0)
    mu_a = torch.randn(16, 8, generator=generator)
    mu_b = mu_a + 0.1 * torch.randn(16, 8, generator=generator)
    matched = float(invariance_loss(mu_a, mu_b))
    shuffled = float(invariance_loss(mu_a, mu_b.roll(1, dims=0)))
    assert matched < math.log(16) < shuffled
    # Scaling every mu towards zero must not help: the loss only sees directions.
    assert float(invariance_loss(mu_a * 1e-3, mu_b * 1e-3)) == pytest.approx(matched, rel=1e-4)


def test_psnr_of_known_mse() -> None:
    target = torch.full((2, 3, 8, 8), 0.5, dtype=torch.float64)
    offset = torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    # MSE 0.01 -> -10 log10(0.01) = 20 dB; MSE 1e-4 -> 40 dB.
    assert torch.allclose(psnr(target + offset, target), torch.tensor([20.0, 40.0], dtype=torch.float64))


def test_patch_discriminator_gives_one_logit_per_patch() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    assert PatchDiscriminator()(images).shape == (2, 1, 32 // 2**3, 32 // 2**3)
    assert PatchDiscriminator(channels=8, layers=2)(images).shape == (2, 1, 32 // 2**2, 32 // 2**2)


def test_adversarial_losses_match_log_sigmoid_formulas() -> None:
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64) * 3
    fake = torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64) * 3
    expected_disc = (-torch.log(torch.sigmoid(real))).mean() + (-torch.log(1 - torch.sigmoid(fake))).mean()
    expected_gen = (-torch.log(torch.sigmoid(fake))).mean()
    assert torch.allclose(discriminator_loss(real, fake), expected_disc, rtol=1e-10)
    assert torch.allclose(generator_adversarial_loss(fake), expected_gen, rtol=1e-10)


def test_nt_xent_is_low_for_matched_views_and_near_chance_for_unrelated_ones() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=generator)
    matched = nt_xent(a, a + 0.01 * torch.randn(16, 8, generator=generator), temperature=0.2)
    unrelated = nt_xent(a, torch.randn(16, 8, generator=generator), temperature=0.2)
    assert matched < 0.5 * unrelated
    # with every similarity equal, each view picks its partner among 2N - 1 at chance
    same = torch.ones(16, 8)
    assert nt_xent(same, same).item() == pytest.approx(math.log(31), rel=1e-5)


def test_nt_xent_treats_both_sides_alike_and_has_gradients() -> None:
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator)
    assert nt_xent(a, b).item() == pytest.approx(nt_xent(b, a).item(), rel=1e-6)
    head = ProjectionHead(4, width=16, out_dim=6)
    projected = head(a.requires_grad_())
    assert projected.shape == (8, 6)
    nt_xent(projected, head(b)).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
