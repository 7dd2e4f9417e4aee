"""Writes a store's images (ids, paths, metadata, latents) to Parquet or .npz; builds a store from one.

Parquet (`.parquet`), the layout embedding tools read (clip-retrieval's embedding-reader, autofaiss): one
row per image; columns `id` (int64), `path` (binary: the exact relative path bytes), `display_path`,
`size`, `mtime_ns`, `content_hash`, `width`, `height`, `format`, `capture_time` (timestamp[s], naive UTC),
`camera_make`, `camera_model` (null where unknown), `latent` (fixed-size list of float32) and
`perceptual_hashes` (fixed-size list of 6 uint64: the whole picture's pHash and its five regions', as
`indexer.perceptual_hash` orders them; null for an image indexed before hashes were kept) and
`alignment_thumbnail` (binary, 1,024 bytes: the 32-px grey thumbnail copies-first ranking aligns,
`indexer.pixel_alignment`; null where the image has none). The file's
key-value metadata holds `format`, `version`, `model_id`, `latent_dim`, `metric` and `index_type`. Written
in row groups of `ROW_GROUP` images, so a large store is never held in memory whole.

.npz (`.npz`): loads with `np.load(path, allow_pickle=False)`; one array per column: `ids`, `paths`
(bytes), `display_paths`, `sizes`, `mtime_ns`, `content_hashes`, `widths`/`heights` (-1 unknown),
`formats`, `capture_times` (datetime64[s], NaT unknown), `camera_makes`, `camera_models` ("" unknown),
`latents` (float32, n x d), `perceptual_hashes` (uint64, n x 6) and `has_perceptual_hashes` (bool),
`alignment_thumbnails` (uint8, n x 1024) and `has_alignment_thumbnails` (bool); plus 0-d arrays for the
facts Parquet keeps in its metadata.

Exports made before hashes or thumbnails were kept lack those columns; their images import without them.

Only ok images are exported: failed ones have no latent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from latentdex.atomic_files import atomic_output
from latentdex.errors import StoreError
from latentdex.indexer.perceptual_hash import HASHES
from latentdex.indexer.pixel_alignment import THUMBNAIL_BYTES
from latentdex.indexer.store import ImageRecord, LatentStore

EXPORT_FORMAT = "latentdex-export"
EXPORT_VERSION = 1
EXPORT_FORMATS = {".parquet": "parquet", ".npz": "npz"}
ROW_GROUP = 10_000
_CHUNK = 1000
_TEXT_COLUMNS = ("content_hash", "format", "camera_make", "camera_model")
Hashes = list[np.ndarray | None]  # per image: its (HASHES,) uint64 perceptual hashes, or None
Thumbnails = list[bytes | None]  # per image: its alignment thumbnail's bytes, or None
Chunk = tuple[list[int], list[ImageRecord], np.ndarray, Hashes, Thumbnails]  # ids, records, latents, ...
Batch = tuple[list[ImageRecord], np.ndarray, Hashes, Thumbnails]  # what an import reads


def export_format(out: str | os.PathLike[str], chosen: str | None = None) -> str:
    """ "parquet" or "npz": `chosen`, else by the file's suffix; ValueError for anything else."""
    if chosen is not None:
        if chosen not in EXPORT_FORMATS.values():
            raise ValueError(f"unknown export format {chosen!r}; choose parquet or npz")
        return chosen
    suffix = Path(out).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(
            f"cannot tell the format of {Path(out).name!r}: name it .parquet or .npz, or pass --format"
        )
    return EXPORT_FORMATS[suffix]


def export_store(store: LatentStore, out: str | os.PathLike[str], format: str | None = None) -> int:
    """Write every ok image of `store` to `out` (replaced atomically) as Parquet or .npz (see
    `export_format`); return how many. ValueError for an unknown format."""
    chosen = export_format(out, format)
    facts = {
        "format": EXPORT_FORMAT,
        "version": str(EXPORT_VERSION),
        "model_id": store.model_id,
        "latent_dim": str(store.latent_dim),
        "metric": store.metric,
        "index_type": store.index_type,
    }
    ids = [entry.id for entry in store.entries() if entry.status == "ok"]
    with atomic_output(Path(out)) as tmp:
        if chosen == "parquet":
            _write_parquet(tmp, facts, _chunks(store, ids, ROW_GROUP))
        else:
            _write_npz(tmp, facts, _chunks(store, ids, _CHUNK))
    return len(ids)


