"""Tests for models.checkpoint: real safetensors + config.json directories, good and broken."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from latentdex.errors import BadCheckpoint
from latentdex.models.checkpoint import (
    CONFIG_FILE,
    DEFAULT_MODEL_DIR,
    FORMAT_NAME,
    WEIGHTS_FILE,
    compute_model_id,
    load_model,
    read_card,
    save_model,
)
from latentdex.models.vae import VAE, VAEConfig

TINY = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4)


def _model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(TINY)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A valid model directory holding a tiny VAE."""
    directory = tmp_path / "model"
    save_model(_model(), directory, training={"steps": 3, "note": "test"})
    return directory


def _edit_config(directory: Path, edit: Callable[[dict], None]) -> None:
    document = json.loads((directory / CONFIG_FILE).read_text())
    edit(document)
    (directory / CONFIG_FILE).write_text(json.dumps(document))


def _rewrite_weights(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = load_file(str(directory / WEIGHTS_FILE))
    edit(state)
    save_file(state, str(directory / WEIGHTS_FILE))


# --- Round trip and ids ---------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs_and_id(saved: Path) -> None:
    original = _model().eval()
    loaded, card = load_model(saved)
    assert not loaded.training
    assert card.config == TINY
    assert card.model_id == compute_model_id(TINY, original.state_dict())
    assert card.model_id.startswith("vae-") and len(card.model_id) == len("vae-") + 16
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.encode(images).mu, original.encode(images).mu)
        z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
        assert torch.equal(loaded.decode(z), original.decode(z))
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_model_id_is_stable_across_saves_and_tracks_weights(tmp_path: Path) -> None:
    model = _model()
    first = save_model(model, tmp_path / "a")
    second = save_model(model, tmp_path / "b")
    assert first.model_id == second.model_id
    assert read_card(tmp_path / "a").model_id == read_card(tmp_path / "b").model_id == first.model_id
    with torch.no_grad():
        model.decoder.to_rgb.bias[0] += 1e-3
    changed = save_model(model, tmp_path / "c")
    assert changed.model_id != first.model_id
    assert load_model(tmp_path / "c")[1].model_id == changed.model_id
    assert save_model(_model(seed=1), tmp_path / "d").model_id != first.model_id


def test_model_id_depends_on_config() -> None:
    """Same tensors under a config that builds identically shaped weights still get another id."""
    state = _model().state_dict()
    fewer_groups = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=2)
    assert set(VAE(fewer_groups).state_dict()) == set(state)
    assert compute_model_id(TINY, state) != compute_model_id(fewer_groups, state)


def test_read_card_reads_config_without_weights(saved: Path) -> None:
    (saved / WEIGHTS_FILE).unlink()
    card = read_card(saved)
    assert card.config == TINY
    assert card.training == {"steps": 3, "note": "test"}
    document = json.loads((saved / CONFIG_FILE).read_text())
    assert document["format"] == FORMAT_NAME
    assert card.model_id == document["model_id"]


