"""A deeper decoder for a trained model, starting exactly where the model is.

More residual blocks per decoder level give the decoder capacity for detail without touching the
encoder, so the latents (and every store made with them) stay valid. Each added block starts as the
identity, its last convolution zeroed (the residual branch adds nothing), so the deeper model decodes
bit for bit as the original until decoder-only training moves it; training starts from the original's
quality rather than from scratch.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from latentdex.models.vae import VAE, ResidualBlock


def deepen_decoder(model: VAE, blocks_per_level: int) -> VAE:
    """A copy of `model` with `blocks_per_level` residual blocks per decoder level: the encoder and
    every existing weight copied, the new blocks identities. ValueError for fewer blocks than now."""
    current = model.config.decoder_blocks
    if blocks_per_level < current:
        raise ValueError(
            f"the decoder has {current} blocks per level: cannot deepen it to {blocks_per_level}"
        )
    deeper = VAE(replace(model.config, decoder_blocks_per_level=blocks_per_level))
    deeper.encoder.load_state_dict(model.encoder.state_dict())
    old, new = model.decoder, deeper.decoder
    for part in ("from_latent", "norm_out", "to_rgb"):
        getattr(new, part).load_state_dict(getattr(old, part).state_dict())
    # stages per level: one upsampling module, then that level's residual blocks
    for level in range(model.config.levels):
        old_start, new_start = level * (1 + current), level * (1 + blocks_per_level)
        new.stages[new_start].load_state_dict(old.stages[old_start].state_dict())
        for block in range(blocks_per_level):
            target = new.stages[new_start + 1 + block]
            if block < current:
                target.load_state_dict(old.stages[old_start + 1 + block].state_dict())
            else:
                _make_identity(target)
    return deeper.train(model.training)


def _make_identity(block: nn.Module) -> None:
    assert isinstance(block, ResidualBlock)
    with torch.no_grad():
        block.conv2.weight.zero_()
        assert block.conv2.bias is not None
        block.conv2.bias.zero_()
