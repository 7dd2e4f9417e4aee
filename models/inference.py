"""Batched inference with a loaded VAE: uint8 pixels -> latents (mu) and latents -> uint8 pixels."""

from __future__ import annotations

import os

import numpy as np
import torch

from models.checkpoint import ModelCard, load_model
from models.errors import BadLatent, DimensionMismatch
from models.sheets import to_uint8_hwc
from models.vae import VAE


class LatentCodec:
    """Encodes square uint8 RGB images to their posterior mean and decodes latents back.

    Inputs are numpy arrays so callers need no torch: images (N, S, S, 3) uint8 where S is the model's
    `image_size`, latents (N, D) float32. Work runs under `torch.inference_mode` in chunks of `batch_size`.
    """

    def __init__(self, model: VAE, card: ModelCard, batch_size: int = 64) -> None:
        # channels_last measured 1.16x faster for batched encoding on the CPU (bench: model_throughput).
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.card = card
        self.batch_size = batch_size

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None, batch_size: int = 64) -> LatentCodec:
        """Load a model directory (None: the shipped default model)."""
        model, card = load_model(directory)
        return cls(model, card, batch_size)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def model_id(self) -> str:
        return self.card.model_id

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, D) float32 posterior means."""
        return self.encode_posterior(images)[0]

    def encode_posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> ((N, D) mu, (N, D) logvar), float32."""
        size = self.image_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise DimensionMismatch(
                f"images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}"
            )
        mus, logvars = [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
                images = chunk.permute(0, 3, 1, 2).float().div_(255)
                posterior = self.model.encode(images.contiguous(memory_format=torch.channels_last))
                mus.append(posterior.mu.numpy())
                logvars.append(posterior.logvar.numpy())
        if not mus:
            empty = np.empty((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        return np.concatenate(mus).astype(np.float32), np.concatenate(logvars).astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N, D) float latents -> (N, S, S, 3) uint8 images."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise DimensionMismatch(f"latents must have shape (N, {self.latent_dim}), got {latents.shape}")
        if not np.isfinite(latents).all():
            raise BadLatent("latents contain NaN or infinite values")
        out = []
        with torch.inference_mode():
            for start in range(0, len(latents), self.batch_size):
                z = torch.from_numpy(
                    np.ascontiguousarray(latents[start : start + self.batch_size], np.float32)
                )
                images = self.model.decode(z)
                out.append(to_uint8_hwc(images))
        if not out:
            return np.empty((0, self.image_size, self.image_size, 3), np.uint8)
        return np.concatenate(out)