def test_save_leaves_no_temporary_files(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


# --- Broken checkpoints ---------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BadCheckpoint, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_missing_config(saved: Path) -> None:
    (saved / CONFIG_FILE).unlink()
    with pytest.raises(BadCheckpoint, match=r"config\.json is missing: not a latentdex model directory"):
        load_model(saved)


def test_config_not_json(saved: Path) -> None:
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(BadCheckpoint, match="is not valid JSON"):
        load_model(saved)


def test_config_not_utf8(saved: Path) -> None:
    (saved / CONFIG_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadCheckpoint, match="is not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize("value", ["something-else", None])
def test_wrong_format(saved: Path, value: str | None) -> None:
    _edit_config(saved, lambda d: d.update(format=value))
    with pytest.raises(BadCheckpoint, match=f"is not a {FORMAT_NAME} config"):
        load_model(saved)


def test_config_that_is_a_list(saved: Path) -> None:
    (saved / CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(BadCheckpoint, match=f"is not a {FORMAT_NAME} config"):
        load_model(saved)


def test_wrong_format_version(saved: Path) -> None:
    _edit_config(saved, lambda d: d.update(format_version=2))
    with pytest.raises(BadCheckpoint, match="has format version 2, this build reads 1"):
        load_model(saved)


def test_config_without_model_id(saved: Path) -> None:
    _edit_config(saved, lambda d: d.pop("model_id"))
    with pytest.raises(BadCheckpoint, match="lacks a config or model_id"):
        load_model(saved)


def test_config_with_unknown_field(saved: Path) -> None:
    _edit_config(saved, lambda d: d["config"].update(dropout=0.1))
    with pytest.raises(BadCheckpoint, match=r"unknown model config fields: \['dropout'\]"):
        load_model(saved)


def test_config_with_invalid_channels(saved: Path) -> None:
    _edit_config(saved, lambda d: d["config"].update(channels=16))
    with pytest.raises(BadCheckpoint, match="invalid model config"):
        read_card(saved)


def test_missing_weights(saved: Path) -> None:
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(BadCheckpoint, match=r"model\.safetensors is missing"):
        load_model(saved)


def test_weights_that_are_random_bytes(saved: Path) -> None:
    (saved / WEIGHTS_FILE).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BadCheckpoint, match="is not a readable safetensors file"):
        load_model(saved)


class _Canary:
    """Unpickling this creates a directory: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_pytorch_pickle_is_rejected_without_unpickling(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    state = dict(_model().state_dict())
    weights = saved / WEIGHTS_FILE
    torch.save({"state_dict": state, "canary": _Canary(marker)}, weights)
    with pytest.raises(BadCheckpoint, match="is not a readable safetensors file"):
        load_model(saved)
    assert not marker.exists(), "load_model unpickled the file"
    # The canary is live: unpickling the same bytes does create the marker. (A copy under a .pt
    # name, because torch.load hands files named *.safetensors to safetensors.)
    copy = tmp_path / "same-bytes.pt"
    copy.write_bytes(weights.read_bytes())
    torch.load(copy, weights_only=False)
    assert marker.is_dir()


def test_plain_state_dict_pickle_is_rejected(saved: Path) -> None:
    torch.save(_model().state_dict(), saved / WEIGHTS_FILE)
    with pytest.raises(BadCheckpoint, match="is not a readable safetensors file"):
        load_model(saved)


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_weights(saved: Path, keep: float) -> None:
    weights = saved / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BadCheckpoint, match="is not a readable safetensors file"):
        load_model(saved)


def test_empty_weights_file(saved: Path) -> None:
    (saved / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(BadCheckpoint, match="is not a readable safetensors file"):
        load_model(saved)


def test_weights_with_a_missing_tensor(saved: Path) -> None:
    _rewrite_weights(saved, lambda state: state.pop("decoder.to_rgb.bias"))
    with pytest.raises(BadCheckpoint, match=r"missing \['decoder.to_rgb.bias'\], extra \[\]"):
        load_model(saved)


def test_weights_with_an_extra_tensor(saved: Path) -> None:
    _rewrite_weights(saved, lambda state: state.update({"decoder.extra": torch.zeros(2)}))
    with pytest.raises(BadCheckpoint, match=r"missing \[\], extra \['decoder.extra'\]"):
        load_model(saved)


def test_weights_with_a_wrongly_shaped_tensor(saved: Path) -> None:
    _rewrite_weights(saved, lambda state: state.update({"decoder.to_rgb.bias": torch.zeros(4)}))
    with pytest.raises(
        BadCheckpoint, match=r"tensor decoder.to_rgb.bias has shape \(4,\), the config needs \(3,\)"
    ):
        load_model(saved)


def test_tampered_weights_do_not_match_the_id(saved: Path) -> None:
    def tamper(state: dict[str, torch.Tensor]) -> None:
        state["encoder.stem.weight"] = state["encoder.stem.weight"].clone()
        state["encoder.stem.weight"][0, 0, 0, 0] += 0.5

    _rewrite_weights(saved, tamper)
    with pytest.raises(BadCheckpoint, match=r"hashes to vae-[0-9a-f]{16}, but config\.json says"):
        load_model(saved)


def test_weights_from_another_model_do_not_match_the_id(saved: Path, tmp_path: Path) -> None:
    save_model(_model(seed=1), tmp_path / "other")
    (saved / WEIGHTS_FILE).write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(BadCheckpoint, match="hashes to"):
        load_model(saved)


# --- The shipped model ----------------------------------------------------------------------------


def test_shipped_default_model_loads() -> None:
    model, card = load_model()
    assert card.model_id == read_card(DEFAULT_MODEL_DIR).model_id
    size = card.config.image_size
    with torch.no_grad():
        decoded = model.decode(model.encode(torch.rand(1, 3, size, size)).mode())
    assert decoded.shape == (1, 3, size, size)


def test_saved_files_are_readable_like_any_other_file(saved: Path) -> None:
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert (saved / name).stat().st_mode & 0o777 == 0o644, name
    assert not list(saved.glob("*.tmp"))
