"""Encode image files, decode their latents, and lay originals and reconstructions out on one sheet."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentdex.errors import BadImage
from latentdex.indexer.load import load_for_model
from latentdex.models.inference import LatentCodec
from latentdex.models.losses import psnr
from latentdex.models.sheets import image_grid


@dataclass
class ReconstructionReport:
    """PSNR per reconstructed file, and the files that could not be read with the reason."""

    model_id: str
    psnr_by_path: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def reconstruct_files(
    paths: list[Path], sheet_path: Path, model_dir: str | os.PathLike[str] | None = None, columns: int = 8
) -> ReconstructionReport:
    """Write a sheet with rows of originals and their reconstructions, `columns` images per row pair.

    Raises `BadImage` if none of `paths` can be decoded.
    """
    codec = LatentCodec.load(model_dir)
    report = ReconstructionReport(model_id=codec.model_id)
    originals, names = [], []
    for path in paths:
        try:
            originals.append(load_for_model(path, codec.image_size))
            names.append(str(path))
        except BadImage as exc:
            report.failed[str(path)] = exc.reason
    if not originals:
        raise BadImage("none of the given files could be decoded")
    batch = np.stack(originals)
    inputs, outputs = _as_tensor(batch), _as_tensor(codec.decode(codec.encode(batch)))
    report.psnr_by_path.update(zip(names, psnr(outputs, inputs).tolist(), strict=True))
    rows = []
    for start in range(0, len(batch), columns):
        rows += [inputs[start : start + columns], outputs[start : start + columns]]
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows).save(sheet_path)
    return report


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
