"""The convolutional VAE: config, encoder, diagonal-Gaussian posterior and decoder, in one readable piece.

Images are float tensors in [0, 1], shape (N, 3, S, S). The encoder maps them to the posterior
q(z | x) = N(mu, diag(exp(logvar))); retrieval uses its mode (mu), training and generation sample it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from latentdex.errors import BadCheckpoint, DimensionMismatch

SUPPORTED_IMAGE_SIZES = (32, 64, 96, 128, 256)
_LOGVAR_RANGE = (-30.0, 20.0)
ENCODER_STEMS = ("full", "strided")
DECODER_UPSAMPLINGS = ("transposed", "nearest")
_LEGACY_DEFAULTS = {
    "encoder_stem": "full",
    "decoder_upsampling": "transposed",
    "decoder_blocks_per_level": None,
}


@dataclass(frozen=True)
class VAEConfig:
    """Architecture hyper-parameters; saved beside the weights so a checkpoint rebuilds itself."""

    image_size: int = 64
    latent_dim: int = 128
    channels: tuple[int, ...] = (16, 64, 128, 256)
    blocks_per_level: int = 1
    groups: int = 8
    # "strided": a stride-2 stem, so the first level runs at half resolution (about 3x fewer FLOPs).
    encoder_stem: str = "full"
    # "nearest": nearest-neighbour upsampling then a 3x3 convolution, which cannot draw the checkerboard
    # that stride-2 transposed convolutions leave (Odena et al., Deconvolution and Checkerboard Artifacts).
    decoder_upsampling: str = "transposed"
    # residual blocks per decoder level; None: `blocks_per_level`, as every model had before this field
    decoder_blocks_per_level: int | None = None

    def __post_init__(self) -> None:
        if self.encoder_stem not in ENCODER_STEMS:
            raise ValueError(f"encoder_stem must be one of {ENCODER_STEMS}, got {self.encoder_stem!r}")
        if self.decoder_upsampling not in DECODER_UPSAMPLINGS:
            raise ValueError(
                f"decoder_upsampling must be one of {DECODER_UPSAMPLINGS}, got {self.decoder_upsampling!r}"
            )
        if self.image_size not in SUPPORTED_IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {SUPPORTED_IMAGE_SIZES}, got {self.image_size}")
        if self.decoder_blocks_per_level is not None and self.decoder_blocks_per_level < 1:
            raise ValueError(
                f"decoder_blocks_per_level must be at least 1, got {self.decoder_blocks_per_level}"
            )
        if self.groups < 1:
            raise ValueError(f"groups must be at least 1, got {self.groups}")
        if self.latent_dim < 2:
            raise ValueError(f"latent_dim must be at least 2, got {self.latent_dim}")
        if len(self.channels) != self.levels:
            raise ValueError(
                f"image_size {self.image_size} needs {self.levels} channel levels "
                f"(halving down to {self.bottom_size}x{self.bottom_size}), got {len(self.channels)}"
            )
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"every channel count must be divisible by groups={self.groups}")

    @property
    def decoder_blocks(self) -> int:
        """Residual blocks per decoder level."""
        return (
            self.blocks_per_level if self.decoder_blocks_per_level is None else self.decoder_blocks_per_level
        )

    @property
    def bottom_size(self) -> int:
        """Spatial size where the encoder flattens into the latent vector."""
        return bottom_size(self.image_size)

    @property
    def levels(self) -> int:
        return levels_for(self.image_size)

    def to_json(self) -> str:
        """The config as JSON; fields still at the value every model had before they existed are left
        out, so the checkpoints made then keep their model_id."""
        fields = asdict(self)
        for name, legacy in _LEGACY_DEFAULTS.items():
            if fields[name] == legacy:
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise BadCheckpoint(f"unknown model config fields: {sorted(unknown)}")
        values = dict(data)
        try:
            if "channels" in values:
                values["channels"] = tuple(int(c) for c in values["channels"])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise BadCheckpoint(f"invalid model config: {exc}") from exc

    @classmethod
    def for_size(
        cls,
        image_size: int,
        latent_dim: int = 128,
        base_channels: int = 32,
        *,
        encoder_stem: str = "full",
        decoder_upsampling: str = "transposed",
    ) -> VAEConfig:
        """A config whose widths double per level from `base_channels`, capped at 8x.

        With the "full" stem the full-resolution level runs at half width: it dominates the compute and
        measured twice as fast in training at no visible cost in reconstruction. The "strided" stem
        skips that level's convolutions altogether, so every level keeps its full width.
        """
        levels = levels_for(image_size)
        first = base_channels // 2 if encoder_stem == "full" else base_channels
        channels = (first, *(base_channels * min(2**i, 8) for i in range(1, levels)))
        return cls(
            image_size=image_size,
            latent_dim=latent_dim,
            channels=channels,
            encoder_stem=encoder_stem,
            decoder_upsampling=decoder_upsampling,
        )


def bottom_size(image_size: int) -> int:
    """Where a model of `image_size` stops halving: 4, or 6 for the sizes 3 x a power of two (96)."""
    return 6 if image_size % 3 == 0 else 4


def levels_for(image_size: int) -> int:
    """How many times a model of `image_size` halves down to its `bottom_size`."""
    return (image_size // bottom_size(image_size)).bit_length() - 1


@dataclass
class DiagonalGaussian:
    """The posterior q(z | x): the one place that samples, takes the mode and computes the KL."""

    mu: torch.Tensor
    logvar: torch.Tensor = field(repr=False)

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(*_LOGVAR_RANGE)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        # drawn where the generator lives (the CPU, for training's seeded ones), then moved to mu
        where = generator.device if generator is not None else self.mu.device
        eps = torch.randn(self.mu.shape, generator=generator, device=where, dtype=self.mu.dtype)
        eps = eps.to(self.mu.device)
        return self.mu + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mu

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per item, closed form: -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
        return -0.5 * torch.sum(1 + self.logvar - self.mu.pow(2) - self.logvar.exp(), dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Encoder(nn.Module):
    """Image (N, 3, S, S) in [0, 1] -> (mu, logvar), each (N, latent_dim).

    Level i works at S / 2**i ("full" stem) or S / 2**(i+1) ("strided"), ending at 4x4 either way: the
    strided encoder has no downsampling after its last level, which holds residual blocks at 4x4.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch = config.channels
        strided = config.encoder_stem == "strided"
        if strided:
            self.stem = nn.Conv2d(3, ch[0], 4, stride=2, padding=1)
        else:
            self.stem = nn.Conv2d(3, ch[0], 3, padding=1)
        stages: list[nn.Module] = []
        for level, width in enumerate(ch):
            stages.extend(ResidualBlock(width, config.groups) for _ in range(config.blocks_per_level))
            last = level == len(ch) - 1
            if strided and last:
                break
            next_width = ch[min(level + 1, len(ch) - 1)]
            stages.append(nn.Conv2d(width, next_width, 4, stride=2, padding=1))
        self.stages = nn.Sequential(*stages)
        self.norm_out = nn.GroupNorm(config.groups, ch[-1])
        self.to_moments = nn.Linear(ch[-1] * config.bottom_size**2, 2 * config.latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stages(self.stem(images * 2 - 1))
        h = F.silu(self.norm_out(h)).flatten(1)
        mu, logvar = self.to_moments(h).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """Latent (N, latent_dim) -> image (N, 3, S, S) in [0, 1]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch = tuple(reversed(config.channels))
        self.bottom_channels = ch[0]
        self.bottom = config.bottom_size
        self.from_latent = nn.Linear(config.latent_dim, ch[0] * config.bottom_size**2)
        stages: list[nn.Module] = []
        for level, width in enumerate(ch):
            next_width = ch[min(level + 1, len(ch) - 1)] if level + 1 < len(ch) else ch[-1]
            stages.append(_upsampling(width, next_width, config.decoder_upsampling))
            stages.extend(ResidualBlock(next_width, config.groups) for _ in range(config.decoder_blocks))
        self.stages = nn.Sequential(*stages)
        self.norm_out = nn.GroupNorm(config.groups, ch[-1])
        self.to_rgb = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.bottom_channels, self.bottom, self.bottom)
        h = self.stages(h)
        return torch.sigmoid(self.to_rgb(F.silu(self.norm_out(h))))


def _upsampling(in_channels: int, out_channels: int, kind: str) -> nn.Module:
    """Double the spatial size: a transposed convolution, or nearest-neighbour copies then a 3x3 conv."""
    if kind == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, padding=1)
    )


class VAE(nn.Module):
    """Encoder + posterior + decoder. `encode` gives the posterior, `decode` takes latents."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, images: torch.Tensor) -> DiagonalGaussian:
        self._check_images(images)
        mu, logvar = self.encoder(images)
        return DiagonalGaussian(mu, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise DimensionMismatch(
                f"latents must have shape (N, {self.config.latent_dim}), got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(images)
        return self.decode(posterior.sample(generator)), posterior

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise DimensionMismatch(
                f"images must have shape (N, 3, {size}, {size}), got {tuple(images.shape)}"
            )
