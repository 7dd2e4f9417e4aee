"""The shipped default model: it loads, it reconstructs unseen images, and `latentdex demo` runs on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, WEIGHTS_FILE, load_model
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app

# Generated scenes are unlike the training photos and clip art; the floor is a few dB under what the
# shipped model measures on them, so a broken or badly retrained model fails here.
MIN_DEMO_PSNR_DB = 17.5


def test_default_model_is_small_and_self_consistent() -> None:
    model, card = load_model()
    assert card.config.image_size == 64 and card.config.latent_dim == 128
    assert (DEFAULT_MODEL_DIR / WEIGHTS_FILE).stat().st_size < 30 * 1024 * 1024
    assert card.training["holdout_psnr_db"] > 18
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


def test_latents_of_similar_images_are_closer_than_of_different_ones() -> None:
    codec = LatentCodec.load()
    rng = np.random.default_rng(0)
    base = np.zeros((64, 64, 3), np.uint8)
    base[:32] = (30, 90, 200)
    base[32:] = (60, 160, 40)
    brighter = np.clip(base.astype(int) + 25, 0, 255).astype(np.uint8)
    different = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mu = codec.encode(np.stack([base, brighter, different]))
    unit = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.1


def test_demo_writes_samples_and_a_reconstruction_sheet(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    samples = sorted((tmp_path / "samples").iterdir())
    assert len(samples) == 24
    assert {p.suffix for p in samples} == {".jpg", ".png", ".webp"}
    with Image.open(tmp_path / "reconstruction.png") as sheet:
        assert sheet.size == (8 * 66 + 2, 6 * 66 + 2)  # 24 images: 3 pairs of rows of 8 tiles
    # the query went over gRPC: the sample is its own nearest match, and the contact sheet has 1 + 7 tiles
    assert re.search(r"1\. id +\d+ +distance 0\.000 +scene-000\.jpg", result.stdout), result.stdout
    with Image.open(tmp_path / "contact-sheet.png") as contact:
        assert contact.width > 4 * 256 and contact.height > 2 * 128
    with Image.open(tmp_path / "interpolation.png") as walk:  # 8 frames, 4 to a row
        assert walk.width > 4 * 256 and walk.height > 2 * 128
    assert re.search(r"nearest photos along the path: scene-000\.jpg -> ", result.stdout)
    match = re.search(r"mean reconstruction PSNR ([0-9.]+) dB", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) > MIN_DEMO_PSNR_DB