def import_store(
    source: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    index_type: str | None = None,
    max_index_bytes: int | None = None,
) -> int:
    """Create a store in `folder` holding the images of the export `source` (Parquet or .npz, told by
    its content); return how many. Paths, metadata and latents are kept; ids are assigned anew. The
    vectors end as the index type asked for (the export's by default) would have them at this size, as
    after `index`: "auto" over a million latents builds HNSW, not the flat index it starts with, or
    IVF-PQ when HNSW would not fit in `max_index_bytes`.

    Raises StoreError for a file that is not a latentdex export (or a folder already holding a store).
    """
    facts, batches = _read_parquet(source) if _is_parquet(source) else _read_npz(source)
    if facts.get("format") != EXPORT_FORMAT:
        raise StoreError(f"{source} is not a latentdex export")
    if facts.get("version") != str(EXPORT_VERSION):
        raise StoreError(
            f"{source} is export version {facts.get('version')}; this build reads {EXPORT_VERSION}"
        )
    model_id, latent_dim = facts["model_id"], int(facts["latent_dim"])
    count = 0
    with LatentStore.create(
        folder,
        model_id=model_id,
        latent_dim=latent_dim,
        metric=facts["metric"],
        index_type=index_type or facts["index_type"],
        max_index_bytes=max_index_bytes,
    ) as store:
        for records, latents, hashes, thumbnails in batches:
            for record in records:
                record.model_id = model_id
            for start in range(0, len(records), _CHUNK):
                end = start + _CHUNK
                store.upsert_images(
                    records[start:end], latents[start:end], hashes[start:end], thumbnails[start:end]
                )
            count += len(records)
        store.flush()
        store.settle_index_type()
    return count


# --- reading the store ---------------------------------------------------------------------------------


def _chunks(store: LatentStore, ids: list[int], size: int) -> Iterator[Chunk]:
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        hashes, known = store.perceptual_hashes(np.array(chunk, dtype=np.int64))
        kept: Hashes = [row if has else None for row, has in zip(hashes, known.tolist(), strict=True)]
        stored = store.alignment_thumbnails(chunk)
        thumbnails: Thumbnails = [stored[i].tobytes() if i in stored else None for i in chunk]
        yield chunk, store.get(chunk), store.latents(chunk), kept, thumbnails


# --- Parquet -------------------------------------------------------------------------------------------


def _parquet_schema(latent_dim: int, facts: dict[str, str]) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.int64()),
            ("path", pa.binary()),
            ("display_path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("content_hash", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("format", pa.string()),
            ("capture_time", pa.timestamp("s")),
            ("camera_make", pa.string()),
            ("camera_model", pa.string()),
            ("latent", pa.list_(pa.float32(), latent_dim)),
            ("perceptual_hashes", pa.list_(pa.uint64(), HASHES)),
            ("alignment_thumbnail", pa.binary()),
        ],
        metadata={key: value.encode() for key, value in facts.items()},
    )


def _write_parquet(path: Path, facts: dict[str, str], chunks: Iterator[Chunk]) -> None:
    latent_dim = int(facts["latent_dim"])
    schema = _parquet_schema(latent_dim, facts)
    with pq.ParquetWriter(str(path), schema) as writer:
        for ids, records, latents, hashes, thumbnails in chunks:
            flat = pa.array(np.ascontiguousarray(latents, np.float32).reshape(-1), pa.float32())
            columns = {
                "id": pa.array(ids, pa.int64()),
                "path": pa.array([r.path.encode("utf-8", "surrogateescape") for r in records], pa.binary()),
                "display_path": pa.array([r.display_path for r in records], pa.string()),
                "size": pa.array([r.size for r in records], pa.int64()),
                "mtime_ns": pa.array([r.mtime_ns for r in records], pa.int64()),
                "width": pa.array([r.width for r in records], pa.int32()),
                "height": pa.array([r.height for r in records], pa.int32()),
                "capture_time": pa.array([_naive(r.capture_time) for r in records], pa.timestamp("s")),
                "latent": pa.FixedSizeListArray.from_arrays(flat, latent_dim),
                "perceptual_hashes": pa.array(
                    [None if h is None else h.tolist() for h in hashes], pa.list_(pa.uint64(), HASHES)
                ),
                "alignment_thumbnail": pa.array(thumbnails, pa.binary()),
            }
            for name in _TEXT_COLUMNS:
                columns[name] = pa.array([getattr(r, name) for r in records], pa.string())
            writer.write_table(pa.table(columns, schema=schema))


