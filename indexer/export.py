"""Writes a store's indexed images (ids, paths, metadata, latents) to one .npz file; builds a store from one.

The file loads with `np.load(path, allow_pickle=False)`; one array per column, row i describing one image:
`ids` (int64), `paths` (bytes: the exact relative path, UTF-8 with surrogate escapes undone), `display_paths`
(text), `sizes`, `mtime_ns`, `content_hashes`, `widths`/`heights` (-1 unknown), `formats`, `capture_times`
(datetime64[s], NaT unknown), `camera_makes`, `camera_models` ("" unknown) and `latents` (float32, n x d);
plus 0-d arrays `format`, `version`, `model_id`, `latent_dim`, `metric`, `index_type`. Only ok images are
exported: failed ones have no latent.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from indexer.store import ImageRecord, LatentStore
from models.atomic_files import atomic_output
from models.errors import StoreError

EXPORT_FORMAT = "latentdex-export"
EXPORT_VERSION = 1
_CHUNK = 1000


def export_store(store: LatentStore, out: str | os.PathLike[str]) -> int:
    """Write every ok image of `store` to the .npz file `out` (replaced atomically); return how many."""
    ids = [entry.id for entry in store.entries() if entry.status == "ok"]
    records: list[ImageRecord] = []
    latents = [np.empty((0, store.latent_dim), np.float32)]
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        records += store.get(chunk)
        latents.append(store.latents(chunk))
    columns = {
        "format": np.array(EXPORT_FORMAT),
        "version": np.array(EXPORT_VERSION),
        "model_id": np.array(store.model_id),
        "latent_dim": np.array(store.latent_dim),
        "metric": np.array(store.metric),
        "index_type": np.array(store.index_type),
        "ids": np.array(ids, dtype=np.int64),
        "paths": np.array([r.path.encode("utf-8", "surrogateescape") for r in records], dtype=bytes),
        "display_paths": np.array([r.display_path for r in records], dtype=str),
        "sizes": np.array([r.size for r in records], dtype=np.int64),
        "mtime_ns": np.array([r.mtime_ns for r in records], dtype=np.int64),
        "content_hashes": np.array([r.content_hash or "" for r in records], dtype=str),
        "widths": np.array([-1 if r.width is None else r.width for r in records], dtype=np.int64),
        "heights": np.array([-1 if r.height is None else r.height for r in records], dtype=np.int64),
        "formats": np.array([r.format or "" for r in records], dtype=str),
        "capture_times": np.array([_to_datetime64(r.capture_time) for r in records], dtype="datetime64[s]"),
        "camera_makes": np.array([r.camera_make or "" for r in records], dtype=str),
        "camera_models": np.array([r.camera_model or "" for r in records], dtype=str),
        "latents": np.concatenate(latents),
    }
    out = Path(out)
    with atomic_output(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **columns)
    return len(ids)


def import_store(
    source: str | os.PathLike[str], folder: str | os.PathLike[str], index_type: str | None = None
) -> int:
    """Create a store in `folder` holding the images of the export `source`; return how many.

    Paths, metadata and latents are kept; ids are assigned anew. Raises StoreError for a file that is not
    a latentdex export (or a folder already holding a store).
    """
    try:
        data = np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{source} is not a readable .npz export: {exc}") from exc
    with data:
        if "format" not in data.files or str(data["format"]) != EXPORT_FORMAT:
            raise StoreError(f"{source} is not a latentdex export")
        if int(data["version"]) != EXPORT_VERSION:
            raise StoreError(f"{source} is export version {int(data['version'])}; this build reads 1")
        model_id, metric = str(data["model_id"]), str(data["metric"])
        columns = {name: data[name] for name in data.files}
    records = [_record(columns, row, model_id) for row in range(len(columns["ids"]))]
    with LatentStore.create(
        folder,
        model_id=model_id,
        latent_dim=int(columns["latent_dim"]),
        metric=metric,
        index_type=index_type or str(columns["index_type"]),
    ) as store:
        for start in range(0, len(records), _CHUNK):
            store.upsert_images(records[start : start + _CHUNK], columns["latents"][start : start + _CHUNK])
    return len(records)


def _record(columns: dict[str, np.ndarray], row: int, model_id: str) -> ImageRecord:
    def text(name: str) -> str | None:
        return str(columns[name][row]) or None

    def number(name: str) -> int | None:
        value = int(columns[name][row])
        return None if value < 0 else value

    capture = columns["capture_times"][row]
    return ImageRecord(
        path=bytes(columns["paths"][row]).decode("utf-8", "surrogateescape"),
        size=int(columns["sizes"][row]),
        mtime_ns=int(columns["mtime_ns"][row]),
        content_hash=text("content_hashes"),
        width=number("widths"),
        height=number("heights"),
        format=text("formats"),
        capture_time=None if np.isnat(capture) else capture.astype(datetime),
        camera_make=text("camera_makes"),
        camera_model=text("camera_models"),
        model_id=model_id,
    )


def _to_datetime64(value: datetime | None) -> np.datetime64:
    return np.datetime64("NaT") if value is None else np.datetime64(value.replace(tzinfo=None), "s")
