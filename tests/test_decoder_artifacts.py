"""Previews without a checkerboard: the spectral check itself, and the shipped model's decodings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentdex.indexer.load import load_for_model
from latentdex.models.image_quality import checkerboard_energy, high_frequency_energy
from latentdex.models.inference import LatentCodec
from latentdex.models.vae import VAE, VAEConfig
from latentdex.service.sample_collection import write_sample_collection

# Decodings may carry at most this much more period-2 energy (relative to their neighbouring
# frequencies) than their originals. The model shipped before the nearest-upsampling decoder scored
# 1.5-2.1 on the benchmark's unseen photos, clip art and stamps; a clean decoder scores about 1 or less.
MAX_CHECKERBOARD_RATIO = 1.2


def held_out_pictures(folder: Path, size: int) -> torch.Tensor:
    """Generated scenes (no model was trained on them) as float (N, 3, size, size) model inputs."""
    paths = write_sample_collection(folder, count=32, seed=123, size=(256, 192))
    pixels = np.stack([load_for_model(path, size) for path in paths])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)


def test_the_check_sees_a_faint_grid_that_the_eye_sees_in_a_preview(tmp_path: Path) -> None:
    images = held_out_pictures(tmp_path, 64)
    grid = torch.ones(64, 64)
    grid[1::2, :] = -1
    grid[:, 1::2] *= -1
    gridded = (images + 0.03 * grid).clamp(0, 1)
    clean = checkerboard_energy(images).mean()
    assert 0.5 < clean < 1.5
    assert checkerboard_energy(gridded).mean() > 3 * clean
    # blurring is not a grid: it lowers the high frequencies and leaves no spike
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    assert checkerboard_energy(blurred).mean() < MAX_CHECKERBOARD_RATIO * clean
    assert high_frequency_energy(blurred).mean() < 0.5 * high_frequency_energy(images).mean()


def test_the_shipped_model_decodes_held_out_pictures_without_a_checkerboard(tmp_path: Path) -> None:
    codec = LatentCodec.load()
    images = held_out_pictures(tmp_path, codec.image_size)
    with torch.inference_mode():
        decoded = codec.model.decode(codec.model.encode(images).mu)
    ratio = checkerboard_energy(decoded).mean() / checkerboard_energy(images).mean()
    assert ratio < MAX_CHECKERBOARD_RATIO, f"decodings carry {ratio:.2f}x their originals' period-2 energy"


def test_a_transposed_convolution_decoder_is_what_draws_the_grid() -> None:
    """Untrained decoders of both kinds on the same latents: only stride-2 transposed convolutions put a
    spike at period 2 (their kernels overlap unevenly), nearest upsampling + convolution does not."""
    torch.manual_seed(0)
    latents = torch.randn(32, 16)
    scores = {}
    for kind in ("transposed", "nearest"):
        config = VAEConfig(
            image_size=32, latent_dim=16, channels=(8, 16, 16), groups=4, decoder_upsampling=kind
        )
        torch.manual_seed(1)
        with torch.inference_mode():
            scores[kind] = float(checkerboard_energy(VAE(config).decode(latents)).mean())
    assert scores["transposed"] > 2 * scores["nearest"], scores
