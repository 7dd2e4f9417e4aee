"""Batch augmentations on uint8/float image tensors: training crops and the "altered copy" views.

Everything runs on (N, 3, H, W) tensors with a caller-supplied generator, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

JpegRecompressor = Callable[[torch.Tensor, int], torch.Tensor]
"""(uint8 batch (N, 3, H, W), quality) -> the same batch after a JPEG encode/decode round trip."""


def random_crops(
    images: torch.Tensor, size: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """A random size x size crop of each image (uint8 in, float [0, 1] out), randomly mirrored."""
    n, _, height, width = images.shape
    tops = torch.randint(0, height - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator).tolist()
    crops = torch.stack(
        [img[:, t : t + size, s : s + size] for img, t, s in zip(images, tops, lefts, strict=True)]
    )
    out = crops.float().div_(255)
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


def altered_copies(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    min_area: float = 0.6,
    max_rotation_deg: float = 8.0,
    jitter: float = 0.25,
    jpeg: JpegRecompressor | None = None,
    jpeg_probability: float = 0.5,
) -> torch.Tensor:
    """Views of float [0, 1] images that a retrieval user would still call "the same photo".

    Each gets a random crop of `min_area`..1 of its area (aspect 3/4..4/3) resized back, a small rotation,
    a horizontal flip, brightness/contrast/saturation jitter, and (with `jpeg`) a JPEG round trip at
    quality 30..90 for a `jpeg_probability` share of the batch.
    """
    n = images.shape[0]
    area = min_area + (1 - min_area) * torch.rand(n, generator=generator)
    log_aspect = (torch.rand(n, generator=generator) * 2 - 1) * math.log(4 / 3)
    aspect = log_aspect.exp()
    scale_x = (area * aspect).sqrt().clamp(max=1)
    scale_y = (area / aspect).sqrt().clamp(max=1)
    shift_x = (1 - scale_x) * (torch.rand(n, generator=generator) * 2 - 1)
    shift_y = (1 - scale_y) * (torch.rand(n, generator=generator) * 2 - 1)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_rotation_deg)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([cos * scale_x * mirror, -sin * scale_y, shift_x], dim=1),
            torch.stack([sin * scale_x * mirror, cos * scale_y, shift_y], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    out = color_jitter(out, generator, jitter)
    if jpeg is not None and jpeg_probability > 0:
        chosen = (torch.rand(n, generator=generator) < jpeg_probability).nonzero().flatten()
        if len(chosen):
            quality = int(torch.randint(30, 91, (1,), generator=generator))
            as_bytes = (out[chosen] * 255).round().clamp(0, 255).to(torch.uint8)
            out[chosen] = jpeg(as_bytes, quality).float().div(255)
    return out.clamp(0, 1)


def color_jitter(images: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in 1 +- strength per image."""
    n = images.shape[0]

    def factors() -> torch.Tensor:
        return (1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength).to(images.dtype)

    out = images * factors()
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factors() + mean
    grey = out.mean(dim=1, keepdim=True)
    out = (out - grey) * factors() + grey
    return out.clamp(0, 1)
