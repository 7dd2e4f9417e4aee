"""Model checkpoints on disk: safetensors weights + a JSON config, named by a content-derived model_id.

A model directory holds `model.safetensors` and `config.json`. Nothing here unpickles: a file that is not
a valid checkpoint raises `BadCheckpoint` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latentdex.atomic_files import atomic_output, write_text_atomic
from latentdex.errors import BadCheckpoint
from latentdex.models.vae import VAE, VAEConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "latentdex-vae"
FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


MODEL_ID = re.compile(r"vae-[0-9a-f]{16}")


@dataclass(frozen=True)
class ModelCard:
    """What travels with the weights: the architecture, the id, and free-form facts about training.

    `same_latents_as`: the models whose encoder this one shares unchanged (its decoder was retrained
    alone), nearest first. Their latents are this model's latents, so a store made with any of them needs
    no re-encoding; stores, rows and directions name the lineage's first model (`latent_space_id`).
    """

    config: VAEConfig
    model_id: str
    training: dict[str, Any] = field(default_factory=dict)
    same_latents_as: tuple[str, ...] = ()

    @property
    def latent_space_id(self) -> str:
        """The id that names this model's latents: the first model of its lineage."""
        return self.same_latents_as[-1] if self.same_latents_as else self.model_id

    def reads_latents_of(self, model_id: str) -> bool:
        """Whether latents made by `model_id` are this model's latents."""
        return model_id == self.model_id or model_id in self.same_latents_as


def compute_model_id(config: VAEConfig, state: Mapping[str, torch.Tensor]) -> str:
    """A stable id from the config and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(config.to_json().encode())
    _add_tensors(digest, state)
    return "vae-" + digest.hexdigest()[:16]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A stable content hash of tensors alone (a training aid's weights): names, dtypes, shapes, bytes."""
    digest = hashlib.sha256()
    _add_tensors(digest, state)
    return digest.hexdigest()[:16]


def _add_tensors(digest: Any, state: Mapping[str, torch.Tensor]) -> None:
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


def save_model(
    model: VAE,
    directory: str | os.PathLike[str],
    training: Mapping[str, Any] | None = None,
    same_latents_as: Sequence[str] = (),
) -> ModelCard:
    """Write `model` into `directory` (created if needed), atomically per file; return its card.
    `same_latents_as`: see `ModelCard` (only for a model whose encoder is that of those models)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    model_id = compute_model_id(model.config, state)
    card = ModelCard(model.config, model_id, dict(training or {}), _lineage(same_latents_as, model_id))
    with atomic_output(out / WEIGHTS_FILE) as tmp_weights:
        save_file(state, str(tmp_weights), metadata={"model_id": model_id, "format": FORMAT_NAME})
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "config": json.loads(model.config.to_json()),
        "training": card.training,
    }
    if card.same_latents_as:
        document["same_latents_as"] = list(card.same_latents_as)
    write_text_atomic(out / CONFIG_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return card


def read_card(directory: str | os.PathLike[str]) -> ModelCard:
    """Read and validate `config.json` of a model directory without loading the weights."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise BadCheckpoint(f"model directory {directory} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadCheckpoint(f"{path} is missing: not a latentdex model directory") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise BadCheckpoint(f"{path} is not a {FORMAT_NAME} config")
    if document.get("format_version") != FORMAT_VERSION:
        raise BadCheckpoint(
            f"{path} has format version {document.get('format_version')}, this build reads {FORMAT_VERSION}"
        )
    if not isinstance(document.get("config"), dict) or not isinstance(document.get("model_id"), str):
        raise BadCheckpoint(f"{path} lacks a config or model_id")
    config = VAEConfig.from_dict(document["config"])
    lineage = document.get("same_latents_as", [])
    if not isinstance(lineage, list) or not all(isinstance(i, str) for i in lineage):
        raise BadCheckpoint(f"{path}: same_latents_as must be a list of model ids")
    try:
        lineage = _lineage(lineage, document["model_id"])
    except ValueError as exc:
        raise BadCheckpoint(f"{path}: {exc}") from exc
    training = document.get("training") or {}
    return ModelCard(config=config, model_id=document["model_id"], training=training, same_latents_as=lineage)


def _lineage(ids: Sequence[str], model_id: str) -> tuple[str, ...]:
    """`ids` checked as a lineage: model ids, none repeated, without the model itself."""
    lineage = tuple(ids)
    for other in lineage:
        if not MODEL_ID.fullmatch(other):
            raise ValueError(f"{other!r} in same_latents_as is not a model id")
    if model_id in lineage or len(set(lineage)) != len(lineage):
        raise ValueError("same_latents_as repeats a model id")
    return lineage


def load_model(directory: str | os.PathLike[str] | None = None) -> tuple[VAE, ModelCard]:
    """Load a model directory (default: the shipped model) in eval mode; verify weights against the id.

    Raises `BadCheckpoint` if a file is missing, unreadable, not safetensors, has missing, extra or
    mis-shaped tensors, or does not hash to the model_id in its config.
    """
    directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
    card = read_card(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise BadCheckpoint(f"{weights_path} is missing")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadCheckpoint(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    model = VAE(card.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise BadCheckpoint(
            f"{weights_path} does not match its config: missing {missing[:5]}, extra {extra[:5]}"
        )
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise BadCheckpoint(
                f"{weights_path}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"the config needs {tuple(tensor.shape)}"
            )
    actual_id = compute_model_id(card.config, state)
    if actual_id != card.model_id:
        raise BadCheckpoint(
            f"{weights_path} hashes to {actual_id}, but {CONFIG_FILE} says {card.model_id}: "
            "the files do not belong together"
        )
    model.load_state_dict(state)
    model.eval()
    return model, card
