"""Training objectives: reconstruction, the KL term, augmentation invariance and the adversarial term.

Every function returns a scalar averaged over the batch; sums run over pixels or latent dimensions,
so `beta` keeps its classic meaning (weight of KL nats against summed squared error).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from latentdex.models.vae import DiagonalGaussian

ReconstructionKind = Literal["mse", "l1_ssim"]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per item: -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
    return DiagonalGaussian(mu, logvar).kl()


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, kind: ReconstructionKind = "mse"
) -> torch.Tensor:
    """Per-image reconstruction error summed over pixels, averaged over the batch.

    "mse" is the classic squared error. "l1_ssim" mixes 0.16 * L1 with 0.84 * (1 - SSIM) / 2 per pixel,
    the weighting of Zhao et al. (Loss Functions for Image Restoration with Neural Networks).
    """
    if kind == "mse":
        per_pixel = (reconstruction - target).pow(2)
    elif kind == "l1_ssim":
        l1 = (reconstruction - target).abs()
        per_pixel = 0.16 * l1 + 0.84 * (1 - ssim_map(reconstruction, target)) / 2
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}")
    return per_pixel.flatten(1).sum(dim=1).mean()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM of images in [0, 1] with a uniform window (same shape as the inputs)."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    channels = x.shape[1]
    kernel = torch.full((channels, 1, window, window), 1.0 / window**2, dtype=x.dtype, device=x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2)
    return numerator / denominator


def invariance_loss(mu_a: torch.Tensor, mu_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Pull each image's mu towards its augmented copy's, and away from the other images' (InfoNCE).

    A plain squared distance would be satisfied by shrinking every mu towards zero; contrasting against
    the rest of the batch makes "close" mean "closer than any other image", which is what retrieval needs.
    Symmetric: both views act as queries.
    """
    a = F.normalize(mu_a, dim=1)
    b = F.normalize(mu_b, dim=1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views must pick its partner among the 2N - 1 others.

    Unlike `invariance_loss`, a view's negatives include the other images' views from its own side too.
    """
    n = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partners)


class ProjectionHead(nn.Module):
    """The small MLP that SimCLR puts between the representation (here mu) and the contrastive loss.

    The loss then shapes the head's output, and mu keeps what the head throws away (colour, exact
    position) for the decoder: contrasting mu itself trades reconstruction against invariance.
    """

    def __init__(self, latent_dim: int, width: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, out_dim))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [0, 1]."""
    mse = (reconstruction - target).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: one real/fake logit per overlapping image patch."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(layers - 1):
            blocks += [
                nn.Conv2d(width, width * 2, 4, stride=2, padding=1),
                nn.GroupNorm(8, width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        blocks.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's side of the GAN minimax game: -log D(x) - log(1 - D(G(z)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator objective: -log D(G(z))."""
    return F.softplus(-fake_logits).mean()
