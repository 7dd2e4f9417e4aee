"""Contact sheets of model output: a grid of image tensors written as one RGB picture."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from latentdex.models.vae import VAE


def image_grid(rows: list[torch.Tensor], padding: int = 2, background: int = 255) -> Image.Image:
    """Lay out rows of float [0, 1] images (each row (K, 3, S, S), same S) as one picture."""
    if not rows:
        raise ValueError("no rows to draw")
    size = rows[0].shape[-1]
    columns = max(len(r) for r in rows)
    height = len(rows) * (size + padding) + padding
    width = columns * (size + padding) + padding
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    for r, row in enumerate(rows):
        pixels = to_uint8_hwc(row)
        for c, tile in enumerate(pixels):
            top, left = padding + r * (size + padding), padding + c * (size + padding)
            canvas[top : top + size, left : left + size] = tile
    return Image.fromarray(canvas)


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """Float [0, 1] (N, 3, H, W) -> uint8 (N, H, W, 3)."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def training_sheet(model: VAE, images: torch.Tensor, seed: int = 0, columns: int = 8) -> Image.Image:
    """Four rows: inputs, their reconstructions from mu, samples from N(0, I), and a linear
    interpolation between the first two inputs' mu."""
    images = images[:columns]
    mu = model.encode(images).mode()
    reconstructions = model.decode(mu)
    generator = torch.Generator().manual_seed(seed)
    samples = model.decode(torch.randn(columns, model.config.latent_dim, generator=generator).to(mu.device))
    weights = torch.linspace(0, 1, columns, device=mu.device).unsqueeze(1)
    end = mu[1] if len(mu) > 1 else mu[0]
    path = model.decode((1 - weights) * mu[0] + weights * end)
    return image_grid([images, reconstructions, samples, path])