def _is_parquet(source: str | os.PathLike[str]) -> bool:
    try:
        with open(source, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError as exc:
        raise StoreError(f"cannot read {source}: {exc}") from exc


def _read_parquet(source: str | os.PathLike[str]) -> tuple[dict[str, str], Iterator[Batch]]:
    try:
        parquet = pq.ParquetFile(str(source))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{source} is not a readable Parquet export: {exc}") from exc
    metadata = parquet.schema_arrow.metadata or {}
    facts = {key.decode(): value.decode() for key, value in metadata.items()}

    def batches() -> Iterator[Batch]:
        latent_dim = int(facts["latent_dim"])
        for batch in parquet.iter_batches(batch_size=_CHUNK):
            rows = batch.to_pydict()
            latent_column = batch.column("latent")
            latents = latent_column.values.to_numpy(zero_copy_only=False).reshape(-1, latent_dim)
            records = [
                ImageRecord(
                    path=rows["path"][i].decode("utf-8", "surrogateescape"),
                    size=rows["size"][i],
                    mtime_ns=rows["mtime_ns"][i],
                    content_hash=rows["content_hash"][i],
                    width=rows["width"][i],
                    height=rows["height"][i],
                    format=rows["format"][i],
                    capture_time=rows["capture_time"][i],
                    camera_make=rows["camera_make"][i],
                    camera_model=rows["camera_model"][i],
                )
                for i in range(batch.num_rows)
            ]
            stored = rows.get("perceptual_hashes", [None] * batch.num_rows)
            hashes: Hashes = [None if h is None else np.array(h, np.uint64) for h in stored]
            thumbnails: Thumbnails = rows.get("alignment_thumbnail", [None] * batch.num_rows)
            yield records, np.ascontiguousarray(latents, np.float32), hashes, _checked(thumbnails)

    return facts, batches()


# --- .npz ----------------------------------------------------------------------------------------------


def _write_npz(path: Path, facts: dict[str, str], chunks: Iterator[Chunk]) -> None:
    ids: list[int] = []
    records: list[ImageRecord] = []
    latents = [np.empty((0, int(facts["latent_dim"])), np.float32)]
    hashes: Hashes = []
    thumbnails: Thumbnails = []
    for chunk_ids, chunk_records, chunk_latents, chunk_hashes, chunk_thumbnails in chunks:
        ids += chunk_ids
        records += chunk_records
        latents.append(chunk_latents)
        hashes += chunk_hashes
        thumbnails += chunk_thumbnails
    columns = {
        "format": np.array(facts["format"]),
        "version": np.array(int(facts["version"])),
        "model_id": np.array(facts["model_id"]),
        "latent_dim": np.array(int(facts["latent_dim"])),
        "metric": np.array(facts["metric"]),
        "index_type": np.array(facts["index_type"]),
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
        "perceptual_hashes": np.array(
            [np.zeros(HASHES, np.uint64) if h is None else h for h in hashes], np.uint64
        ).reshape(-1, HASHES),
        "has_perceptual_hashes": np.array([h is not None for h in hashes], dtype=bool),
        "alignment_thumbnails": np.array(
            [
                np.zeros(THUMBNAIL_BYTES, np.uint8) if t is None else np.frombuffer(t, np.uint8)
                for t in thumbnails
            ],
            np.uint8,
        ).reshape(-1, THUMBNAIL_BYTES),
        "has_alignment_thumbnails": np.array([t is not None for t in thumbnails], dtype=bool),
    }
    with open(path, "wb") as handle:
        np.savez(handle, **columns)


def _read_npz(source: str | os.PathLike[str]) -> tuple[dict[str, str], Iterator[Batch]]:
    try:
        data = np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{source} is not a readable .npz export: {exc}") from exc
    with data:
        columns = {name: data[name] for name in data.files}
    facts_names = ("format", "version", "model_id", "latent_dim", "metric", "index_type")
    facts = {name: str(columns[name]) for name in facts_names if name in columns}
    if "ids" not in columns:
        return facts, iter(())
    records = [_npz_record(columns, row) for row in range(len(columns["ids"]))]
    hashes: Hashes = [None] * len(records)
    if "perceptual_hashes" in columns and "has_perceptual_hashes" in columns:
        stored, present = columns["perceptual_hashes"], columns["has_perceptual_hashes"]
        hashes = [row if has else None for row, has in zip(stored, present.tolist(), strict=True)]
    thumbnails: Thumbnails = [None] * len(records)
    if "alignment_thumbnails" in columns and "has_alignment_thumbnails" in columns:
        pixels, present = columns["alignment_thumbnails"], columns["has_alignment_thumbnails"]
        thumbnails = [
            row.tobytes() if has else None for row, has in zip(pixels, present.tolist(), strict=True)
        ]
    return facts, iter([(records, columns["latents"], hashes, _checked(thumbnails))])


def _checked(thumbnails: Thumbnails) -> Thumbnails:
    """Thumbnails of the right size; anything else (a damaged or foreign file) imports as none."""
    return [t if t is not None and len(t) == THUMBNAIL_BYTES else None for t in thumbnails]


def _npz_record(columns: dict[str, np.ndarray], row: int) -> ImageRecord:
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
    )


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=None)


def _to_datetime64(value: datetime | None) -> np.datetime64:
    return np.datetime64("NaT") if value is None else np.datetime64(value.replace(tzinfo=None), "s")
