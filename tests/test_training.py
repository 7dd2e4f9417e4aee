"""Tests for models.training and indexer.training_data: real image folders, real (tiny) training runs."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentdex.errors import BadCheckpoint
from latentdex.indexer.load import load_for_model
from latentdex.indexer.training_data import (
    CROP_MARGIN,
    TrainingSet,
    holdout_group,
    is_holdout,
    jpeg_round_trip,
    load_training_set,
)
from latentdex.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, read_card
from latentdex.models.training import (
    SHEETS_DIR,
    StepMetrics,
    TrainConfig,
    holdout_psnr,
    load_projection_head,
    train,
)
from latentdex.models.vae import VAEConfig

TINY = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4)
HOLDOUT = 0.2
ImageFolderFactory = Callable[..., list[Path]]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory, make_image_folder: ImageFolderFactory) -> Path:
    """48 PNGs, 24 sources x 2 crops; at a 0.2 held-out share the split puts source 19 aside."""
    folder = tmp_path_factory.mktemp("photos")
    make_image_folder(folder, sources=24, per_source=2, size=40)
    return folder


@pytest.fixture(scope="module")
def training_set(image_folder: Path) -> TrainingSet:
    return load_training_set(image_folder, image_size=32, holdout_fraction=HOLDOUT, workers=1)


def _mean(history: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(entry[key] for entry in history)


class _Interrupted(Exception):
    pass


def _stop_after(step: int) -> Callable[[StepMetrics], None]:
    def on_step(metrics: StepMetrics) -> None:
        if metrics.step == step:
            raise _Interrupted

    return on_step


# --- A real run -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_a_model(training_set: TrainingSet, tmp_path: Path) -> None:
    assert len(training_set.train) == 46 and len(training_set.holdout) == 2
    out = tmp_path / "run"
    config = TrainConfig(epochs=10, batch_size=8, checkpoint_every=20, warmup_steps=2, learning_rate=3e-3)
    seen: list[StepMetrics] = []
    result = train(training_set.train, training_set.holdout, out, TINY, config, on_step=seen.append)

    assert result.steps == 50 == len(result.history) == len(seen)
    assert [entry["step"] for entry in result.history] == list(range(1, 51))
    first, last = _mean(result.history[:5], "reconstruction"), _mean(result.history[-5:], "reconstruction")
    assert last < 0.85 * first, (first, last)
    assert all(math.isfinite(entry["loss"]) for entry in result.history)

    sheets = sorted((out / SHEETS_DIR).glob("*.png"))
    assert [p.name for p in sheets] == ["step-0000020.png", "step-0000040.png", "step-0000050.png"]
    with Image.open(sheets[-1]) as sheet:
        # Four rows (inputs, reconstructions, samples, interpolation) of 32-pixel tiles with 2-pixel gaps.
        assert sheet.size == (8 * 34 + 2, 4 * 34 + 2)

    assert (out / CONFIG_FILE).is_file() and (out / WEIGHTS_FILE).is_file()
    model, card = load_model(out)
    assert card.model_id == result.model_id
    assert card.config == TINY
    assert card.training["steps"] == 50
    assert card.training["holdout_images"] == 2
    assert card.training["holdout_psnr_db"] == round(result.holdout_psnr, 3)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

    assert isinstance(result.holdout_psnr, float) and math.isfinite(result.holdout_psnr)
    assert 5 < result.holdout_psnr < 60


# --- Resuming -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(training_set: TrainingSet, tmp_path: Path) -> None:
    images, holdout = training_set.train, training_set.holdout
    config = TrainConfig(
        epochs=3,
        batch_size=8,
        checkpoint_every=5,
        warmup_steps=2,
        learning_rate=3e-3,
        invariance_weight=1.0,
        adversarial_weight=0.1,
        adversarial_warmup_steps=3,
    )
    straight = train(images, holdout, tmp_path / "straight", TINY, config, jpeg=jpeg_round_trip)
    assert straight.steps == 15

    out = tmp_path / "resumed"
    with pytest.raises(_Interrupted):
        train(images, holdout, out, TINY, config, jpeg=jpeg_round_trip, on_step=_stop_after(8))
    assert read_card(out).training["steps"] == 5  # the last checkpoint before the interruption
    seen: list[int] = []
    resumed = train(
        images, holdout, out, TINY, config, jpeg=jpeg_round_trip, on_step=lambda m: seen.append(m.step)
    )
    assert seen == list(range(6, 16)), "the second call should continue from step 5, not start over"
    assert resumed.steps == 15
    assert resumed.history == straight.history
    expected = straight.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert resumed.model_id == straight.model_id == read_card(out).model_id
    assert resumed.holdout_psnr == straight.holdout_psnr

    # A finished run called again does no more steps and keeps its model.
    again = train(images, holdout, out, TINY, config, jpeg=jpeg_round_trip, on_step=_stop_after(1))
    assert again.steps == 15 and again.model_id == straight.model_id


def test_resume_with_different_settings_is_refused(training_set: TrainingSet, tmp_path: Path) -> None:
    images, holdout = training_set.train[:8], training_set.holdout
    config = TrainConfig(epochs=1, batch_size=8, checkpoint_every=1, warmup_steps=1)
    out = tmp_path / "run"
    train(images, holdout, out, TINY, config)
    with pytest.raises(BadCheckpoint, match="holds a run with different settings"):
        train(images, holdout, out, TINY, replace(config, learning_rate=1e-3))
    with pytest.raises(BadCheckpoint, match="holds a run with different settings"):
        train(images, holdout, out, replace(TINY, latent_dim=6), config)


def test_train_rejects_unusable_tensors(tmp_path: Path) -> None:
    good = torch.zeros(4, 3, 40, 40, dtype=torch.uint8)
    config = TrainConfig(epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="must be uint8"):
        train(good.float(), good, tmp_path, TINY, config)
    with pytest.raises(ValueError, match="smaller than the model's 32"):
        train(good[:, :, :16, :16], good, tmp_path, TINY, config)
    with pytest.raises(ValueError, match="no training images"):
        train(good[:0], good, tmp_path, TINY, config)


# --- Invariance and adversarial terms -------------------------------------------------------------


def test_invariance_and_adversarial_terms_are_trained(training_set: TrainingSet, tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=1,
        batch_size=8,
        checkpoint_every=100,
        warmup_steps=1,
        invariance_weight=2.0,
        adversarial_weight=0.5,
        adversarial_warmup_steps=1,
    )
    images = training_set.train[:24]
    result = train(images, training_set.holdout, tmp_path / "run", TINY, config, jpeg=jpeg_round_trip)
    history = result.history
    assert len(history) == 3
    assert all(entry["invariance"] > 0 for entry in history)
    # Step 1 is still in the adversarial warm-up; the generator and discriminator terms start at step 2.
    assert history[0]["adversarial"] == 0 and history[0]["discriminator"] == 0
    assert all(entry["adversarial"] > 0 and entry["discriminator"] > 0 for entry in history[1:])
    for entry in history:
        expected = (
            entry["reconstruction"]
            + config.beta * entry["kl"]
            + config.invariance_weight * entry["invariance"]
            + config.adversarial_weight * entry["adversarial"]
        )
        assert entry["loss"] == pytest.approx(expected, rel=1e-5)


def test_the_projection_head_form_trains_on_two_styled_views_and_resumes(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    config = TrainConfig(
        epochs=2,
        batch_size=8,
        checkpoint_every=2,
        warmup_steps=1,
        invariance_weight=3.0,
        invariance_form="head_ntxent",
        invariance_temperature=0.2,
        style_probability=0.5,
    )
    images = training_set.train[:24]
    straight = train(images, training_set.holdout, tmp_path / "straight", TINY, config)
    assert all(entry["invariance"] > 0 for entry in straight.history)
    for entry in straight.history:
        expected = entry["reconstruction"] + config.beta * entry["kl"] + 3.0 * entry["invariance"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-5)
    out = tmp_path / "resumed"
    with pytest.raises(_Interrupted):
        train(images, training_set.holdout, out, TINY, config, on_step=_stop_after(3))
    resumed = train(images, training_set.holdout, out, TINY, config)
    assert resumed.history == straight.history  # the head's weights came back with the model's
    assert resumed.model_id == straight.model_id
    # the head is a training aid: the checkpoint holds the VAE alone
    assert set(load_model(out)[0].state_dict()) == set(straight.model.state_dict())


@pytest.mark.parametrize(
    "override", [{"invariance_form": "triplet"}, {"style_probability": 1.5}], ids=["form", "style"]
)
def test_bad_invariance_settings_are_refused(override: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(override))):
        TrainConfig(**override)


# --- Training data --------------------------------------------------------------------------------


def test_holdout_group_and_split_keep_sources_together() -> None:
    assert holdout_group(Path("src3__7.png")) == "src3"
    assert holdout_group(Path("trip/src3__0.jpg")) == "trip/src3"
    assert holdout_group(Path("plain.png")) == "plain"
    for i in range(60):
        sides = {is_holdout(Path(f"src{i}__{k}.png"), HOLDOUT) for k in range(5)}
        assert len(sides) == 1, f"source {i} split across both sides"
    chosen = sum(is_holdout(Path(f"src{i}__0.png"), HOLDOUT) for i in range(1000))
    assert 150 < chosen < 250  # about 20% of the groups
    assert not any(is_holdout(Path(f"src{i}__0.png"), 0.0) for i in range(100))
    assert all(is_holdout(Path(f"src{i}__0.png"), 1.0) for i in range(100))


@pytest.mark.slow
def test_load_training_set_splits_by_source_and_reports_failures(
    tmp_path: Path, make_image_folder: ImageFolderFactory
) -> None:
    folder = tmp_path / "photos"
    good = make_image_folder(folder, sources=22, per_source=3, size=48)
    (folder / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, not even looked at")
    progress: list[tuple[int, int]] = []

    data = load_training_set(
        folder,
        image_size=32,
        holdout_fraction=HOLDOUT,
        workers=1,
        on_progress=lambda d, t: progress.append((d, t)),
    )

    failed = dict(data.failed)
    assert len(data.failed) == len(failed) == 2
    assert failed["broken.png"] == "not a supported image format"
    assert failed["empty.jpg"].startswith("empty file")
    assert progress[-1] == (len(good) + 2, len(good) + 2)

    cached = round(32 * CROP_MARGIN)
    held = [p for p in good if is_holdout(p.relative_to(folder), HOLDOUT)]
    kept = [p for p in good if p not in held]
    held_sources = {holdout_group(p.relative_to(folder)) for p in held}
    assert held_sources == {"src19"} and len(held) == 3  # every crop of the held-out source, none other
    assert {holdout_group(p.relative_to(folder)) for p in kept}.isdisjoint(held_sources)

    def expected(paths: list[Path]) -> torch.Tensor:
        return torch.from_numpy(np.stack([load_for_model(p, cached) for p in paths])).permute(0, 3, 1, 2)

    assert data.train.dtype == torch.uint8 and data.train.shape == (len(kept), 3, cached, cached)
    assert torch.equal(data.holdout, expected(sorted(held)))
    assert torch.equal(data.train, expected(sorted(kept)))
    assert data.describe(folder) == {
        "folder": "photos",
        "train_images": len(kept),
        "holdout_images": 3,
        "failed_images": 2,
        "cached_size": cached,
    }


def test_load_training_set_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        load_training_set(tmp_path / "missing", image_size=32, workers=1)


def test_decoder_only_training_sharpens_decodings_and_leaves_the_latents_alone(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    images, holdout = training_set.train, training_set.holdout
    base = train(
        images, holdout, tmp_path / "base", TINY, TrainConfig(epochs=2, batch_size=8, warmup_steps=1)
    )
    config = TrainConfig(epochs=6, batch_size=8, warmup_steps=1, decoder_only=True, learning_rate=3e-3)
    with pytest.raises(ValueError, match="init"):
        train(images, holdout, tmp_path / "no-init", TINY, config)
    tuned = train(images, holdout, tmp_path / "tuned", TINY, config, init=base.model)
    probe = holdout.float().div(255)[:, :, :32, :32]
    with torch.no_grad():
        assert torch.equal(base.model.encode(probe).mu, tuned.model.encode(probe).mu)
    for name, tensor in base.model.encoder.state_dict().items():
        assert torch.equal(tensor, tuned.model.encoder.state_dict()[name]), name
    # what it optimises: decode(mu) of the images it trains on
    assert holdout_psnr(tuned.model, images) > holdout_psnr(base.model, images) + 0.25
    assert all(entry["kl"] == 0 and entry["invariance"] == 0 for entry in tuned.history)
    # the run is tied to its starting model: another start is refused, the same one resumes
    other = train(images, holdout, tmp_path / "other", TINY, TrainConfig(epochs=1, batch_size=8, seed=5))
    with pytest.raises(BadCheckpoint, match="different settings"):
        train(images, holdout, tmp_path / "tuned", TINY, config, init=other.model)
    again = train(images, holdout, tmp_path / "tuned", TINY, config, init=base.model)
    assert again.model_id == tuned.model_id


def test_a_run_started_before_a_setting_existed_resumes_with_it_at_its_default(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    config = TrainConfig(epochs=1, batch_size=8, checkpoint_every=1, warmup_steps=1)
    out = tmp_path / "run"
    train(training_set.train[:8], training_set.holdout, out, TINY, config)
    state = out / "train_state" / "state.json"
    meta = json.loads(state.read_text())
    del meta["signature"]["train"]["decoder_only"]  # as a run of an earlier version wrote it
    state.write_text(json.dumps(meta))
    assert train(training_set.train[:8], training_set.holdout, out, TINY, config).steps == 1


def test_the_decoder_stage_can_add_the_adversarial_term_and_leaves_the_encoder_alone(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    images, holdout = training_set.train[:24], training_set.holdout
    base = train(
        images, holdout, tmp_path / "base", TINY, TrainConfig(epochs=1, batch_size=8, warmup_steps=1)
    )
    config = TrainConfig(
        epochs=2,
        batch_size=8,
        warmup_steps=1,
        decoder_only=True,
        adversarial_weight=0.5,
        adversarial_warmup_steps=2,
    )
    tuned = train(images, holdout, tmp_path / "gan", TINY, config, init=base.model)
    history = tuned.history
    assert [entry["adversarial"] > 0 and entry["discriminator"] > 0 for entry in history] == [
        False,
        False,
        True,
        True,
        True,
        True,
    ]
    for entry in history:
        expected = entry["reconstruction"] + config.adversarial_weight * entry["adversarial"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-5) and entry["kl"] == 0
    for name, tensor in base.model.encoder.state_dict().items():
        assert torch.equal(tensor, tuned.model.encoder.state_dict()[name]), name
    assert (tmp_path / "gan" / "train_state").is_dir()
    resumed = train(images, holdout, tmp_path / "gan", TINY, config, init=base.model)  # nothing left to do
    assert resumed.model_id == tuned.model_id and resumed.steps == len(history)


def test_the_encoder_stage_moves_the_latents_and_leaves_the_decoder_alone(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    images, holdout = training_set.train[:24], training_set.holdout
    contrast = {"invariance_weight": 3.0, "invariance_form": "head_ntxent", "invariance_temperature": 0.2}
    base = train(
        images,
        holdout,
        tmp_path / "base",
        TINY,
        TrainConfig(epochs=1, batch_size=8, warmup_steps=1, **contrast),
    )
    head = load_projection_head(tmp_path / "base", TINY.latent_dim)
    config = TrainConfig(
        epochs=2, batch_size=8, warmup_steps=1, encoder_only=True, black_corner_share=0.5, **contrast
    )
    with pytest.raises(ValueError, match="init"):
        train(images, holdout, tmp_path / "no-init", TINY, config)
    headless = replace(config, invariance_form="mu_infonce")
    with pytest.raises(ValueError, match="init_head"):  # a head with nothing to start is refused
        train(images, holdout, tmp_path / "headless", TINY, headless, init=base.model, init_head=head)
    tuned = train(images, holdout, tmp_path / "tuned", TINY, config, init=base.model, init_head=head)
    for name, tensor in base.model.decoder.state_dict().items():
        assert torch.equal(tensor, tuned.model.decoder.state_dict()[name]), name
    probe = holdout.float().div(255)[:, :, :32, :32]
    with torch.no_grad():
        assert not torch.allclose(base.model.encode(probe).mu, tuned.model.encode(probe).mu)
    assert tuned.model_id != base.model_id
    assert read_card(tmp_path / "tuned").same_latents_as == ()  # new latents: stores re-encode
    for entry in tuned.history:
        expected = entry["reconstruction"] + config.beta * entry["kl"] + 3.0 * entry["invariance"]
        assert entry["loss"] == pytest.approx(expected, rel=1e-5) and entry["invariance"] > 0
    # the starting head is part of the run: a fresh head is another run
    with pytest.raises(BadCheckpoint, match="different settings"):
        train(images, holdout, tmp_path / "tuned", TINY, config, init=base.model)


def test_a_projection_head_loads_only_from_a_run_that_saved_one(
    training_set: TrainingSet, tmp_path: Path
) -> None:
    plain = TrainConfig(epochs=1, batch_size=8, warmup_steps=1)
    train(training_set.train[:8], training_set.holdout, tmp_path / "plain", TINY, plain)
    with pytest.raises(BadCheckpoint, match="no projection head"):
        load_projection_head(tmp_path / "plain", TINY.latent_dim)
    with pytest.raises(BadCheckpoint, match="no training state"):
        load_projection_head(tmp_path / "missing", TINY.latent_dim)
    contrast = replace(plain, invariance_weight=1.0, invariance_form="head_ntxent")
    train(training_set.train[:8], training_set.holdout, tmp_path / "head", TINY, contrast)
    assert isinstance(load_projection_head(tmp_path / "head", TINY.latent_dim), torch.nn.Module)
    with pytest.raises(BadCheckpoint, match="does not fit"):
        load_projection_head(tmp_path / "head", TINY.latent_dim * 2)


@pytest.mark.parametrize(
    "override",
    [
        {"black_corner_share": -0.1},
        {"encoder_only": True, "decoder_only": True},
        {"encoder_only": True, "adversarial_weight": 1.0},
    ],
    ids=["corner-share", "both-stages", "encoder-gan"],
)
def test_bad_stage_settings_are_refused(override: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**override)
