"""Batch augmentations on uint8/float image tensors: training crops and the "altered copy" views.

Everything runs on (N, 3, H, W) tensors with a caller-supplied generator, so runs are reproducible.
The generator is a CPU one whatever device the images are on: every random number is drawn on the CPU
and moved to the images' device, so a run draws the same numbers on a GPU as on the CPU.
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
        mirror = (torch.rand(n, generator=generator) < 0.5).to(out.device)
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
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
    black_corner_share: float = 0.0,
) -> torch.Tensor:
    """Views of float [0, 1] images that a retrieval user would still call "the same photo".

    Each gets a random crop of `min_area`..1 of its area (aspect 3/4..4/3) resized back, a small rotation,
    a horizontal flip, brightness/contrast/saturation jitter, and (with `jpeg`) a JPEG round trip at
    quality 30..90 for a `jpeg_probability` share of the batch. A `black_corner_share` of the views is
    instead the whole frame rotated on its own canvas with black corners, as an image straightened or
    rotated in an editor and saved at its size is; the others fill the corners by reflection.
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
    # drawn only when asked for, so that runs without it keep their random stream
    corners = torch.rand(n, generator=generator) < black_corner_share if black_corner_share > 0 else None
    if corners is not None:
        scale_x, scale_y = scale_x.masked_fill(corners, 1.0), scale_y.masked_fill(corners, 1.0)
        shift_x, shift_y = shift_x.masked_fill(corners, 0.0), shift_y.masked_fill(corners, 0.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([cos * scale_x * mirror, -sin * scale_y, shift_x], dim=1),
            torch.stack([sin * scale_x * mirror, cos * scale_y, shift_y], dim=1),
        ],
        dim=1,
    ).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if corners is not None and corners.any():
        black = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = torch.where(corners.to(images.device)[:, None, None, None], black, out)
    out = color_jitter(out, generator, jitter)
    if jpeg is not None and jpeg_probability > 0:
        chosen = (torch.rand(n, generator=generator) < jpeg_probability).nonzero().flatten()
        if len(chosen):
            quality = int(torch.randint(30, 91, (1,), generator=generator))
            chosen = chosen.to(out.device)
            as_bytes = (out[chosen] * 255).round().clamp(0, 255).to(torch.uint8).cpu()
            out[chosen] = jpeg(as_bytes, quality).to(out.device).float().div(255)
    return out.clamp(0, 1)


def color_jitter(images: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in 1 +- strength per image."""
    n = images.shape[0]

    def factors() -> torch.Tensor:
        draw = torch.rand(n, 1, 1, 1, generator=generator)
        return (1 + (draw * 2 - 1) * strength).to(images.device, images.dtype)

    out = images * factors()
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factors() + mean
    grey = out.mean(dim=1, keepdim=True)
    out = (out - grey) * factors() + grey
    return out.clamp(0, 1)


STYLE_CHANGES = ("grey", "posterise", "channel_swap", "line_art", "saturate")


def style_changes(images: torch.Tensor, generator: torch.Generator, probability: float = 0.5) -> torch.Tensor:
    """Re-render a `probability` share of float [0, 1] images in another style, one of `STYLE_CHANGES`.

    Views cut from one photo teach "the same photo"; these teach "the same subject drawn otherwise":
    grey, posterised to 2..4 levels per channel, colour channels permuted, a line drawing of the edges
    (dark strokes on white), or saturation pushed to 2..3x.
    """
    n = images.shape[0]
    out = images.clone()
    chosen = torch.rand(n, generator=generator) < probability
    kinds = torch.randint(0, len(STYLE_CHANGES), (n,), generator=generator)
    for index in chosen.nonzero().flatten().tolist():
        kind = STYLE_CHANGES[int(kinds[index])]
        image = images[index]
        if kind == "grey":
            out[index] = image.mean(dim=0, keepdim=True).expand_as(image)
        elif kind == "posterise":
            levels = int(torch.randint(2, 5, (1,), generator=generator))
            out[index] = (image * levels).floor().clamp(max=levels - 1) / (levels - 1)
        elif kind == "channel_swap":
            order = torch.randperm(3, generator=generator)
            if order.tolist() == [0, 1, 2]:
                order = torch.tensor([2, 0, 1])
            out[index] = image[order.to(image.device)]
        elif kind == "line_art":
            out[index] = line_drawing(image[None])[0]
        else:
            factor = 2 + torch.rand(1, generator=generator).item()
            grey = image.mean(dim=0, keepdim=True)
            out[index] = ((image - grey) * factor + grey).clamp(0, 1)
    return out


def line_drawing(images: torch.Tensor) -> torch.Tensor:
    """Dark strokes on white where float [0, 1] images (N, 3, H, W) have edges (Sobel magnitude)."""
    grey = images.mean(dim=1, keepdim=True)
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=images.dtype, device=images.device)
    kernels = torch.stack([sobel_x, sobel_x.T])[:, None]
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.pow(2).sum(dim=1, keepdim=True).sqrt()
    scale = magnitude.flatten(1).amax(dim=1).clamp_min(1e-6)[:, None, None, None]
    strokes = (magnitude / scale * 2).clamp(0, 1)
    return (1 - strokes).expand(-1, 3, -1, -1).contiguous()
