"""How a decoded image compares with its original: PSNR, SSIM, sharpness and the checkerboard energy.

All functions take float images in [0, 1], shape (N, 3, H, W), and return one value per image.
"""

from __future__ import annotations

import torch

from latentdex.models.losses import psnr, ssim_map

__all__ = ["checkerboard_energy", "high_frequency_energy", "psnr", "ssim"]


def ssim(decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (uniform 7x7 window, as the training loss uses)."""
    return ssim_map(decoded, original).flatten(1).mean(dim=1)


def _power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """|FFT|^2 of each image's luminance with its mean removed, (N, H, W)."""
    grey = images.float().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    return torch.fft.fft2(grey).abs().pow(2)


def checkerboard_energy(images: torch.Tensor) -> torch.Tensor:
    """Spectral energy at the period-2 frequencies over that of their neighbours, per image.

    Stride-2 transposed convolutions leave a grid that repeats every 2 pixels: a spike on the Nyquist
    row and column (frequency H/2 or W/2) of the spectrum. A natural image's spectrum falls off
    smoothly there, so it scores about 1; a decoder that draws the grid scores well above its
    originals. Neighbours are the rows and columns one bin away on either side.
    """
    power = _power_spectrum(images)
    height, width = power.shape[-2:]
    row, column = height // 2, width // 2
    at = power[:, row, :].mean(dim=1) + power[:, :, column].mean(dim=1)
    beside = (
        power[:, row - 1, :].mean(dim=1)
        + power[:, (row + 1) % height, :].mean(dim=1)
        + power[:, :, column - 1].mean(dim=1)
        + power[:, :, (column + 1) % width].mean(dim=1)
    ) / 2
    return at / beside.clamp_min(1e-12)


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Share of each image's (non-DC) spectral energy above `cutoff` cycles per pixel (0.5 = Nyquist).

    The ratio of a decoding's value to its original's is a sharpness figure: 1 keeps all the fine detail,
    a blurry decoder scores well below.
    """
    power = _power_spectrum(images)
    height, width = power.shape[-2:]
    fy = torch.fft.fftfreq(height).abs()[:, None]
    fx = torch.fft.fftfreq(width).abs()[None, :]
    high = torch.maximum(fy, fx) >= cutoff
    total = power.flatten(1).sum(dim=1).clamp_min(1e-12)
    return power[:, high].sum(dim=1) / total
