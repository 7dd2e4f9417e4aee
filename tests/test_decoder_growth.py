"""A deeper decoder grown from a trained model starts exactly where that model is."""

from __future__ import annotations

import json

import pytest
import torch

from latentdex.models.checkpoint import compute_model_id
from latentdex.models.decoder_growth import deepen_decoder
from latentdex.models.vae import VAE, VAEConfig

TINY = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4, decoder_upsampling="nearest")


@pytest.fixture
def model() -> VAE:
    torch.manual_seed(0)
    model = VAE(TINY).eval()
    with torch.no_grad():  # trained-looking weights: no block of the original is an identity
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_a_deepened_decoder_decodes_as_the_original_until_trained(model: VAE) -> None:
    deeper = deepen_decoder(model, 3).eval()
    assert deeper.config.decoder_blocks == 3 and deeper.config.blocks_per_level == 1
    blocks = sum(type(m).__name__ == "ResidualBlock" for m in deeper.decoder.modules())
    assert blocks == 3 * TINY.levels
    images, z = torch.rand(4, 3, 32, 32), torch.randn(5, 8)
    with torch.no_grad():
        assert torch.equal(deeper.decode(z), model.decode(z))
        assert torch.equal(deeper.encode(images).mu, model.encode(images).mu)
    # the added blocks are trainable: a gradient step moves the decoding
    deeper.train()
    loss = deeper.decode(z).square().mean()
    loss.backward()
    added = deeper.decoder.stages[2].conv2.weight  # level 0: upsampling, its old block, the first new one
    assert added.grad is not None and added.grad.abs().sum() > 0


def test_the_depth_is_part_of_the_config_and_the_model_id(model: VAE) -> None:
    deeper = deepen_decoder(model, 2)
    assert "decoder_blocks_per_level" not in json.loads(TINY.to_json())  # older model ids stay the same
    assert json.loads(deeper.config.to_json())["decoder_blocks_per_level"] == 2
    assert VAEConfig.from_dict(json.loads(deeper.config.to_json())) == deeper.config
    assert compute_model_id(deeper.config, deeper.state_dict()) != compute_model_id(TINY, model.state_dict())


def test_a_decoder_is_not_made_shallower_and_depth_is_checked(model: VAE) -> None:
    with pytest.raises(ValueError, match="cannot deepen"):
        deepen_decoder(deepen_decoder(model, 3), 2)
    with pytest.raises(ValueError, match="decoder_blocks_per_level"):
        VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4, decoder_blocks_per_level=0)
    same = deepen_decoder(model, 1)
    assert all(torch.equal(t, same.state_dict()[n]) for n, t in model.state_dict().items())
