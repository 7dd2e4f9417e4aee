"""The index run: turns a photo folder into a store, re-encoding only what changed since the last run.

Stages: scan and detect changes (`indexer.changes`); apply moves, touches and deletions; decode the files
to encode in worker processes (`indexer.decoding`); encode them in batches; write each batch (rows and
latents in one SQL transaction, then the in-memory FAISS index), saving the vectors file every
`flush_every` batches and at the end. Last, unchanged images indexed before the store kept perceptual
hashes are decoded again for their hashes alone (no encoding). The `runs` table records each run's
counts and status.

Every write is idempotent and the catalog is the source of truth, so a run killed at any moment leaves a
store that the next open reconciles and the next run completes, with no duplicates. The first Ctrl-C
finishes the current batch, saves and marks the run interrupted; a second one stops at once.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
import torch

from latentdex.errors import LatentdexError, ModelMismatch, NotFound, StoreError
from latentdex.indexer.catalog import PictureMarks, printable_path, public_url
from latentdex.indexer.changes import ChangeSet, EncodeJob, ScannedFile, detect_changes, scan_folder
from latentdex.indexer.core_split import CoreSplit, measured_split, split_cores
from latentdex.indexer.decoding import DecodedFile, DecodeFn, DecodePool, decode_for_index
from latentdex.indexer.store import MANIFEST_FILE, ImageRecord, LatentStore, RunCounts
from latentdex.indexer.vectors import resolve_index_type
from latentdex.models.inference import LatentCodec

if TYPE_CHECKING:
    from latentdex.indexer.ray_engine import RayEngine

ProgressFn = Callable[["IndexProgress"], None]

UNUSABLE_LATENT = "the model produced an unusable latent (NaN, infinite or all zero)"
ENGINES = ("local", "ray")
# What a decoded file tells the catalog: the fields a `DecodedFile` and an `ImageRecord` share by name
# (stat, hash, pixel size, format, EXIF).
_FILE_FACTS = tuple(
    name for name in ImageRecord.__dataclass_fields__ if name in DecodedFile.__dataclass_fields__
)
_WRITE_CHUNK = 500  # rows per metadata-only transaction (moves, touches)
_WINDOW_PER_WORKER = 4  # files in flight per worker (at least): keeps each busy, few to redo after a crash


@dataclass(frozen=True)
class IndexOptions:
    """How to run. None for `index_type`/`metric`: keep a store's, or "flat"/"whitened" for a new one.

    `workers`: decode processes; `torch_threads`: encoder (and FAISS) threads in this process; None for
    both: share the cores by measured rates (`indexer.core_split`), else the rest of the cores go to the
    side not given. `flush_every`: batches between saves of the vectors
    file. `reencode`: re-encode every image, as needed when the store was built with another model.
    `database`: for a new store, keep its catalog in this PostgreSQL database (a SQLAlchemy URL); an
    existing store must already be there.
    """

    index_type: str | None = None
    metric: str | None = None
    max_index_bytes: int | None = None  # RAM budget for "auto" (0: drop the store's budget; None: keep it)
    reencode: bool = False
    workers: int | None = None
    torch_threads: int | None = None
    batch_size: int = 64
    flush_every: int = 16
    database: str | None = None
    engine: str = "local"  # "local": decode processes here; "ray": decode and encode on a Ray cluster
    ray_address: str | None = None  # None: a running Ray instance, or a local one started for the run
    model_dir: str | None = None  # where Ray workers load the model from (None: the shipped model)


@dataclass(frozen=True)
class IndexProgress:
    """Where a run is: `stage` is "scanning" (total unknown) or "indexing" (files decoded of `total`)."""

    stage: str
    done: int
    total: int | None


@dataclass
class IndexReport:
    """What a run did. `failures` lists every file not indexed, this run's and earlier ones still failing."""

    run_id: int
    counts: RunCounts
    failures: list[tuple[str, str]] = field(default_factory=list)  # (printable path, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # catalog rows left alone, with why
    seconds: float = 0.0
    images_per_second: float = 0.0  # files decoded (indexed or failed) per second of the whole run
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    split: CoreSplit | None = None  # how the cores were shared; None when nothing was decoded
    hashed: int = 0  # unchanged images given the perceptual hashes they lacked
    indexed_ids: list[int] = field(default_factory=list)  # images encoded by this run, new or changed


