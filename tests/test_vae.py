"""Tests for models.vae: config validation, encoder/decoder shapes and the diagonal-Gaussian posterior."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.utils.flop_counter import FlopCounterMode

from latentdex.errors import BadCheckpoint, DimensionMismatch
from latentdex.models.vae import VAE, DiagonalGaussian, VAEConfig

TINY = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4)


# --- VAEConfig -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 16, 48, 100, 512])
def test_config_rejects_unsupported_image_size(size: int) -> None:
    with pytest.raises(ValueError, match="image_size must be one of"):
        VAEConfig(image_size=size, latent_dim=8, channels=(8, 16, 16), groups=4)


@pytest.mark.parametrize(
    ("size", "channels"),
    [(32, (8, 16)), (32, (8, 16, 16, 16)), (64, (8, 16, 16)), (128, (8, 8, 8, 8))],
)
def test_config_rejects_wrong_number_of_levels(size: int, channels: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="channel levels"):
        VAEConfig(image_size=size, latent_dim=8, channels=channels, groups=4)


def test_config_levels_halve_down_to_four_or_six_pixels() -> None:
    for size, levels, bottom in [(32, 3, 4), (64, 4, 4), (96, 4, 6), (128, 5, 4), (256, 6, 4)]:
        config = VAEConfig.for_size(size, latent_dim=8, base_channels=16)
        assert (config.levels, config.bottom_size) == (levels, bottom)
        assert size // 2**levels == bottom


def test_a_96_pixel_model_encodes_and_decodes_at_its_size() -> None:
    config = VAEConfig.for_size(
        96, latent_dim=8, base_channels=16, encoder_stem="strided", decoder_upsampling="nearest"
    )
    model = VAE(config).eval()
    with torch.no_grad():
        mu, _ = model.encoder(torch.rand(2, 3, 96, 96))
        decoded = model.decoder(mu)
    assert mu.shape == (2, 8)
    assert decoded.shape == (2, 3, 96, 96)


def test_config_rejects_channels_not_divisible_by_groups() -> None:
    with pytest.raises(ValueError, match="divisible by groups=4"):
        VAEConfig(image_size=32, latent_dim=8, channels=(8, 14, 16), groups=4)


@pytest.mark.parametrize("groups", [0, -2])
def test_config_rejects_non_positive_groups(groups: int) -> None:
    with pytest.raises(ValueError, match="groups"):
        VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=groups)


def test_config_rejects_tiny_latent() -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig(image_size=32, latent_dim=1, channels=(8, 16, 16), groups=4)


@pytest.mark.parametrize("size", [32, 64, 96, 128])
def test_for_size_gives_valid_doubling_config(size: int) -> None:
    config = VAEConfig.for_size(size, latent_dim=16, base_channels=32)
    assert config.image_size == size
    assert len(config.channels) == config.levels
    assert config.channels[0] == 16  # the full-resolution level runs at half width
    assert config.channels[1:] == tuple(32 * min(2**i, 8) for i in range(1, config.levels))
    assert all(c % config.groups == 0 for c in config.channels)


def test_from_dict_round_trips_and_rejects_unknown_fields() -> None:
    data = {"image_size": 32, "latent_dim": 8, "channels": [8, 16, 16], "groups": 4, "blocks_per_level": 1}
    assert VAEConfig.from_dict(data) == TINY
    with pytest.raises(BadCheckpoint, match=r"unknown model config fields: \['dropout'\]"):
        VAEConfig.from_dict(data | {"dropout": 0.1})


@pytest.mark.parametrize(
    "override",
    [{"image_size": 33}, {"channels": 5}, {"channels": ["a", "b", "c"]}, {"groups": 0}, {"latent_dim": "x"}],
)
def test_from_dict_turns_invalid_values_into_bad_checkpoint(override: dict[str, object]) -> None:
    data = {"image_size": 32, "latent_dim": 8, "channels": [8, 16, 16], "groups": 4}
    with pytest.raises(BadCheckpoint, match="invalid model config"):
        VAEConfig.from_dict(data | override)


# --- Encoder / decoder ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        VAEConfig(image_size=64, latent_dim=6, channels=(4, 8, 8, 8), groups=4),
        VAEConfig(image_size=128, latent_dim=5, channels=(4, 4, 8, 8, 8), groups=4),
        VAEConfig.for_size(64, 6, 8, encoder_stem="strided", decoder_upsampling="nearest"),
    ],
    ids=lambda c: f"size{c.image_size}-{c.encoder_stem}-{c.decoder_upsampling}",
)
def test_encode_decode_shapes(config: VAEConfig) -> None:
    torch.manual_seed(0)
    model = VAE(config).eval()
    images = torch.rand(2, 3, config.image_size, config.image_size)
    with torch.no_grad():
        posterior = model.encode(images)
        decoded = model.decode(posterior.mode())
        forward, forward_posterior = model(images, torch.Generator().manual_seed(0))
    assert posterior.mu.shape == (2, config.latent_dim)
    assert posterior.logvar.shape == (2, config.latent_dim)
    assert decoded.shape == images.shape
    assert forward.shape == images.shape
    assert torch.equal(forward_posterior.mu, posterior.mu)
    assert decoded.min() >= 0 and decoded.max() <= 1


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 64, 64), (2, 3, 32, 31), (2, 1, 32, 32), (3, 32, 32), (2, 3, 32, 32, 1)],
)
def test_encode_rejects_wrong_image_shape(shape: tuple[int, ...]) -> None:
    model = VAE(TINY)
    with pytest.raises(DimensionMismatch, match=r"images must have shape \(N, 3, 32, 32\)"):
        model.encode(torch.rand(shape))


@pytest.mark.parametrize("shape", [(2, 7), (2, 9), (8,), (2, 8, 1)])
def test_decode_rejects_wrong_latent_shape(shape: tuple[int, ...]) -> None:
    model = VAE(TINY)
    with pytest.raises(DimensionMismatch, match=r"latents must have shape \(N, 8\)"):
        model.decode(torch.zeros(shape))


# --- DiagonalGaussian -----------------------------------------------------------------------------


def test_kl_matches_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 7, generator=generator, dtype=torch.float64) * 2
    logvar = torch.randn(5, 7, generator=generator, dtype=torch.float64) * 1.5
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(posterior, prior).sum(dim=1)
    actual = DiagonalGaussian(mu, logvar).kl()
    assert actual.shape == (5,)
    assert torch.allclose(actual, expected, rtol=1e-10, atol=1e-12)


def test_kl_of_standard_normal_is_zero() -> None:
    zeros = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(DiagonalGaussian(zeros, zeros.clone()).kl(), torch.zeros(3, dtype=torch.float64))


def test_sample_has_posterior_mean_and_std() -> None:
    n = 200_000
    mu = torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64).expand(n, 3)
    std = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    posterior = DiagonalGaussian(mu, (2 * std.log()).expand(n, 3))
    samples = posterior.sample(torch.Generator().manual_seed(3))
    assert samples.shape == (n, 3) and samples.dtype == torch.float64
    # Standard error of the mean is std / sqrt(n) <= 0.0045; allow about 5 of them.
    assert torch.allclose(samples.mean(dim=0), mu[0], atol=0.025)
    assert torch.allclose(samples.std(dim=0), std, rtol=0.02)


def test_sample_is_reproducible_with_a_seeded_generator() -> None:
    posterior = DiagonalGaussian(torch.zeros(4, 3), torch.zeros(4, 3))
    first = posterior.sample(torch.Generator().manual_seed(9))
    again = posterior.sample(torch.Generator().manual_seed(9))
    other = posterior.sample(torch.Generator().manual_seed(10))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_mode_is_mu() -> None:
    mu = torch.randn(3, 4)
    assert torch.equal(DiagonalGaussian(mu, torch.randn(3, 4)).mode(), mu)


def test_logvar_is_clamped() -> None:
    logvar = torch.tensor([[-100.0, 0.0, 100.0]], dtype=torch.float64)
    posterior = DiagonalGaussian(torch.zeros(1, 3, dtype=torch.float64), logvar)
    assert posterior.logvar.tolist() == [[-30.0, 0.0, 20.0]]
    assert torch.isfinite(posterior.std).all()
    assert math.isclose(float(posterior.std[0, 2]), math.exp(10.0))
    assert torch.isfinite(posterior.kl()).all()


# --- Encoder stem and decoder upsampling ----------------------------------------------------------


def test_the_strided_stem_and_nearest_decoder_are_options_that_change_the_network() -> None:
    legacy = VAEConfig.for_size(64, 16, 16)
    modern = VAEConfig.for_size(64, 16, 16, encoder_stem="strided", decoder_upsampling="nearest")
    assert legacy.channels == (8, 32, 64, 128) and modern.channels == (16, 32, 64, 128)
    convs = [m for m in VAE(modern).encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].stride == (2, 2)  # the stem halves the image before any residual block
    decoder = VAE(modern).decoder
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in decoder.modules())
    assert any(isinstance(m, torch.nn.Upsample) for m in decoder.modules())
    flops = {}
    for name, config in (("legacy", legacy), ("modern", modern)):
        model = VAE(config).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.encoder(torch.rand(1, 3, 64, 64))
        flops[name] = counter.get_total_flops()
    assert flops["modern"] < flops["legacy"] / 2


@pytest.mark.parametrize(
    ("field", "value"), [("encoder_stem", "dilated"), ("decoder_upsampling", "pixelshuffle")]
)
def test_unknown_stem_or_upsampling_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        VAEConfig(**{field: value})
    with pytest.raises(BadCheckpoint, match=field):
        VAEConfig.from_dict({**json.loads(VAEConfig().to_json()), field: value})


def test_configs_from_before_the_options_keep_their_json_and_so_their_model_id() -> None:
    legacy = VAEConfig()
    assert "encoder_stem" not in legacy.to_json() and "decoder_upsampling" not in legacy.to_json()
    assert VAEConfig.from_dict(json.loads(legacy.to_json())) == legacy
    modern = VAEConfig.for_size(64, encoder_stem="strided", decoder_upsampling="nearest")
    assert VAEConfig.from_dict(json.loads(modern.to_json())) == modern
