"""Training keeps every tensor on the images' device, with random numbers drawn on the CPU.

The CI machines have no GPU, so the device rules are checked on PyTorch's "meta" device: it refuses to
mix a CPU tensor into an operation on another device, as CUDA does, without computing anything. CPU
runs stay seeded and repeatable (`test_training.py`: a resumed run ends with the straight run's model id).
"""

from __future__ import annotations

import pytest
import torch

from latentdex.models import losses
from latentdex.models.augment import altered_copies, color_jitter, random_crops, style_changes
from latentdex.models.vae import VAE, VAEConfig

META = torch.device("meta")


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_augmentations_stay_on_the_images_device() -> None:
    stored = torch.empty(8, 3, 40, 40, dtype=torch.uint8, device=META)
    crops = random_crops(stored, 32, _generator())
    views = altered_copies(crops, _generator(), black_corner_share=0.5)
    styled = style_changes(views, _generator(), probability=1.0)  # every kind of style, drawn at random
    jittered = color_jitter(styled, _generator(), 0.25)
    for batch in (crops, views, styled, jittered):
        assert batch.device == META and batch.shape == (8, 3, 32, 32)


def test_the_cpu_draws_reach_other_devices_only_as_moved_tensors() -> None:
    """The same check fails when a random tensor is used where it was drawn: the rule above can fail."""
    images = torch.empty(4, 3, 8, 8, device=META)
    with pytest.raises(RuntimeError, match="device"):
        _ = images * torch.rand(4, 1, 1, 1, generator=_generator())


def test_a_training_forward_pass_and_its_losses_stay_on_the_device() -> None:
    model = VAE(VAEConfig.for_size(32, 16, 16)).to(META)
    images = torch.empty(6, 3, 32, 32, device=META)
    reconstruction, posterior = model(images, _generator())  # the posterior's noise is drawn on the CPU
    head = losses.ProjectionHead(16).to(META)
    terms = [
        losses.reconstruction_loss(reconstruction, images, "mse"),
        losses.reconstruction_loss(reconstruction, images, "l1_ssim"),
        posterior.kl().mean(),
        losses.nt_xent(head(posterior.mu), head(posterior.mu)),
        losses.invariance_loss(posterior.mu, posterior.mu),
        losses.generator_adversarial_loss(losses.PatchDiscriminator().to(META)(reconstruction)),
    ]
    for term in terms:
        assert term.device == META and term.dim() == 0