def index_folder(
    photos_dir: str | os.PathLike[str],
    store_dir: str | os.PathLike[str],
    codec: LatentCodec,
    options: IndexOptions | None = None,
    *,
    on_progress: ProgressFn | None = None,
    decode: DecodeFn = decode_for_index,
) -> IndexReport:
    """Index the images under `photos_dir` into the store at `store_dir` (created if there is none).

    `decode` is what the worker processes run per file (a module-level function; tests pass one that
    crashes). Raises, before any work: NotFound (no photos folder), StoreError (a store folder that
    cannot be written, a store of another metric, another writer), ModelMismatch (a store of another
    model, unless `options.reencode`).
    """
    options = options or IndexOptions()
    if options.batch_size < 1 or options.flush_every < 1 or (options.workers or 1) < 1:
        raise ValueError("batch_size, flush_every and workers must be at least 1")
    if options.engine not in ENGINES:
        raise ValueError(f"unknown engine {options.engine!r}; choose one of {', '.join(ENGINES)}")
    if options.engine == "ray" and importlib.util.find_spec("ray") is None:
        raise LatentdexError("the Ray engine needs Ray: pip install 'latentdex[ray]'")
    root = Path(photos_dir)
    if not root.is_dir():
        raise NotFound(f"the photos folder {root} does not exist or is not a folder")
    root = root.resolve()
    started = time.monotonic()
    with _open_or_create(Path(store_dir), codec, options) as store:
        notes = list(store.last_reconcile.notes) if store.last_reconcile else []
        if options.reencode:
            store.reset_model(codec.latent_space_id, codec.latent_dim)
        cores = os.cpu_count() or 1
        _, threads = split_cores(cores, options.workers, options.torch_threads)
        run = _Run(store, codec, options, root, on_progress, decode, cores)
        run_id = store.start_run(str(root))
        status = "interrupted"
        try:
            with _threads(threads), _first_sigint_stops() as stop:
                run.execute(stop)
            status = "interrupted" if stop.requested else "complete"
        finally:
            store.flush()
            store.finish_run(run_id, run.counts, status)
        if status == "complete":
            notes += store.settle_index_type(options.index_type, options.max_index_bytes)
    seconds = time.monotonic() - started
    return IndexReport(
        run_id=run_id,
        counts=run.counts,
        failures=run.failures,
        skipped=run.skipped,
        seconds=seconds,
        images_per_second=run.decoded / seconds if seconds > 0 else 0.0,
        interrupted=status == "interrupted",
        notes=notes + run.notes,
        split=run.split,
        hashed=run.hashed,
        indexed_ids=run.indexed_ids,
    )


