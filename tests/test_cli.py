"""Tests for the `latentdex` command line: typer's CliRunner in-process, a real subprocess for errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from latentdex.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model, read_card
from latentdex.service.cli import app

ImageFolderFactory = Callable[..., list[Path]]
runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, make_image_folder: ImageFolderFactory) -> list[Path]:
    return make_image_folder(tmp_path_factory.mktemp("photos"), sources=24, per_source=2, size=40)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """A model directory written by `latentdex train` with tiny settings."""
    out = tmp_path_factory.mktemp("cli") / "model"
    args = ["train", str(photos[0].parent), "--out", str(out), "--image-size", "32", "--latent-dim", "8"]
    args += ["--base-channels", "16", "--epochs", "2", "--batch-size", "8", "--checkpoint-every", "4"]
    args += ["--holdout-fraction", "0.2", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "46 training images, 2 held out, 0 failed" in result.stdout
    assert f"model {read_card(out).model_id} written to {out}" in result.stdout
    assert "10 steps" in result.stdout  # 46 // 8 = 5 steps per epoch, 2 epochs
    assert "training on cpu" in result.stdout  # --device auto, on a machine whose torch sees no GPU
    return out


def _latentdex(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from latentdex.service.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


HEAVY_MODULES = ("torch", "faiss", "sqlalchemy", "cv2", "latentdex.service.server", "latentdex.indexer.store")


def _modules_loaded_by(statement: str, modules: tuple[str, ...] = HEAVY_MODULES) -> list[str]:
    """Which of `modules` a fresh interpreter holds after running `statement`."""
    script = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.split()


def test_the_cli_and_the_client_start_without_torch_faiss_or_the_catalog() -> None:
    """Commands import what they use when they run: `--help`, a query to a server or `health` start in
    a fraction of a second instead of the two that torch and the engine take to load. An engineer's
    program that only imports the client loads none of them either."""
    assert _modules_loaded_by("import latentdex.service.cli") == []
    # nor gRPC: commands that never talk to a server (index, stats, train) do not load the client
    assert _modules_loaded_by("import latentdex.service.cli", ("grpc",)) == []
    assert _modules_loaded_by("import latentdex.service.client") == []
    # the check can fail: a command that runs loads what it needs
    loaded = _modules_loaded_by("from latentdex.service.cli import app\nimport latentdex.indexer.pipeline")
    assert {"torch", "faiss", "sqlalchemy", "latentdex.indexer.store"} <= set(loaded)
    assert _modules_loaded_by("import latentdex.service.client", ("grpc",)) == ["grpc"]


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "reconstruct", "model-info", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_train_writes_a_loadable_model_dir(trained: Path) -> None:
    assert (trained / CONFIG_FILE).is_file() and (trained / WEIGHTS_FILE).is_file()
    card = read_card(trained)
    assert card.config.image_size == 32 and card.config.latent_dim == 8
    assert (card.config.encoder_stem, card.config.decoder_upsampling) == ("strided", "nearest")
    assert card.config.channels == (16, 32, 64)
    assert card.training["steps"] == 10
    assert card.training["data"]["train_images"] == 46
    assert card.training["device"] == "cpu"
    assert sorted(p.name for p in (trained / "sheets").iterdir()) == [
        "step-0000004.png",
        "step-0000008.png",
        "step-0000010.png",
    ]


@pytest.mark.slow
def test_model_info_prints_the_card_as_json(trained: Path) -> None:
    result = runner.invoke(app, ["model-info", "--model", str(trained)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    card = read_card(trained)
    assert document["model_id"] == card.model_id
    assert document["config"]["channels"] == [16, 32, 64]
    assert document["parameters"] > 0
    assert document["training"]["steps"] == 10
    assert "train_config" not in document["training"]


@pytest.mark.slow
def test_reconstruct_writes_a_sheet(trained: Path, photos: list[Path], tmp_path: Path) -> None:
    sheet = tmp_path / "out" / "sheet.png"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    args = ["reconstruct", str(photos[0]), str(photos[5]), str(broken), "--out", str(sheet)]
    result = runner.invoke(app, [*args, "--model", str(trained)])
    assert result.exit_code == 0, result.output
    assert f"sheet written to {sheet} (model {read_card(trained).model_id})" in result.stdout
    assert sum(" dB  " in line for line in result.stdout.splitlines()) == 2
    assert f"failed: {broken}" in result.output
    with Image.open(sheet) as image:
        # Originals above reconstructions: two rows of two 32-pixel tiles with 2-pixel gaps.
        assert image.format == "PNG"
        assert image.size == (2 * 34 + 2, 2 * 34 + 2)


def test_train_rejects_an_unknown_loss(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--reconstruction", "l2"]
    )
    assert result.exit_code == 2
    assert "must be mse or l1_ssim" in result.output


@pytest.mark.slow
def test_bad_model_dir_exits_4_with_a_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _latentdex("model-info", "--model", str(empty))
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "config.json is missing" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_usage_error_exits_2_without_a_traceback() -> None:
    result = _latentdex("train")
    assert result.returncode == 2, result.stderr
    assert "Missing argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_refuses_a_device_it_cannot_train_on(tmp_path: Path, photos: list[Path]) -> None:
    base = ["train", str(photos[0].parent), "--out", str(tmp_path / "m"), "--image-size", "32"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device, message in (
        (f"cuda:{gpus}", f"sees {gpus} CUDA device(s)"),  # one past the last GPU, or the first where none
        ("tpu", "not a device"),
        ("meta", "training runs on cpu or cuda"),
    ):
        result = runner.invoke(app, [*base, "--device", device])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / "m").exists()


def test_train_refuses_an_unknown_architecture_or_invariance_form(tmp_path: Path, photos: list[Path]) -> None:
    base = ["train", str(photos[0].parent), "--out", str(tmp_path / "m"), "--image-size", "32"]
    for option, value in (("--encoder-stem", "dilated"), ("--invariance-form", "triplet")):
        result = runner.invoke(app, [*base, option, value])
        assert result.exit_code == 2 and option.strip("-").replace("-", "_") in result.output
        assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_decoder_only_from_a_model_keeps_its_encoder(
    trained: Path, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "tuned"
    args = ["train", str(photos[0].parent), "--out", str(out), "--init-from", str(trained), "--decoder-only"]
    args += ["--epochs", "1", "--batch-size", "8", "--holdout-fraction", "0.2", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (base, base_card), (tuned, tuned_card) = load_model(trained), load_model(out)
    assert tuned.config == base.config
    # the same latents: stores made with the starting model stay valid for this one
    assert tuned_card.same_latents_as == (base_card.model_id, *base_card.same_latents_as)
    for name, tensor in base.encoder.state_dict().items():
        assert torch.equal(tensor, tuned.encoder.state_dict()[name]), name
    assert any(
        not torch.equal(t, tuned.decoder.state_dict()[n]) for n, t in base.decoder.state_dict().items()
    )
    refused = runner.invoke(
        app, ["train", str(photos[0].parent), "--out", str(tmp_path / "x"), "--decoder-only"]
    )
    assert refused.exit_code == 2 and "--init-from" in refused.output


@pytest.mark.slow
def test_train_decoder_only_can_deepen_the_decoder_and_keep_the_latents(
    trained: Path, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "deeper"
    args = ["train", str(photos[0].parent), "--out", str(out), "--init-from", str(trained), "--decoder-only"]
    args += ["--decoder-blocks", "2", "--epochs", "1", "--batch-size", "8", "--holdout-fraction", "0.2"]
    result = runner.invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    (base, base_card), (deeper, deeper_card) = load_model(trained), load_model(out)
    assert deeper.config.decoder_blocks == 2 and base.config.decoder_blocks == 1
    assert deeper_card.same_latents_as == (base_card.model_id, *base_card.same_latents_as)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(deeper.encode(images).mu, base.encode(images).mu)
    flat = ["train", str(photos[0].parent), "--out", str(tmp_path / "x"), "--init-from", str(trained)]
    refused = runner.invoke(app, [*flat, "--decoder-blocks", "2"])
    assert refused.exit_code == 2 and "--decoder-only" in refused.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_encoder_only_moves_the_latents_under_the_models_decoder(
    trained: Path, photos: list[Path], tmp_path: Path
) -> None:
    def encoder_stage(out: Path, *extra: str) -> Result:
        args = [
            "train",
            str(photos[0].parent),
            "--out",
            str(out),
            "--init-from",
            str(trained),
            "--encoder-only",
        ]
        args += ["--epochs", "1", "--batch-size", "8", "--holdout-fraction", "0.2", "--threads", "1"]
        args += ["--invariance-weight", "1", "--black-corner-share", "0.5", *extra]
        return runner.invoke(app, args)

    first = encoder_stage(tmp_path / "tuned")
    assert first.exit_code == 0, first.output + repr(first.exception)
    (base, _), (tuned, tuned_card) = load_model(trained), load_model(tmp_path / "tuned")
    assert tuned_card.same_latents_as == ()  # new latents: stores made with the base model re-encode
    for name, tensor in base.decoder.state_dict().items():
        assert torch.equal(tensor, tuned.decoder.state_dict()[name]), name
    assert any(
        not torch.equal(t, tuned.encoder.state_dict()[n]) for n, t in base.encoder.state_dict().items()
    )
    # the head a run saved starts the next run's; a run without one is refused, as is no base model
    again = encoder_stage(tmp_path / "again", "--head-from", str(tmp_path / "tuned"))
    assert again.exit_code == 0, again.output + repr(again.exception)
    headless = encoder_stage(tmp_path / "x", "--head-from", str(trained))
    assert headless.exit_code == 2 and "no projection head" in headless.output
    bare = ["train", str(photos[0].parent), "--out", str(tmp_path / "y"), "--encoder-only"]
    refused = runner.invoke(app, bare)
    assert refused.exit_code == 2 and "--init-from" in refused.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
