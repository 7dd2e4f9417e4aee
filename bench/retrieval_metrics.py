"""Scores for the retrieval benchmark: exact faiss search, hit rates, precision@k, chance, decode quality."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import torch

from latentdex.models import image_quality
from latentdex.models.inference import LatentCodec


def search(base: np.ndarray, queries: np.ndarray, k: int, normalise: bool) -> np.ndarray:
    """Ids (Q, k) of the k nearest `base` rows per query, exact L2 (cosine when `normalise`)."""
    base = np.array(base, dtype=np.float32, order="C")
    queries = np.array(queries, dtype=np.float32, order="C")
    if normalise:
        faiss.normalize_L2(base)
        if len(queries):
            faiss.normalize_L2(queries)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    if len(queries) == 0:
        return np.empty((0, k), np.int64)
    _, ids = index.search(queries, min(k, len(base)))
    return ids


def hit_rates(
    found: np.ndarray,
    targets: np.ndarray,
    kinds: np.ndarray,
    groups: np.ndarray,
    kind_names: Sequence[str],
    group_names: Sequence[str],
) -> dict[str, Any]:
    """Top-1 and top-k hit rates overall, per alteration kind and per source group.

    `found` (Q, k) are search results, `targets` (Q,) the row of each query's original, `kinds` and
    `groups` (Q,) its alteration kind and its original's source group; the per-kind and per-group
    sections have one entry for each of `kind_names` and `group_names` (n 0 and rates None if unused).
    """
    top1 = found[:, 0] == targets if len(found) else np.zeros(0, bool)
    topk = (found == targets[:, None]).any(axis=1) if len(found) else np.zeros(0, bool)

    def rates(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        return {
            "n": n,
            "top1": float(top1[mask].mean()) if n else None,
            "top10": float(topk[mask].mean()) if n else None,
        }

    everything = np.ones(len(targets), bool)
    return {
        "overall": rates(everything),
        "by_alteration": {kind: rates(kinds == kind) for kind in kind_names},
        "by_source": {group: rates(groups == group) for group in group_names},
    }


def category_precision(vectors: np.ndarray, labels: Sequence[str], k: int, normalise: bool) -> float | None:
    """Mean share of each item's k nearest other items that carry its label."""
    if len(vectors) < 2:
        return None
    found = search(vectors, vectors, k + 1, normalise)
    labels_array = np.array(labels, dtype=object)
    scores = []
    for i, row in enumerate(found):
        neighbours = [j for j in row if j != i and j >= 0][:k]
        scores.append(float(np.mean(labels_array[neighbours] == labels_array[i])))
    return float(np.mean(scores))


def chance_precision(labels: Sequence[str]) -> float | None:
    """Expected precision of random neighbours: mean over items of (same-label others) / (all others)."""
    if len(labels) < 2:
        return None
    counts = {label: labels.count(label) for label in set(labels)}
    return float(np.mean([(counts[label] - 1) / (len(labels) - 1) for label in labels]))


def reconstruction_quality(
    codec: LatentCodec,
    images: np.ndarray,
    latents: np.ndarray,
    groups: Sequence[str],
    group_names: Sequence[str],
    batch: int = 256,
) -> dict[str, Any]:
    """How decode(mu) compares with the model inputs, over all items ("all") and per group name.

    PSNR (dB) and SSIM are means per image; "sharpness" is the decodings' share of high-frequency
    energy over the originals' (1 = as sharp); "checkerboard" is the decodings' period-2 spectral peak
    over the originals' (about 1 = no grid; `models.image_quality.checkerboard_energy`).
    """
    scores: dict[str, list[np.ndarray]] = {name: [] for name in ("psnr", "ssim", "hf", "hf0", "cb", "cb0")}
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            target = torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).float().div(255)
            decoded = codec.model.decode(torch.from_numpy(latents[start : start + batch]))
            scores["psnr"].append(image_quality.psnr(decoded, target).numpy())
            scores["ssim"].append(image_quality.ssim(decoded, target).numpy())
            scores["hf"].append(image_quality.high_frequency_energy(decoded).numpy())
            scores["hf0"].append(image_quality.high_frequency_energy(target).numpy())
            scores["cb"].append(image_quality.checkerboard_energy(decoded).numpy())
            scores["cb0"].append(image_quality.checkerboard_energy(target).numpy())
    per_item = {name: np.concatenate(parts) for name, parts in scores.items()}
    labels = np.array(groups, dtype=object)

    def summary(mask: np.ndarray) -> dict[str, float] | None:
        if not mask.any():
            return None
        return {
            "psnr_db": float(per_item["psnr"][mask].mean()),
            "ssim": float(per_item["ssim"][mask].mean()),
            "sharpness": float(per_item["hf"][mask].mean() / per_item["hf0"][mask].mean()),
            "checkerboard": float(per_item["cb"][mask].mean() / per_item["cb0"][mask].mean()),
        }

    out: dict[str, Any] = {"all": summary(np.ones(len(labels), bool))}
    for group in group_names:
        out[group] = summary(labels == group)
    return out