class _Run:
    """One run's state: the counts so far, the failures, and the store writes."""

    def __init__(
        self,
        store: LatentStore,
        codec: LatentCodec,
        options: IndexOptions,
        root: Path,
        on_progress: ProgressFn | None,
        decode: DecodeFn,
        cores: int,
    ) -> None:
        self.store, self.codec, self.options, self.root = store, codec, options, root
        self.on_progress = on_progress or (lambda progress: None)
        self.decode, self.cores = decode, cores
        self.split: CoreSplit | None = None
        self.counts = RunCounts()
        self.failures: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.decoded = 0
        self.hashed = 0
        self.indexed_ids: list[int] = []
        self.notes: list[str] = []
        self._batches = 0

    def execute(self, stop: Callable[[], bool]) -> None:
        files = scan_folder(self.root, lambda n: self.on_progress(IndexProgress("scanning", n, None)))
        changes = detect_changes(self.root, files, self.store.entries(), self.store.model_id)
        self._apply_catalog_changes(changes)
        if not stop():
            self._encode(changes.encode, stop)
        if not stop():
            self._add_missing_hashes(stop)

    def _apply_catalog_changes(self, changes: ChangeSet) -> None:
        """Moves, touches, deletions and unreadable files: catalog work that needs no decoding."""
        moves = {move.image_id: move.file for move in changes.moved}
        touches = {touch.image_id: touch.file for touch in changes.touched}
        self._update_stat(moves, move=True)
        self._update_stat(touches, move=False)
        if changes.deleted:
            self.store.remove_images([entry.id for entry in changes.deleted])
        unreadable = [
            self._failed_record(item.file, item.image_id, item.file.error or "unreadable")
            for item in changes.unreadable
        ]
        for start in range(0, len(unreadable), _WRITE_CHUNK):
            self.store.mark_failed(unreadable[start : start + _WRITE_CHUNK])
        self.failures += [(record.display_path, record.failure_reason or "") for record in unreadable]
        self.failures += [
            (printable_path(e.path), e.failure_reason or "failed") for e in changes.still_failed
        ]
        self.skipped += [(printable_path(item.path), item.reason) for item in changes.skipped]
        self.counts.moved, self.counts.deleted = len(moves), len(changes.deleted)
        self.counts.unchanged = changes.unchanged + len(touches)
        self.counts.failed = len(unreadable) + len(changes.still_failed)

    def _update_stat(self, files: dict[int, ScannedFile], *, move: bool) -> None:
        """Give rows their file's new stat (and path, for a move), keeping their latents."""
        ids = list(files)
        for start in range(0, len(ids), _WRITE_CHUNK):
            records = []
            for record in self.store.get(ids[start : start + _WRITE_CHUNK]):
                file = files[record.id or 0]
                path = file.path if move else record.path
                records.append(replace(record, path=path, size=file.size, mtime_ns=file.mtime_ns))
            self.store.upsert_images(records, None)

    def _encode(self, jobs: Sequence[EncodeJob], stop: Callable[[], bool]) -> None:
        if not jobs:
            return
        batch_size = self.options.batch_size
        decoded: list[tuple[EncodeJob, DecodedFile]] = []
        failed: list[ImageRecord] = []
        self.on_progress(IndexProgress("indexing", 0, len(jobs)))
        paths = [str(self.root / job.file.path) for job in jobs]
        self.split = self._split(paths)
        with _threads(self.split.threads), self._decoder(len(jobs), self.split.workers) as pool:
            for index, result in pool.results(paths, stop):
                job = jobs[index]
                if result.failure is None:
                    decoded.append((job, result))
                else:
                    failed.append(self._failed_record(job.file, job.image_id, result.failure, result))
                self.decoded += 1
                if len(decoded) >= batch_size:
                    self._write_batch(decoded)
                    decoded = []
                if len(failed) >= batch_size:
                    self._write_failed(failed)
                    failed = []
                self.on_progress(IndexProgress("indexing", self.decoded, len(jobs)))
        self._write_batch(decoded)
        self._write_failed(failed)

    def _add_missing_hashes(self, stop: Callable[[], bool]) -> None:
        """Decode the unchanged images that have no perceptual hashes or alignment thumbnail (indexed by an
        earlier build) for those alone, on every core (or `options.workers`): their latents stay, so
        nothing is encoded. A file whose content no longer matches its row, or that no longer decodes, is
        left as it is."""
        missing = self.store.unhashed_images()
        if not missing:
            return
        self.on_progress(IndexProgress("hashing", 0, len(missing)))
        paths = [str(self.root / path) for _, path, _ in missing]
        workers = min(self.options.workers or self.cores, len(paths))
        window = max(_WINDOW_PER_WORKER * workers, 2 * self.options.batch_size)
        found: list[PictureMarks] = []
        done = 0
        with DecodePool(workers, self.decode, self.codec.image_size, window) as pool:
            for index, result in pool.results(paths, stop):
                image_id, _, content_hash = missing[index]
                hashes, thumbnail = result.perceptual_hashes, result.alignment_thumbnail
                if hashes is not None and thumbnail is not None and result.content_hash == content_hash:
                    found.append((image_id, content_hash, hashes, thumbnail))
                if len(found) >= self.options.batch_size:
                    self.hashed += self.store.add_perceptual_hashes(found)
                    found = []
                done += 1
                self.on_progress(IndexProgress("hashing", done, len(missing)))
        if found:
            self.hashed += self.store.add_perceptual_hashes(found)
        self.notes.append(
            f"perceptual hashes and thumbnails added to {self.hashed} of {len(missing)} images indexed "
            "without them"
        )

    def _split(self, paths: Sequence[str]) -> CoreSplit:
        fixed_workers, fixed_threads = self.options.workers, self.options.torch_threads
        if fixed_workers is not None or fixed_threads is not None or self.options.engine == "ray":
            return CoreSplit(*split_cores(self.cores, fixed_workers, fixed_threads))
        return measured_split(self.cores, self.codec, self.decode, paths, self.options.batch_size)

    def _decoder(self, jobs: int, workers: int) -> DecodePool | RayEngine:
        if self.options.engine == "ray":
            from latentdex.indexer.ray_engine import RayEngine  # Ray is heavy to import: only when asked for

            return RayEngine(self.codec, self.options.model_dir, self.options.ray_address)
        # The window lets workers run a batch ahead while this process encodes and writes the last one.
        window = max(_WINDOW_PER_WORKER * workers, 2 * self.options.batch_size)
        return DecodePool(min(workers, jobs), self.decode, self.codec.image_size, window)

    def _write_batch(self, items: list[tuple[EncodeJob, DecodedFile]]) -> None:
        """Encode a batch (unless its engine did) and store it: rows and latents in one transaction, then
        FAISS."""
        if not items:
            return
        if all(result.latent is not None for _, result in items):
            latents = np.stack([result.latent for _, result in items])
        else:
            latents = self.codec.encode(np.stack([result.pixels for _, result in items]))
        usable = np.isfinite(latents).all(axis=1) & latents.any(axis=1)
        good = [self._ok_record(job, result) for (job, result), ok in zip(items, usable, strict=True) if ok]
        kept = [result for (_, result), ok in zip(items, usable, strict=True) if ok]
        if good:
            hashes = [result.perceptual_hashes for result in kept]
            thumbnails = [result.alignment_thumbnail for result in kept]
            self.indexed_ids += self.store.upsert_images(good, latents[usable], hashes, thumbnails)
        self.counts.new += sum(1 for record in good if record.id is None)
        self.counts.changed += sum(1 for record in good if record.id is not None)
        bad = [
            self._failed_record(job.file, job.image_id, UNUSABLE_LATENT, result)
            for (job, result), ok in zip(items, usable, strict=True)
            if not ok
        ]
        self._write_failed(bad)
        self._batches += 1
        if self._batches % self.options.flush_every == 0:
            self.store.flush(refit=False)  # the run's last save refits the whitening, once

    def _write_failed(self, records: list[ImageRecord]) -> None:
        if records:
            self.store.mark_failed(records)
            self.counts.failed += len(records)
            self.failures += [(record.display_path, record.failure_reason or "") for record in records]

    def _ok_record(self, job: EncodeJob, result: DecodedFile) -> ImageRecord:
        facts = {name: getattr(result, name) for name in _FILE_FACTS}
        return ImageRecord(id=job.image_id, path=job.file.path, model_id=self.store.model_id, **facts)

    def _failed_record(
        self, file: ScannedFile, image_id: int | None, reason: str, result: DecodedFile | None = None
    ) -> ImageRecord:
        # The scan's stat, not the worker's: the next run compares the scan's, and a failure stays
        # failed (unretried) exactly while that stat does not change.
        return ImageRecord(
            id=image_id,
            path=file.path,
            size=file.size,
            mtime_ns=file.mtime_ns,
            content_hash=None if result is None else result.content_hash,
            failure_reason=reason,
        )


