"""The store: one folder holding the SQL catalog and the FAISS vectors, kept consistent by `LatentStore`.

A store folder holds `catalog.sqlite`, `vectors.faiss` and `manifest.json`. The catalog is the source of
truth: every row of status "ok" carries its latent, and the FAISS file is derived from those rows. Writes
commit the rows first and then change the in-memory index; `flush` saves the index atomically and records
in the catalog which file (sha256) and which write generation it holds. So a crash can only leave FAISS
behind the catalog, and `reconcile` (run on every writable open) catches it up: vectors without an ok row
are removed, rows written after the saved generation are re-added from their latents, and a vectors file
that is damaged or not the one last flushed is rebuilt from the catalog. That logic, and `verify`'s, lives
in `indexer.consistency`; the methods here take the lock, delegate, and save.

One process writes a store at a time (an advisory lock on the folder enforces it); any number may open it
read-only. Within a process, a lock serialises FAISS changes and searches, and SQL sessions are per call.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
from sqlalchemy import Select, bindparam, func, inspect, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from latentdex.atomic_files import write_bytes_atomic
from latentdex.errors import DimensionMismatch, ModelMismatch, NotFound, StoreError
from latentdex.indexer.catalog import (
    RECORD_FIELDS,
    Catalog,
    CatalogEntry,
    CatalogLocation,
    ImageRecord,
    ImageRow,
    PictureMarks,
    RunCounts,
    RunRecord,
    RunRow,
    add_perceptual_hashes,
    count_with_latent,
    display_path,
    drop_catalog_tables,
    finish_run,
    get_meta,
    holds_nothing,
    interrupt_running_runs,
    is_database_url,
    list_entries,
    list_runs,
    mark_for_reencode,
    path_key,
    printable_path,
    public_url,
    rows_by_id,
    set_meta,
    start_run,
    status_counts,
    to_record,
    unhashed_images,
    write_images,
)
from latentdex.indexer.consistency import (
    ReconcileReport,
    VectorSpec,
    VerifyReport,
    decode_latent,
    index_latents,
    manifest_problems,
    rebuild_vectors,
    reconcile_vectors,
    usable_latents,
    verify_store,
)
from latentdex.indexer.directions import DirectionBook
from latentdex.indexer.filters import glob_ids, matching_ids, page_of_ids, same_hash_groups
from latentdex.indexer.perceptual_hash import HASHES, from_stored
from latentdex.indexer.pixel_alignment import thumbnail_from_bytes
from latentdex.indexer.record_table import TABLE_COLUMNS, RecordTable, UnsupportedRecords
from latentdex.indexer.rerank_rows import RerankRows
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.vectors import (
    IVF_REFINE,
    VectorIndex,
    check_vectors,
    describe_choice,
    exact_search,
    prepare_vectors,
    rerank,
    resolve_index_type,
)
from latentdex.indexer.whitening import STORE_METRICS, Whitening, needs_fit
from latentdex.indexer.whitening import describe as describe_whitening

if TYPE_CHECKING:
    from latentdex.indexer.region_memory import OverlapMemory

__all__ = [
    "ImageRecord",
    "LatentStore",
    "Match",
    "ReconcileReport",
    "RunCounts",
    "SearchFilter",
    "StoreInfo",
    "VerifyReport",
]

FORMAT_VERSION = 1
CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
# IVF-PQ stores only: exact vectors by id (`indexer.rerank_rows`), one file per vector space (model and
# whitening, or metric): a new space gets a new file, so a reader of the old state never maps the new rows.
RERANK_GLOB = "rerank-*.f32"
MANIFEST_FILE = "manifest.json"
# A filtered search that HNSW or IVF-PQ answers with fewer than k matches is redone exactly over the
# admitted images' stored latents, when there are at most this many of them (more would be slow, and
# then the approximate search rarely comes up short).
EXACT_FALLBACK_MAX = 200_000
RECORD_CACHE_SIZE = 50_000  # records a read-only store keeps for repeated hits (~0.5 KB each)


def _hits_query(with_latents: bool) -> Select[Any]:
    """The ok rows among the expanding parameter `ids`, as plain columns; built once (statement cache)."""
    columns = [ImageRow.id, ImageRow.path_bytes, *(getattr(ImageRow, name) for name in RECORD_FIELDS)]
    if with_latents:
        columns.append(ImageRow.latent)
    return select(*columns).where(ImageRow.id.in_(bindparam("ids", expanding=True)), ImageRow.status == "ok")


_HITS, _HITS_WITH_LATENTS = _hits_query(False), _hits_query(True)
_CONTENT_HASHES = select(ImageRow.id, ImageRow.content_hash).where(
    ImageRow.id.in_(bindparam("ids", expanding=True)), ImageRow.status == "ok"
)
_TABLE_ROWS = (
    select(*(getattr(ImageRow, name) for name in TABLE_COLUMNS))
    .where(ImageRow.status == "ok")
    .order_by(ImageRow.id)
)
_THUMBNAILS = select(ImageRow.id, ImageRow.alignment_thumbnail).where(
    ImageRow.id.in_(bindparam("ids", expanding=True)), ImageRow.alignment_thumbnail.is_not(None)
)
TABLE_BATCH = 20_000  # rows read per batch while a record table is built
_ID_BATCH = 500  # ids per IN (...) query, below SQLite's bound-parameter limit


@dataclass(frozen=True)
class StoreInfo:
    """The manifest: what a reader needs to know about a store before opening its files."""

    format_version: int
    model_id: str
    latent_dim: int
    metric: str
    index_type: str
    image_count: int
    failed_count: int
    updated_at: datetime
    whitening: dict[str, Any] | None = None  # "whitened" stores: id, version, fitted_count, changes


@dataclass(frozen=True)
class Match:
    """A search hit. "cosine" and "whitened": distance = 1 - cosine similarity (in the whitened space for
    "whitened"); "l2": Euclidean distance, similarity 1/(1+d)."""

    id: int
    distance: float
    similarity: float


class LatentStore:
    """The only way in or out of a store folder; build one with `create` or `open`."""

    def __init__(
        self, folder: Path, catalog: Catalog, vectors: VectorIndex | None, *, read_only: bool
    ) -> None:
        self.folder = folder
        self.read_only = read_only
        self.last_reconcile: ReconcileReport | None = None  # what the open-time reconcile did
        self._catalog = catalog
        self._vectors = vectors
        self._lock = threading.RLock()
        self._dirty = False
        self._closed = False
        self._records: OrderedDict[int, ImageRecord] = OrderedDict()  # read-only stores: see `hits`
        self._records_lock = threading.Lock()
        self._record_table: RecordTable | None = None  # read-only stores: see `load_record_table`
        self._writer_lock: int | None = None
        self._rerank: RerankRows | None = None
        keys = (
            "model_id",
            "latent_dim",
            "metric",
            "index_type",
            "whitening",
            "whitening_changes",
            "max_index_bytes",
        )
        with catalog.reading() as session:
            meta = {key: get_meta(session, key) for key in keys}
        self.model_id, self.metric, self.index_type = meta["model_id"], meta["metric"], meta["index_type"]
        self.latent_dim = int(meta["latent_dim"] or 0)
        self.whitening = Whitening.from_text(meta["whitening"]) if meta["whitening"] else None
        self.whitening_changes = int(meta["whitening_changes"] or 0)
        self.max_index_bytes = int(meta["max_index_bytes"]) if meta["max_index_bytes"] else None
        self._whitening_unsaved = False
        self._directions: DirectionBook | None = None
        self._region_memory: OverlapMemory | None = None
        self._image_columns: frozenset[str] | None = None  # the catalog's image columns, read once

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        *,
        model_id: str,
        latent_dim: int,
        metric: str = "whitened",
        index_type: str = "flat",
        database: str | None = None,
        max_index_bytes: int | None = None,
    ) -> LatentStore:
        """Create an empty store in `folder` (made if missing). StoreError if a store is already there;
        ValueError for an unknown metric or index type.

        `database`: keep the catalog in this PostgreSQL database (a SQLAlchemy URL, one store per
        database) instead of `catalog.sqlite` in the folder; the manifest records it without its password.
        `max_index_bytes`: the RAM budget within which "auto" picks the index type (None: no budget).
        What a killed `create` leaves (files without a manifest, no image and no run) is cleared first.
        """
        if database is not None and not is_database_url(database):
            raise ValueError(
                f"database must be a URL such as postgresql+psycopg://user@host/db, got {database!r}"
            )
        folder = Path(folder)
        if latent_dim < 1 or metric not in STORE_METRICS:
            raise ValueError(f"need latent_dim >= 1 and a metric in {list(STORE_METRICS)}")
        if max_index_bytes is not None and max_index_bytes < 1:
            raise ValueError(f"max_index_bytes must be positive, got {max_index_bytes}")
        spec = VectorSpec(model_id, latent_dim, metric, index_type, max_index_bytes=max_index_bytes)
        vectors, notes = VectorIndex.build(
            index_type, latent_dim, spec.index_metric, np.empty(0), np.empty((0, latent_dim))
        )
        folder.mkdir(parents=True, exist_ok=True)
        writer_lock = _lock_folder(folder)
        location: CatalogLocation = database if database is not None else folder / CATALOG_FILE
        try:
            _clear_abandoned_create(folder, location)
            if any((folder / name).exists() for name in (MANIFEST_FILE, CATALOG_FILE, VECTORS_FILE)):
                raise StoreError(f"{folder} already holds a store (or part of one)")
            if database is not None and not holds_nothing(database):
                raise StoreError(f"{public_url(database)} already holds a store's catalog")
        except BaseException:
            os.close(writer_lock)
            raise
        meta = {
            "model_id": model_id,
            "latent_dim": str(latent_dim),
            "metric": metric,
            "index_type": index_type,
            "max_index_bytes": str(max_index_bytes or ""),
        }
        meta |= {"generation": "0", "vectors_generation": "0", "vectors_digest": ""}
        try:
            store = cls(folder, Catalog.create(location, meta), vectors, read_only=False)
        except BaseException:
            os.close(writer_lock)
            raise
        store._writer_lock = writer_lock
        store.last_reconcile = ReconcileReport(notes=notes)
        store.flush()
        return store

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, read_only: bool = False) -> LatentStore:
        """Open a store; unless `read_only`, reconcile it (see `last_reconcile`) and hold the writer lock.

        Raises StoreError for a missing folder, a folder that is not a store, an unsupported format version,
        another process writing it, or (read-only) a vectors file that must be rebuilt first.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreError(f"{folder} does not exist or is not a folder")
        manifest = _read_manifest(folder / MANIFEST_FILE)
        if manifest.get("format_version") != FORMAT_VERSION:
            found = manifest.get("format_version")
            raise StoreError(f"{folder} has store format {found}; this build reads {FORMAT_VERSION}")
        location = manifest.get("database") or folder / CATALOG_FILE
        store = cls(folder, Catalog.open(location, read_only=read_only), None, read_only=read_only)
        try:
            if not read_only:
                store._take_writer_lock()
            try:
                store._vectors = VectorIndex.load(folder / VECTORS_FILE, store._spec.index_metric)
                load_error = None
                if store._vectors.dim != store.latent_dim:
                    load_error = f"it holds {store._vectors.dim}-d vectors, the store {store.latent_dim}-d"
            except StoreError as exc:
                load_error = str(exc)
            if read_only and load_error:
                raise StoreError(f"the vectors need a rebuild ({load_error}): open the store writable once")
            if not read_only:
                with store._writing(changes_images=False) as session:
                    interrupt_running_runs(session)  # the writer lock is ours: their process died
                _remove_stale_temp_files(folder)  # left by a writer killed mid-save; ours now
                store.last_reconcile = store._reconcile(load_error)
            store._attach_rerank_rows()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Flush unsaved changes (writable stores) and release the files. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._dirty and not self.read_only:
                self.flush()
        finally:
            self._closed = True
            if self._rerank is not None:
                self._rerank.close()
            self._catalog.close()
            if self._writer_lock is not None:
                os.close(self._writer_lock)  # releases the flock

    def __enter__(self) -> LatentStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def info(self) -> StoreInfo:
        """The manifest as last flushed."""
        document = _read_manifest(self.folder / MANIFEST_FILE)
        document["updated_at"] = datetime.fromisoformat(document["updated_at"])
        document.setdefault("whitening", None)  # stores made before the whitened metric
        return StoreInfo(**{name: document[name] for name in StoreInfo.__dataclass_fields__})

    @property
    def vector_count(self) -> int:
        """How many vectors the loaded index holds (what a search can return)."""
        with self._lock:
            return self._vectors.ntotal

    @property
    def vector_kind(self) -> str:
        """The index type the vectors really have ("flat", "hnsw", "ivfpq"); `index_type` may be "auto"."""
        with self._lock:
            return self._vectors.kind

    @property
    def catalog_name(self) -> str:
        """The catalog's file path, or its database URL without the password."""
        return self._catalog.name

    @property
    def catalog_location(self) -> CatalogLocation:
        """Where the catalog is: the SQLite file in the folder, or a PostgreSQL URL."""
        return self._catalog.location

    def disk_bytes(self) -> int:
        """Bytes the store's files take on disk (catalog with its WAL, vectors, manifest)."""
        names = (CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", VECTORS_FILE, MANIFEST_FILE)
        total = sum((self.folder / name).stat().st_size for name in names if (self.folder / name).exists())
        rows = sum(path.stat().st_blocks * 512 for path in self.folder.glob(RERANK_GLOB))  # sparse files
        return total + rows

    # --- writing -------------------------------------------------------------------------------------

    def upsert_images(
        self,
        records: Sequence[ImageRecord],
        latents: np.ndarray | None,
        perceptual_hashes: Sequence[np.ndarray | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> list[int]:
        """Store `records` with their `latents` (one row each) in one transaction; return their ids.

        A record with an id updates that image; one without updates the image at its path or adds a new one.
        `perceptual_hashes` (per record, `indexer.perceptual_hash.perceptual_hashes`' array, or None) and
        alignment `thumbnails` (per record, `indexer.pixel_alignment.thumbnail_bytes`, or None) go with
        the latents; without them the rows' hashes and thumbnails become unknown.
        `latents=None` updates only the metadata of images that already have a latent. Raises
        DimensionMismatch, BadLatent (NaN, infinite, all-zero under "cosine"), ModelMismatch (a record's
        model_id is not the store's), NotFound (an unknown id), StoreError (read-only, or a path conflict).
        """
        for record in records:
            if record.model_id != self.model_id:
                raise ModelMismatch(
                    f"{record.display_path} was encoded by model {record.model_id!r}, but this store holds "
                    f"latents of {self.model_id!r}: re-encode it, or index into a store made for that model"
                )
        spec = self._spec
        vectors = None if latents is None else check_vectors(latents, self.latent_dim, spec.index_metric)
        if vectors is not None and len(vectors) != len(records):
            raise DimensionMismatch(f"{len(records)} records but {len(vectors)} latents")
        with self._lock:
            ids = self._write_rows(
                records, vectors, failed=False, perceptual_hashes=perceptual_hashes, thumbnails=thumbnails
            )
            if vectors is not None:
                self._vectors_add(np.array(ids, dtype=np.int64), spec.to_index(vectors))
        return ids

    def mark_failed(self, records: Sequence[ImageRecord]) -> list[int]:
        """Record images that could not be indexed (each needs a `failure_reason`); drops their vectors."""
        if any(not record.failure_reason for record in records):
            raise ValueError("a failed image needs a failure_reason")
        with self._lock:
            ids = self._write_rows(records, None, failed=True)
            self._vectors.remove(np.array(ids, dtype=np.int64))
        return ids

    def remove_images(self, ids: Sequence[int]) -> None:
        """Delete images and their vectors; NotFound (nothing deleted) if any id is unknown."""
        with self._lock:
            with self._writing() as session:
                self._count_changes(count_with_latent(session, ids=ids), session)
                for row in rows_by_id(session, ids):
                    session.delete(row)
            self._vectors.remove(np.array(ids, dtype=np.int64))

    def move_image(self, image_id: int, new_path: str) -> None:
        """Give an image a new path, keeping its id and vector; NotFound, StoreError if the path is taken."""
        with self._lock, self._writing() as session:
            row = rows_by_id(session, [image_id])[0]
            key = path_key(new_path)
            other = session.scalar(select(ImageRow.id).where(ImageRow.path_bytes == key))
            if other is not None and other != image_id:
                raise StoreError(f"{display_path(key)} already belongs to image {other}")
            row.path_bytes, row.path = key, display_path(key)

    def reset_model(self, model_id: str, latent_dim: int) -> int:
        """Make the store hold latents of another model: drop every vector and stored latent, record the
        new model and dimension, and turn the ok rows into failed rows awaiting re-encoding; return how many.

        Rows keep their ids and paths. Their size becomes `catalog.REENCODE_SIZE`, so any later index run
        re-encodes their files, also after this one was interrupted. One transaction, then a flush.
        """
        if latent_dim < 1:
            raise ValueError(f"need latent_dim >= 1, got {latent_dim}")
        with self._lock:
            with self._writing() as session:
                count = mark_for_reencode(session, f"awaiting re-encoding with model {model_id}")
                set_meta(session, "model_id", model_id)
                set_meta(session, "latent_dim", str(latent_dim))
                set_meta(session, "whitening", "")  # fitted again on the new latents
                set_meta(session, "whitening_changes", "0")
            self.model_id, self.latent_dim = model_id, latent_dim
            self.whitening, self.whitening_changes = None, 0
            self._vectors = rebuild_vectors(self._catalog, self._spec, ReconcileReport())
            self.flush()
        return count

    def flush(self, *, refit: bool = True) -> None:
        """Save the vectors atomically, record which generation they hold, and rewrite the manifest.

        A "whitened" store first refits its whitening when `whitening.needs_fit` says the library has
        changed enough since the last fit (and rebuilds its vectors in the new space); `refit=False`
        leaves that to a later flush (an indexing run's saves along the way: one refit at its end).
        """
        with self._lock:
            if refit and self.metric == "whitened" and self._whitening_due():
                self._refit_whitening()
            self._save()

    def _save(self) -> None:
        with self._lock:
            reranked = self._sync_rerank_rows()
        with self._lock, self._writing(changes_images=False) as session:
            digest = self._vectors.save(self.folder / VECTORS_FILE)
            generation = get_meta(session, "generation") or "0"
            set_meta(session, "vectors_digest", digest)
            set_meta(session, "vectors_generation", generation)
            set_meta(session, "rerank_generation", generation if reranked else "")
            set_meta(session, "vectors_whitening", self._spec.whitening_id)
            if self._whitening_unsaved:
                set_meta(session, "whitening", self.whitening.to_text() if self.whitening else "")
                set_meta(session, "whitening_changes", str(self.whitening_changes))
            counts = status_counts(session)
            manifest = {
                "format_version": FORMAT_VERSION,
                "model_id": self.model_id,
                "latent_dim": self.latent_dim,
                "metric": self.metric,
                "index_type": self.index_type,
                "image_count": counts.get("ok", 0),
                "failed_count": counts.get("failed", 0),
                "updated_at": datetime.now(UTC).isoformat(),
                "whitening": self._whitening_manifest(),
            }
            if is_database_url(self._catalog.location):
                manifest["database"] = self._catalog.name
        write_bytes_atomic(self.folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
        self._dirty = self._whitening_unsaved = False
        self._remove_other_rerank_files()

    def _sync_rerank_rows(self) -> bool:
        """Bring an IVF-PQ store's re-rank rows up to its vectors (a writer, before a save); remove them
        from a store of another kind. True when the store has them."""
        path = self.rerank_path
        if self._vectors.kind != "ivfpq":
            if self._rerank is not None:
                self._rerank.close()
                self._rerank = None
            return False
        ids, vectors, complete = self._vectors.take_unsynced()
        if self._rerank is None and not complete:
            self._rerank = self._current_rerank_rows(writable=True)
        if self._rerank is None or complete:
            if not complete:  # no usable file: every vector again, from the catalog
                ids, latents = self.all_latents()
                vectors = prepare_vectors(self._spec.to_index(latents), self._spec.index_metric)
            if self._rerank is not None:
                self._rerank.close()
            self._rerank = RerankRows.write_all(path, self.latent_dim, ids, vectors)
        else:
            self._rerank.write(ids, vectors)
            self._rerank.sync()
        return True

    @property
    def rerank_path(self) -> Path:
        """Where this store's re-rank rows live for its current vector space."""
        spec = self._spec
        return self.folder / f"rerank-{spec.model_id}-{spec.whitening_id or spec.metric}.f32"

    def _remove_other_rerank_files(self) -> None:
        """Delete re-rank rows of other vector spaces (after the save that moved past them)."""
        keep = self.rerank_path if self._rerank is not None else None
        for path in self.folder.glob(RERANK_GLOB):
            if path != keep:
                path.unlink(missing_ok=True)

    def _current_rerank_rows(self, *, writable: bool) -> RerankRows | None:
        """The re-rank rows file if the catalog says it holds the saved vectors' generation, else None."""
        with self._catalog.reading() as session:
            held, saved = get_meta(session, "rerank_generation"), get_meta(session, "vectors_generation")
        path = self.rerank_path
        if not held or held != saved or not path.exists():
            return None
        try:
            return RerankRows(path, self.latent_dim, writable=writable)
        except (OSError, ValueError):
            return None

    def _attach_rerank_rows(self) -> None:
        """Map an IVF-PQ store's re-rank rows at open; a writer makes them first when they are missing or
        stale (a reader then re-ranks from the catalog, as a store before them did)."""
        if self._rerank is not None or self._vectors is None or self._vectors.kind != "ivfpq":
            return
        self._rerank = self._current_rerank_rows(writable=not self.read_only)
        if self._rerank is None and not self.read_only:
            self._save()

    def _exact_rows(self, ids: np.ndarray, rows_file: RerankRows | None) -> tuple[np.ndarray, np.ndarray]:
        """(the ids of `ids` with an exact index-space row, the rows): the vectors added since the last
        save, then `rows_file`; the catalog is not read."""
        found_ids, found = self._vectors.unsynced.rows(ids)
        if rows_file is not None:
            rest = np.setdiff1d(ids, found_ids)
            if len(rest):
                file_ids, file_rows = rows_file.rows(rest)
                found_ids, found = np.concatenate([found_ids, file_ids]), np.concatenate([found, file_rows])
        return found_ids, found

    def _exact_vectors(self, ids: np.ndarray, spec: VectorSpec) -> tuple[np.ndarray, np.ndarray]:
        """(ids, exact index-space vectors) of `ids` for re-ranking: `_exact_rows`, and for the rest the
        stored latents from the catalog."""
        found_ids, found = self._exact_rows(ids, self._rerank)
        rest = np.setdiff1d(ids, found_ids)
        if len(rest):
            stored_ids, stored = self.all_latents(rest)
            found_ids = np.concatenate([found_ids, stored_ids])
            found = np.concatenate([found, spec.to_index(stored)])
        return found_ids, found.astype(np.float32)

    def start_run(self, root: str) -> int:
        """Record the start of an indexing run over `root`; return its id."""
        with self._writing(changes_images=False) as session:
            return start_run(session, root)

    def finish_run(self, run_id: int, counts: RunCounts, status: str = "complete") -> None:
        """Record a run's end, its counts and its status ("complete" or "interrupted"); NotFound."""
        with self._writing(changes_images=False) as session:
            finish_run(session, run_id, counts, status)

    # --- consistency ---------------------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Make the vectors match the catalog's ok rows and save them if anything changed."""
        if self.read_only:
            raise StoreError("the store is open read-only")
        return self._reconcile(None)

    def rebuild(
        self,
        index_type: str | None = None,
        metric: str | None = None,
        max_index_bytes: int | None = None,
    ) -> list[str]:
        """Rebuild the vectors from the stored latents, optionally with another index type, metric or
        RAM budget for "auto" (`max_index_bytes`, 0: none); return notes. A "whitened" store refits its
        whitening first (a store made before the whitened metric moves to it with `metric="whitened"`)."""
        if metric is not None and metric not in STORE_METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(STORE_METRICS)}")
        if max_index_bytes is not None and max_index_bytes < 0:
            raise ValueError(f"max_index_bytes must be >= 0, got {max_index_bytes}")
        with self._lock:
            report = ReconcileReport()
            with self._writing(changes_images=False) as session:
                if index_type is not None:
                    set_meta(session, "index_type", index_type)
                if metric is not None:
                    set_meta(session, "metric", metric)
                if max_index_bytes is not None:
                    set_meta(session, "max_index_bytes", str(max_index_bytes or ""))
            self.index_type = index_type or self.index_type
            if max_index_bytes is not None:
                self.max_index_bytes = max_index_bytes or None
            self.metric = metric or self.metric
            if self.metric == "whitened":
                report.notes += self._refit_whitening()
            else:
                self._vectors = rebuild_vectors(self._catalog, self._spec, report)
            self._save()
            return report.notes

    def settle_index_type(
        self, requested: str | None = None, max_index_bytes: int | None = None
    ) -> list[str]:
        """Rebuild when `requested` (or the RAM budget `max_index_bytes`, 0: none) differs from the
        store's, or when "auto" (or "ivfpq") now calls for another kind than the vectors have; return
        notes (empty when nothing changed)."""
        wanted = requested or self.index_type
        budget = self.max_index_bytes if max_index_bytes is None else (max_index_bytes or None)
        concrete, _ = resolve_index_type(wanted, self.count(), self.latent_dim, budget)
        if wanted != self.index_type or budget != self.max_index_bytes or concrete != self.vector_kind:
            kind = wanted if concrete == wanted else f"{wanted} ({concrete})"
            return [f"rebuilt the vectors as {kind}", *self.rebuild(wanted, max_index_bytes=budget or 0)]
        return []

    def index_choice(self) -> str:
        """Why the vectors are of the kind they are: the index type's rule, RAM estimate and budget."""
        return describe_choice(self.index_type, self.count(), self.latent_dim, self.max_index_bytes)

    def verify(self) -> VerifyReport:
        """Check catalog, vectors and manifest against each other without changing anything."""
        manifest = _read_manifest(self.folder / MANIFEST_FILE)
        with self._lock:
            if self._vectors.kind != "ivfpq":
                return verify_store(self._catalog, self._vectors, self._spec, manifest)
            rows_file = self._rerank or self._current_rerank_rows(writable=False)
            if rows_file is None:
                report = verify_store(self._catalog, self._vectors, self._spec, manifest)
                report.problems.append(
                    "the re-rank rows file is missing or stale: open the store writable once to rebuild it"
                )
                return report
            return verify_store(
                self._catalog,
                self._vectors,
                self._spec,
                manifest,
                lambda ids: self._exact_rows(ids, rows_file),
            )

    # --- reading -------------------------------------------------------------------------------------

    def search(self, latents: np.ndarray, k: int, where: SearchFilter | None = None) -> list[list[Match]]:
        """The `k` nearest images per query latent (fewer if the store has fewer), nearest first.

        `where`: only images whose metadata passes this filter; k of them come back whenever the store
        holds k that pass. Raises DimensionMismatch, BadLatent, ValueError for k < 1.
        """
        with self._lock:
            spec = self._spec
            approximate = self._vectors.kind == "ivfpq"
        queries = spec.to_index(check_vectors(latents, self.latent_dim, spec.index_metric))
        wanted = k * IVF_REFINE if approximate else k
        if where is None or where.is_empty:
            with self._lock:
                scores, ids = self._vectors.search(queries, wanted)
        else:
            scores, ids = self._filtered_search(queries, wanted, where, spec)
        if approximate:

            def indexed_vectors(wanted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return self._exact_vectors(wanted_ids, spec)

            scores, ids = rerank(queries, ids, indexed_vectors, k, spec.index_metric)
        results = []
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            hits = [(i, s) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            if spec.index_metric == "cosine":
                results.append([Match(i, max(0.0, 1.0 - score), score) for i, score in hits])
            else:  # FAISS gives squared L2
                distances = [(i, max(score, 0.0) ** 0.5) for i, score in hits]
                results.append([Match(i, d, 1.0 / (1.0 + d)) for i, d in distances])
        return results

    def _filtered_search(
        self, queries: np.ndarray, k: int, where: SearchFilter, spec: VectorSpec
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._catalog.reading() as session:
            allowed = matching_ids(session, where)
        with self._lock:
            scores, ids = self._vectors.search(queries, k, allowed)
        short = (ids >= 0).sum(axis=1) < min(k, len(allowed))
        if short.any() and len(allowed) <= EXACT_FALLBACK_MAX:
            stored_ids, stored = self.all_latents(allowed)
            exact_scores, exact_ids = exact_search(
                queries[short], stored_ids, spec.to_index(stored), k, spec.index_metric
            )
            scores[short], ids[short] = exact_scores, exact_ids
        return scores, ids

    def get(self, ids: Sequence[int]) -> list[ImageRecord]:
        """The records of `ids`, in that order; NotFound if any is unknown."""
        with self._catalog.reading() as session:
            return [to_record(row) for row in rows_by_id(session, ids)]

    def hits(
        self, ids: Sequence[int], *, with_latents: bool = True
    ) -> dict[int, tuple[ImageRecord, np.ndarray | None]]:
        """The record (and, `with_latents`, the stored latent) of each of `ids` that is an ok image.

        Ids without such a row are left out rather than raised: a reader's vectors file can be a save
        behind the catalog while an indexer runs, so a search may name an image just removed. One Core
        query of plain columns per 500 ids: on a search's path, ORM objects cost more than the search.
        """
        wanted = [int(i) for i in ids]
        if self.read_only and not with_latents:
            return self._cached_hits(wanted)
        return self._fetch_hits(wanted, with_latents)

    def content_hashes(self, ids: Sequence[int]) -> dict[int, str | None]:
        """The content hash of each of `ids` that is an ok image (None where it has none), without the
        rest of its record."""
        wanted = [int(i) for i in ids]
        out: dict[int, str | None] = {}
        with self._catalog.reading() as session:
            connection = session.connection()
            for start in range(0, len(wanted), _ID_BATCH):
                batch = wanted[start : start + _ID_BATCH]
                out.update((int(i), h) for i, h in connection.execute(_CONTENT_HASHES, {"ids": batch}).all())
        return out

    @property
    def record_table(self) -> RecordTable | None:
        """The records `hits` answers from without SQL, once `load_record_table` has read them."""
        return self._record_table

    def load_record_table(self) -> RecordTable:
        """Read every ok image's record into a `RecordTable` that `hits` answers from from then on.

        For a server's read-only store: its records are then a save behind the catalog while an indexer
        writes, as its vectors are (a new save makes the server open a new store). Ids the table lacks
        still come from the catalog. About 110 bytes per image plus its path; 100k images take ~1 s.
        """
        self._check_table_reader()
        try:
            with self._catalog.reading() as session:
                rows = session.connection().execution_options(yield_per=TABLE_BATCH).execute(_TABLE_ROWS)
                table = RecordTable.build(rows.partitions(TABLE_BATCH))
        except (UnsupportedRecords, SQLAlchemyError) as exc:
            raise StoreError(f"cannot hold the records in memory: {exc}") from exc
        self.adopt_record_table(table)
        return table

    def adopt_record_table(self, table: RecordTable) -> None:
        """Answer `hits` from `table`, read from an earlier state of this store (a server's new state
        until its own table is read): ids it lacks come from the catalog, and the records it holds are
        as they were at that state, as a reader's vectors can be a save behind."""
        self._check_table_reader()
        self._record_table = table

    def _check_table_reader(self) -> None:
        if not self.read_only:
            raise StoreError("a record table serves read-only stores; a writer's records change under it")

    def _cached_hits(self, wanted: list[int]) -> dict[int, tuple[ImageRecord, np.ndarray | None]]:
        """`hits` of a read-only store: the records it returned lately (a server asks for the same images
        again and again), then its record table, then the catalog. They can be a save behind the catalog
        while an indexer writes, as the reader's vectors are; a new save makes a server open a new store,
        and a new cache."""
        with self._records_lock:
            known = {i: self._records[i] for i in wanted if i in self._records}
            for image_id in known:
                self._records.move_to_end(image_id)
        missing = [i for i in wanted if i not in known]
        table = self._record_table
        built = table.records(missing) if table is not None and missing else {}
        fetched = {
            i: record
            for i, (record, _) in self._fetch_hits(
                [i for i in missing if i not in built], with_latents=False
            ).items()
        }
        if built or fetched:
            with self._records_lock:
                self._records.update(built)
                self._records.update(fetched)
                while len(self._records) > RECORD_CACHE_SIZE:
                    self._records.popitem(last=False)
        return {i: (record, None) for part in (known, built, fetched) for i, record in part.items()}

    def _fetch_hits(
        self, wanted: list[int], with_latents: bool
    ) -> dict[int, tuple[ImageRecord, np.ndarray | None]]:
        query = _HITS_WITH_LATENTS if with_latents else _HITS
        out: dict[int, tuple[ImageRecord, np.ndarray | None]] = {}
        if not wanted:
            return out
        with self._catalog.reading() as session:
            connection = session.connection()
            for start in range(0, len(wanted), _ID_BATCH):
                for row in connection.execute(query, {"ids": wanted[start : start + _ID_BATCH]}):
                    # by position: a Row's attribute lookup by name costs more than the query here
                    image_id, path_bytes, *fields = row
                    stored = fields.pop() if with_latents else None
                    latent = decode_latent(stored, self._spec) if stored else None
                    if with_latents and latent is None:
                        continue  # an unusable latent: reconcile reports it
                    path = path_bytes.decode("utf-8", "surrogateescape")
                    record = ImageRecord(
                        id=image_id, path=path, **dict(zip(RECORD_FIELDS, fields, strict=True))
                    )
                    out[image_id] = (record, latent)
        return out

    def get_by_path(self, path: str) -> ImageRecord:
        """The record at `path` (relative to the indexed root); NotFound if none."""
        with self._catalog.reading() as session:
            row = session.scalar(select(ImageRow).where(ImageRow.path_bytes == path_key(path)))
            if row is None:
                raise NotFound(f"no image at {printable_path(path)}")
            return to_record(row)

    def find_by_hash(self, content_hash: str) -> list[ImageRecord]:
        """Every image whose content has this sha256 (hex), by id; empty if none."""
        with self._catalog.reading() as session:
            query = select(ImageRow).where(ImageRow.content_hash == content_hash).order_by(ImageRow.id)
            return [to_record(row) for row in session.scalars(query)]

    def entries(self) -> list[CatalogEntry]:
        """Every image (ok and failed) as the plain entry change detection compares with the disk, by id."""
        with self._catalog.reading() as session:
            return list_entries(session)

    def latents(self, ids: Sequence[int]) -> np.ndarray:
        """The stored latents of `ids` as a float32 (n, d) array; NotFound for an unknown or failed image."""
        with self._catalog.reading() as session:
            rows = rows_by_id(session, ids)
        out = np.empty((len(rows), self.latent_dim), dtype=np.float32)
        for index, row in enumerate(rows):
            latent = None if row.latent is None else decode_latent(row.latent, self._spec)
            if latent is None:
                raise NotFound(f"image {row.id} has no usable latent (status {row.status})")
            out[index] = latent
        return out

    def select_ids(self, where: SearchFilter | None = None, path_globs: Sequence[str] = ()) -> np.ndarray:
        """Ids of the ok images passing `where` and, if given, matching any of the GLOB `path_globs`."""
        with self._catalog.reading() as session:
            ids = matching_ids(session, where or SearchFilter())
            if path_globs:
                ids = np.intersect1d(ids, glob_ids(session, path_globs))
        return ids

    def page_ids(self, where: SearchFilter | None, after_id: int, limit: int) -> tuple[np.ndarray, int]:
        """A page of ok image ids passing `where`, ascending from just above `after_id`, and the count of
        all that pass."""
        with self._catalog.reading() as session:
            return page_of_ids(session, where or SearchFilter(), after_id, limit)

    @property
    def distance_space(self) -> str:
        """What duplicate distances measure (`duplicate_vectors`): "whitened" (1 - cosine of fully whitened
        latents; searches compare them half-way whitened), "cosine" (of raw latents: a cosine store, or a
        whitened one that has not fitted its whitening yet) or "l2"."""
        if self.metric == "whitened":
            return "whitened" if self.whitening is not None else "cosine"
        return self.metric

    def same_hash_groups(self, where: SearchFilter | None = None) -> list[list[int]]:
        """Ids of the ok images (passing `where`) that share their file's content hash, one list per hash."""
        with self._catalog.reading() as session:
            return same_hash_groups(session, where or SearchFilter())

    def perceptual_hashes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((n, HASHES) uint64 pHashes per id, whether they are known), in the order of `ids`
        (`indexer.perceptual_hash`); unknown ids and images indexed before hashes were kept have none."""
        ids = np.asarray(ids, dtype=np.int64)
        hashes = np.zeros((len(ids), HASHES), np.uint64)
        known = np.zeros(len(ids), bool)
        if not self._keeps_perceptual_hashes():
            return hashes, known
        with self._catalog.reading() as session:
            query = select(ImageRow.id, ImageRow.perceptual_hash, ImageRow.region_hashes).where(
                ImageRow.perceptual_hash.is_not(None), ImageRow.region_hashes.is_not(None)
            )
            if len(ids) > _ID_BATCH * 8:  # most of a library: one scan beats thousands of IN (...) queries
                rows = session.execute(query).all()
            else:
                rows = [
                    row
                    for start in range(0, len(ids), _ID_BATCH)
                    for row in session.execute(
                        query.where(ImageRow.id.in_(ids[start : start + _ID_BATCH].tolist()))
                    )
                ]
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        row_ids = np.array([row[0] for row in rows], dtype=np.int64)
        slots = np.searchsorted(sorted_ids, row_ids)
        inside = slots < len(ids)
        inside[inside] = sorted_ids[slots[inside]] == row_ids[inside]
        chosen = [row for row, keep in zip(rows, inside.tolist(), strict=True) if keep]
        whole = np.array([row[1] for row in chosen], dtype=np.int64)
        positions = order[slots[inside]]
        hashes[positions] = from_stored(whole, [row[2] for row in chosen])
        known[positions] = True
        return hashes, known

    def unhashed_images(self) -> list[tuple[int, str, str | None]]:
        """(id, path, content hash) of the ok images without perceptual hashes: those indexed before the
        store kept them."""
        if not self._keeps_perceptual_hashes():
            return []
        with self._catalog.reading() as session:
            return unhashed_images(session)

    def add_perceptual_hashes(self, items: Sequence[PictureMarks]) -> int:
        """Store (id, content hash, hashes, alignment thumbnail) for images that still hold that file's
        content (an image whose file changed since is left for its re-encode); returns how many took
        them. Latents are untouched."""
        with self._lock, self._writing() as session:
            return add_perceptual_hashes(session, items)

    def hashed_count(self) -> int:
        """How many ok images have perceptual hashes (the rest are matched by their latent alone)."""
        if not self._keeps_perceptual_hashes():
            return 0
        with self._catalog.reading() as session:
            query = select(func.count()).where(
                ImageRow.status == "ok",
                ImageRow.perceptual_hash.is_not(None),
                ImageRow.region_hashes.is_not(None),
            )
            return int(session.scalar(query) or 0)

    def thumbnailed_count(self) -> int:
        """How many ok images have an alignment thumbnail (queries rank copies first among them)."""
        if not self._keeps_alignment_thumbnails():
            return 0
        with self._catalog.reading() as session:
            query = select(func.count()).where(
                ImageRow.status == "ok", ImageRow.alignment_thumbnail.is_not(None)
            )
            return int(session.scalar(query) or 0)

    def alignment_thumbnails(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The (SIDE, SIDE) uint8 alignment thumbnails (`indexer.pixel_alignment`) of those of `ids` that
        have one: images indexed before thumbnails were kept, or imported from an export without them,
        have none."""
        wanted = sorted({int(i) for i in ids})
        if not wanted or not self._keeps_alignment_thumbnails():
            return {}
        found: dict[int, np.ndarray] = {}
        with self._catalog.reading() as session:
            connection = session.connection()
            for start in range(0, len(wanted), _ID_BATCH):
                for image_id, data in connection.execute(
                    _THUMBNAILS, {"ids": wanted[start : start + _ID_BATCH]}
                ):
                    with suppress(ValueError):  # a damaged blob: that image is ranked by its latent
                        found[image_id] = thumbnail_from_bytes(data)
        return found

    def _keeps_alignment_thumbnails(self) -> bool:
        """Whether the catalog has the thumbnail column (a read-only one before revision 0005 lacks it)."""
        return "alignment_thumbnail" in self._catalog_image_columns()

    def _keeps_perceptual_hashes(self) -> bool:
        """Whether the catalog has the hash columns (one opened read-only before revision 0004 has not)."""
        return "region_hashes" in self._catalog_image_columns()

    def _catalog_image_columns(self) -> frozenset[str]:
        """The image table's columns as the catalog has them (a read-only opener does not migrate)."""
        if self._image_columns is None:
            columns = inspect(self._catalog.engine).get_columns(ImageRow.__tablename__)
            self._image_columns = frozenset(column["name"] for column in columns)
        return self._image_columns

    def duplicate_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(the ids of `ids` with a usable latent, their vectors in the space duplicates are measured in
        (`VectorSpec.to_duplicate_space`), and how they compare: "cosine" (vectors L2-normalised) or "l2")."""
        spec = self._spec
        found, latents = self.all_latents(ids)
        vectors = np.ascontiguousarray(spec.to_duplicate_space(latents), dtype=np.float32)
        if spec.index_metric == "cosine" and len(vectors):
            faiss.normalize_L2(vectors)
        return found, vectors, spec.index_metric

    def duplicate_distances(self, ids: Sequence[int]) -> np.ndarray:
        """The (n, n) distances between the stored latents of `ids` in the duplicates' space."""
        spec = self._spec
        vectors = spec.to_duplicate_space(self.latents(ids)).astype(np.float64)
        if spec.index_metric == "cosine":
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            distances = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0)
            distances[distances < 1e-9] = 0.0  # rounding of equal vectors
            return distances
        squared = (vectors**2).sum(axis=1)
        return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T, 0.0))

    def all_latents(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, latents) of every ok image (or of `ids`) with a usable stored latent, by id."""
        return usable_latents(self._catalog, ids, self._spec, ReconcileReport())

    @property
    def directions(self) -> DirectionBook:
        """The named latent directions kept in this store's catalog (writable even when the store is
        opened read-only: see `indexer.directions`)."""
        if self._directions is None:
            self._directions = DirectionBook(self._catalog)
        return self._directions

    @property
    def region_memory(self) -> OverlapMemory:
        """What the duplicate finder's region check found for pairs of files, kept in this store's
        catalog (writable even when the store is opened read-only: see `indexer.region_memory`)."""
        # imported here: it needs OpenCV, which opening a store for anything else should not load
        from latentdex.indexer.region_memory import OverlapMemory

        if self._region_memory is None:
            self._region_memory = OverlapMemory(self._catalog)
        return self._region_memory

    def whitening_summary(self) -> str:
        """One line on the whitening a "whitened" store searches with, and when it refits."""
        return describe_whitening(self.whitening, self.whitening_changes, self.vector_count, self.latent_dim)

    def count(self, status: str = "ok") -> int:
        """How many images have `status` ("ok" or "failed")."""
        with self._catalog.reading() as session:
            return session.scalar(select(func.count()).where(ImageRow.status == status)) or 0

    def indexed_root(self) -> Path | None:
        """The folder the last indexing run read (absolute), where stored paths are relative to."""
        with self._catalog.reading() as session:
            root = session.scalar(select(RunRow.root).order_by(RunRow.id.desc()).limit(1))
        return None if root is None else Path(root)

    def runs(self) -> list[RunRecord]:
        """Every indexing run, oldest first."""
        with self._catalog.reading() as session:
            return list_runs(session)

    # --- internals -----------------------------------------------------------------------------------

    def _writing(self, *, changes_images: bool = True) -> AbstractContextManager[Session]:
        if self._closed or self.read_only:
            raise StoreError("the store is closed" if self._closed else "the store is open read-only")
        self._dirty = self._dirty or changes_images
        return self._catalog.writing()

    def _write_rows(
        self,
        records: Sequence[ImageRecord],
        vectors: np.ndarray | None,
        *,
        failed: bool,
        perceptual_hashes: Sequence[np.ndarray | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> list[int]:
        try:
            with self._writing() as session:
                if failed:  # the rows that had a latent lose it
                    keys = [path_key(record.path) for record in records]
                    self._count_changes(count_with_latent(session, keys=keys), session)
                generation = int(get_meta(session, "generation") or 0) + 1
                blobs = None if vectors is None else [vector.tobytes() for vector in vectors]
                ids = write_images(
                    session,
                    records,
                    blobs,
                    failed=failed,
                    generation=generation,
                    perceptual_hashes=perceptual_hashes,
                    thumbnails=thumbnails,
                )
                if vectors is not None:
                    set_meta(session, "generation", str(generation))
                    self._count_changes(len(ids), session)
                return ids
        except IntegrityError as exc:
            raise StoreError(f"the catalog refused the change: {exc.orig}") from exc

    def _vectors_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        try:
            self._vectors.add(ids, vectors)
        except BaseException:
            # The rows are committed; catch FAISS up from them now rather than leave it silently behind.
            self._reconcile(None)
            raise

    @property
    def _spec(self) -> VectorSpec:
        return VectorSpec(
            self.model_id, self.latent_dim, self.metric, self.index_type, self.whitening, self.max_index_bytes
        )

    def _count_changes(self, count: int, session: Session) -> None:
        """Add `count` images added, changed or removed to the tally that decides a whitening refit, in
        the transaction that makes those changes."""
        if not count or self.metric != "whitened":
            return
        self.whitening_changes += count
        set_meta(session, "whitening_changes", str(self.whitening_changes))

    def _whitening_due(self) -> bool:
        return needs_fit(self._vectors.ntotal, self.latent_dim, self.whitening, self.whitening_changes)

    def _refit_whitening(self) -> list[str]:
        """Fit the whitening on every stored latent, record it, and rebuild the vectors in its space."""
        report = ReconcileReport()
        ids, latents = usable_latents(self._catalog, None, self._spec, report)
        if needs_fit(len(latents), self.latent_dim, None, 0):
            fitted: Whitening | None = Whitening.fit(latents)
        else:
            fitted = None
            report.notes.append(
                f"whitening not fitted: {len(latents)} latents are too few; cosine on mu until there are more"
            )
        # The transform is recorded by `_save`, in the transaction that records the vectors built with it.
        self.whitening, self.whitening_changes, self._whitening_unsaved = fitted, 0, True
        self._vectors = index_latents(self._spec, ids, latents, report)
        self._dirty = True
        return report.notes

    def _whitening_manifest(self) -> dict[str, Any] | None:
        if self.metric != "whitened":
            return None
        fitted = self.whitening
        return {
            "id": fitted.id if fitted is not None else None,
            "version": fitted.version if fitted is not None else None,
            "fitted_count": fitted.fitted_count if fitted is not None else 0,
            "changes_since_fit": self.whitening_changes,
        }

    def _reconcile(self, load_error: str | None) -> ReconcileReport:
        with self._lock:
            self._vectors, report = reconcile_vectors(self._catalog, self._vectors, self._spec, load_error)
            if self.read_only:
                return report
            # A writer killed between a flush's commit and its manifest write (or after recording failures,
            # which touch no vector) leaves the vectors right and only the manifest behind.
            stale_manifest = not report.changed and self._manifest_is_stale()
            if stale_manifest:
                report.notes.append(
                    "rewrote the manifest, which was behind the catalog (a save was cut short)"
                )
            if report.changed or stale_manifest:
                self._dirty = True
                self.flush()
        return report

    def _manifest_is_stale(self) -> bool:
        try:
            manifest = _read_manifest(self.folder / MANIFEST_FILE)
        except StoreError:
            return True
        with self._catalog.reading() as session:
            counts = status_counts(session)
        return bool(manifest_problems(manifest, self._spec, counts.get("ok", 0), counts.get("failed", 0)))

    def _take_writer_lock(self) -> None:
        self._writer_lock = _lock_folder(self.folder)


def _lock_folder(folder: Path) -> int:
    """Take the folder's advisory writer lock; return the descriptor that holds it. StoreError if taken."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StoreError(f"another writer has {folder} open; open it read_only to search") from exc
    return fd


def _clear_abandoned_create(folder: Path, location: CatalogLocation) -> None:
    """Remove what a `create` killed before its manifest left; call with the writer lock held.

    The manifest is the last file `create` writes, and nothing writes images or runs before `create`
    returns, so a catalog without a manifest that holds neither is an unfinished create, not data.
    """
    if is_database_url(location):
        if not (folder / MANIFEST_FILE).exists() and holds_nothing(location):
            drop_catalog_tables(location)
            (folder / VECTORS_FILE).unlink(missing_ok=True)
        return
    catalog = folder / CATALOG_FILE
    if (folder / MANIFEST_FILE).exists() or not catalog.exists() or not holds_nothing(catalog):
        return
    for name in (CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", VECTORS_FILE):
        (folder / name).unlink(missing_ok=True)
    for rows_file in folder.glob(RERANK_GLOB):
        rows_file.unlink()
    _remove_stale_temp_files(folder)


def _remove_stale_temp_files(folder: Path) -> None:
    """Delete the temporary files of atomic saves that never finished; call with the writer lock held."""
    for name in (VECTORS_FILE, MANIFEST_FILE):
        for leftover in folder.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _read_manifest(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StoreError(f"{path.parent} is not a latentdex store: {path.name} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} is not a readable store manifest: {exc}") from exc
    if not isinstance(document, dict):
        raise StoreError(f"{path} is not a store manifest")
    return document
