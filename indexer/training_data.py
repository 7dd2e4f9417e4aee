"""Turns a photo folder into the uint8 tensors the trainer takes, with a held-out split by source."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentdex.errors import BadImage
from latentdex.indexer.load import load_for_model, load_image
from latentdex.indexer.parent_watch import die_with_parent, helper_context
from latentdex.indexer.scan import iter_image_files

GROUP_SEPARATOR = "__"
CROP_MARGIN = 1.25  # cached images are this much larger than the model input, for random crops


@dataclass
class TrainingSet:
    """Decoded images ready for `models.training.train`, and what could not be used."""

    train: torch.Tensor
    holdout: torch.Tensor
    failed: list[tuple[str, str]] = field(default_factory=list)

    def describe(self, root: Path) -> dict[str, object]:
        return {
            "folder": root.name,
            "train_images": len(self.train),
            "holdout_images": len(self.holdout),
            "failed_images": len(self.failed),
            "cached_size": int(self.train.shape[-1]) if len(self.train) else 0,
        }


def holdout_group(relative_path: Path) -> str:
    """The unit of the held-out split: crops named `<source>__<n>.png` stay with their source."""
    stem = relative_path.stem.split(GROUP_SEPARATOR, 1)[0]
    return str(relative_path.parent / stem)


def is_holdout(relative_path: Path, fraction: float) -> bool:
    """A deterministic, content-independent choice of about `fraction` of the groups."""
    digest = hashlib.sha256(holdout_group(relative_path).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_training_set(
    root: str | os.PathLike[str],
    image_size: int,
    *,
    holdout_fraction: float = 0.05,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> TrainingSet:
    """Decode every image under `root` to a square of `image_size * CROP_MARGIN` pixels.

    Images that fail to decode are listed in `failed` with the reason and skipped.
    Raises `NotADirectoryError` for a missing folder and `ValueError` if no image decodes.
    """
    base = Path(root)
    paths = list(iter_image_files(base))
    cached = round(image_size * CROP_MARGIN)
    workers = workers or os.cpu_count() or 1
    train: list[np.ndarray] = []
    holdout: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    context = helper_context([load_for_model.__module__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent) as pool:
        results = pool.map(_decode, [str(p) for p in paths], [cached] * len(paths), chunksize=64)
        for done, (path, (pixels, reason)) in enumerate(zip(paths, results, strict=True), start=1):
            relative = path.relative_to(base)
            if pixels is None:
                failed.append((str(relative), reason))
            elif is_holdout(relative, holdout_fraction):
                holdout.append(pixels)
            else:
                train.append(pixels)
            if on_progress is not None:
                on_progress(done, len(paths))
    if not train:
        raise ValueError(f"no usable training images under {root} ({len(failed)} failed)")
    return TrainingSet(train=_stack(train, cached), holdout=_stack(holdout, cached), failed=failed)


def jpeg_round_trip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode uint8 (N, 3, H, W) images as JPEG at `quality` and decode them again."""
    out = torch.empty_like(images)
    for i, pixels in enumerate(images.permute(0, 2, 3, 1).numpy()):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        out[i] = torch.from_numpy(load_image(buffer.getvalue()).pixels).permute(2, 0, 1)
    return out


def _decode(path: str, size: int) -> tuple[np.ndarray | None, str]:
    try:
        return load_for_model(path, size), ""
    except BadImage as exc:
        return None, exc.reason


def _stack(arrays: list[np.ndarray], size: int) -> torch.Tensor:
    if not arrays:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