class _StopRequest:
    """Set by the first Ctrl-C; the run checks it between files."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def _first_sigint_stops() -> Iterator[_StopRequest]:
    """The first SIGINT asks the run to stop after its current batch; a second raises KeyboardInterrupt."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set in the main thread; Ctrl-C then stops at once
        return

    def handle(signum: int, frame: object) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _threads(torch_threads: int) -> Iterator[None]:
    """Torch and FAISS thread counts for the run (restored after), so they and the workers fit the cores."""
    before_torch, before_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(torch_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        faiss.omp_set_num_threads(before_faiss)


def _open_or_create(folder: Path, codec: LatentCodec, options: IndexOptions) -> LatentStore:
    _check_writable(folder)
    if not (folder / MANIFEST_FILE).exists():
        return LatentStore.create(
            folder,
            model_id=codec.latent_space_id,
            latent_dim=codec.latent_dim,
            metric=options.metric or "whitened",
            index_type=options.index_type or "flat",
            database=options.database,
            max_index_bytes=options.max_index_bytes or None,
        )
    store = LatentStore.open(folder)
    try:
        if options.database is not None and public_url(options.database) != store.catalog_name:
            raise StoreError(f"the store {folder} keeps its catalog in {store.catalog_name}, not there")
        if options.metric is not None and options.metric != store.metric:
            raise StoreError(
                f"the store {folder} uses the {store.metric} metric, not {options.metric}: "
                f"change it with `latentdex rebuild {folder} --metric {options.metric}`"
            )
        if options.index_type is not None:
            resolve_index_type(options.index_type, 0)  # ValueError for an unknown type, before any work
        mismatch = not codec.reads_latents_of(store.model_id) or store.latent_dim != codec.latent_dim
        if mismatch and not options.reencode:
            raise ModelMismatch(
                f"the store {folder} holds latents of model {store.model_id} ({store.latent_dim}-d), "
                f"not of {codec.model_id} ({codec.latent_dim}-d): re-encode the whole store with this "
                "model, or index into a new store"
            )
    except BaseException:
        store.close()
        raise
    return store


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StoreError(f"cannot write to the store folder {folder}: {exc.strerror or exc}") from exc
