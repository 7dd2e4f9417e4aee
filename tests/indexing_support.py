"""Helpers for the indexer's tests: a tiny random-weight model saved to disk and small photo folders."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import shape_image

from latentdex.models.checkpoint import save_model
from latentdex.models.vae import VAE, VAEConfig


def save_tiny_model(folder: Path, seed: int = 0, latent_dim: int = 8) -> Path:
    """A random-weight 32-px VAE saved in `folder`: indexing needs a model id and an encoder, not training."""
    torch.manual_seed(seed)
    save_model(VAE(VAEConfig(image_size=32, latent_dim=latent_dim, channels=(8, 16, 16), groups=4)), folder)
    return folder


def write_photos(folder: Path, count: int, size: int = 40, start: int = 0) -> list[Path]:
    """`count` distinct PNGs `photo{i:03d}.png` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"photo{i:03d}.png"
        shape_image(i, i % 5, size).save(path)
        paths.append(path)
    return paths
