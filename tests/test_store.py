"""The store facade: round trips, search by catalog ids, validation, crash recovery, verify, threads."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from latentdex import atomic_files
from latentdex.errors import BadLatent, DimensionMismatch, ModelMismatch, NotFound, StoreError
from latentdex.indexer.catalog import RunCounts
from latentdex.indexer.perceptual_hash import HASHES
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.indexer.vectors import VectorIndex

DIM = 16
MODEL = "vae-test"


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> None:
    """A training job owns the other cores; FAISS must not spread over them."""
    faiss.omp_set_num_threads(1)


def records(n: int, start: int = 0, model_id: str = MODEL) -> list[ImageRecord]:
    return [
        ImageRecord(
            path=f"album/{i:04d}.jpg", size=1000 + i, mtime_ns=i, content_hash=f"{i:064x}", model_id=model_id
        )
        for i in range(start, start + n)
    ]


def latents(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def crash(store: LatentStore) -> None:
    """Drop the store as a killed process would: rows committed, vectors never flushed."""
    store._dirty = False
    store.close()


def nearest_ids(store: LatentStore, queries: np.ndarray, k: int = 1) -> list[list[int]]:
    return [[match.id for match in row] for row in store.search(queries, k)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LatentStore]:
    with LatentStore.create(tmp_path / "store", model_id=MODEL, latent_dim=DIM) as store:
        yield store


def test_create_open_close_round_trip_with_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(5), latents(5))
        store.mark_failed(
            [ImageRecord(path="bad.jpg", size=3, mtime_ns=1, content_hash=None, failure_reason="x")]
        )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["image_count"] == 5 and manifest["failed_count"] == 1
    assert (manifest["model_id"], manifest["latent_dim"], manifest["metric"]) == (MODEL, DIM, "whitened")
    with LatentStore.open(folder) as store:
        assert not store.last_reconcile.changed
        assert store.count() == 5 and store.count("failed") == 1
        assert store.info.index_type == "flat" and store.info.format_version == 1
        assert [r.path for r in store.get(ids)] == [r.path for r in records(5)]
        assert np.array_equal(store.latents(ids), latents(5))
        assert store.verify().ok
    with pytest.raises(StoreError, match="already holds"):
        LatentStore.create(folder, model_id=MODEL, latent_dim=DIM)


@pytest.mark.parametrize("setup", ["missing", "empty", "garbage", "future", "bad catalog"])
def test_opening_something_that_is_not_a_store_raises(tmp_path: Path, setup: str) -> None:
    folder = tmp_path / "x"
    if setup != "missing":
        folder.mkdir()
    if setup == "garbage":
        (folder / "manifest.json").write_text("{not json")
    if setup == "future":
        LatentStore.create(folder, model_id=MODEL, latent_dim=DIM).close()
        (folder / "manifest.json").write_text(json.dumps({"format_version": 99}))
    if setup == "bad catalog":
        LatentStore.create(folder, model_id=MODEL, latent_dim=DIM).close()
        (folder / "catalog.sqlite").write_bytes(b"this is not SQLite" * 300)
    with pytest.raises(StoreError):
        LatentStore.open(folder)


def test_search_returns_catalog_ids_exactly_with_flat(store: LatentStore) -> None:
    store.upsert_images(records(3, start=100), latents(3, seed=9))
    store.remove_images(store.upsert_images(records(1, start=200), latents(1, seed=8)))
    data = latents(40)
    ids = store.upsert_images(records(40), data)
    assert min(ids) > 4  # primary keys of this store, not 0..n-1 positions
    assert nearest_ids(store, data) == [[i] for i in ids]
    for row in store.search(data, 1):
        assert row[0].similarity == pytest.approx(1.0, abs=1e-5) and row[0].distance == pytest.approx(
            0, abs=1e-5
        )
    assert [r.path for r in store.get(ids)] == [r.path for r in records(40)]
    assert len(store.search(data[:1], k=100)[0]) == 43  # padding dropped, not returned as -1


def test_hnsw_recall_on_2000_vectors(tmp_path: Path) -> None:
    data = latents(2000)
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM, index_type="hnsw") as store:
        ids = np.array(store.upsert_images(records(2000), data))
        queries = data[:200] + 0.05 * latents(200, seed=1)
        normed = data / np.linalg.norm(data, axis=1, keepdims=True)
        truth = ids[np.argsort(-(queries @ normed.T), axis=1)[:, :10]]
        found = nearest_ids(store, queries, k=10)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth.tolist(), strict=True)])
        assert recall > 0.95


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_removed_images_never_come_back_also_after_reopen(tmp_path: Path, index_type: str) -> None:
    folder, data = tmp_path / "s", latents(120)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM, index_type=index_type) as store:
        ids = store.upsert_images(records(120), data)
        gone = ids[::6]
        store.remove_images(gone)
        assert not set(gone) & {i for row in nearest_ids(store, data, k=30) for i in row}
    with LatentStore.open(folder) as store:
        assert store.count() == 120 - len(gone) and store.verify().ok
        assert not set(gone) & {i for row in nearest_ids(store, data, k=30) for i in row}
        with pytest.raises(NotFound):
            store.get(gone[:1])


def test_bad_latents_raise_and_write_nothing(store: LatentStore) -> None:
    with pytest.raises(DimensionMismatch):
        store.upsert_images(records(2), latents(2)[:, :-1])
    with pytest.raises(DimensionMismatch):
        store.upsert_images(records(2), latents(3))
    bad = latents(2)
    bad[1, 3] = np.nan
    with pytest.raises(BadLatent):
        store.upsert_images(records(2), bad)
    bad[1, 3] = np.inf
    with pytest.raises(BadLatent):
        store.upsert_images(records(2), bad)
    with pytest.raises(DimensionMismatch):
        store.search(latents(1)[:, :4], 1)
    assert store.count() == 0 and store.verify().ok


@pytest.mark.parametrize("metric", ["whitened", "cosine"])
def test_a_zero_latent_has_no_direction_and_is_refused(tmp_path: Path, metric: str) -> None:
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM, metric=metric) as store:
        with pytest.raises(BadLatent, match="zero"):
            store.upsert_images(records(1), np.zeros((1, DIM), np.float32))
        assert store.count() == 0


def test_a_zero_latent_is_a_point_under_l2(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM, metric="l2") as store:
        store.upsert_images(records(1), np.zeros((1, DIM), np.float32))
        store.flush()
        assert store.count() == 1 and store.verify().ok


def test_latents_from_another_model_are_refused(store: LatentStore) -> None:
    with pytest.raises(ModelMismatch, match="vae-other"):
        store.upsert_images(records(1, model_id="vae-other"), latents(1))
    with pytest.raises(ModelMismatch):
        store.upsert_images(records(1, model_id=None), latents(1))
    assert store.count() == 0


def test_rows_committed_but_vectors_not_saved_are_readded(tmp_path: Path) -> None:
    folder, data = tmp_path / "s", latents(15)
    store = LatentStore.create(folder, model_id=MODEL, latent_dim=DIM)
    store.upsert_images(records(10), data[:10])
    store.flush()
    late = store.upsert_images(records(5, start=10), data[10:])
    changed = store.upsert_images(records(1, start=3), latents(1, seed=42))  # new content, same path
    crash(store)
    with LatentStore.open(folder) as store:
        report = store.last_reconcile
        assert (report.readded, report.removed, report.rebuilt) == (6, 0, False)
        assert nearest_ids(store, data[10:]) == [[i] for i in late]
        assert nearest_ids(store, latents(1, seed=42)) == [changed]
        assert store.verify().ok


KILLED_WRITER = """
import os, sys
import faiss, numpy as np
from latentdex.indexer.perceptual_hash import HASHES
from latentdex.indexer.store import ImageRecord, LatentStore
faiss.omp_set_num_threads(1)
rows = np.random.default_rng(0).normal(size=(15, {dim})).astype(np.float32)
recs = [ImageRecord(path=f"{{i}}.jpg", size=1, mtime_ns=1, content_hash=None, model_id="{model}")
        for i in range(15)]
store = LatentStore.create(sys.argv[1], model_id="{model}", latent_dim={dim})
store.upsert_images(recs[:10], rows[:10])
store.flush()
store.upsert_images(recs[10:], rows[10:])
os._exit(9)  # killed: no flush, no close, no atexit
"""


def test_a_killed_writer_loses_no_acknowledged_image(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    script = KILLED_WRITER.format(dim=DIM, model=MODEL)
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], cwd=Path(__file__).parents[1], timeout=60
    )
    assert done.returncode == 9
    with LatentStore.open(folder) as store:
        assert store.last_reconcile.readded == 5 and not store.last_reconcile.rebuilt
        assert store.count() == 15 and store.verify().ok
        rows = np.random.default_rng(0).normal(size=(15, DIM)).astype(np.float32)
        assert [store.get([row[0]])[0].path for row in nearest_ids(store, rows)] == [
            f"{i}.jpg" for i in range(15)
        ]


def test_vectors_whose_rows_are_gone_are_removed(tmp_path: Path) -> None:
    folder, data = tmp_path / "s", latents(10)
    store = LatentStore.create(folder, model_id=MODEL, latent_dim=DIM)
    ids = store.upsert_images(records(10), data)
    store.flush()
    store.remove_images(ids[:2])
    failed = ImageRecord(
        id=ids[2], path="album/0002.jpg", size=1, mtime_ns=1, content_hash=None, failure_reason="x"
    )
    store.mark_failed([failed])
    crash(store)
    with LatentStore.open(folder) as store:
        assert (store.last_reconcile.removed, store.last_reconcile.readded) == (3, 0)
        assert not set(ids[:3]) & {i for row in nearest_ids(store, data, k=10) for i in row}
        assert store.verify().ok


def test_a_vectors_file_written_behind_the_stores_back_is_rebuilt(tmp_path: Path) -> None:
    folder, data = tmp_path / "s", latents(10)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(10), data)
    index = VectorIndex.load(folder / "vectors.faiss", "cosine")
    index.add(np.array([999]), latents(1, seed=5))  # an id whose row was rolled back
    index.save(folder / "vectors.faiss")
    with LatentStore.open(folder, read_only=True) as reader:
        assert reader.verify().orphan_vectors == [999]
    with LatentStore.open(folder) as store:
        assert store.last_reconcile.rebuilt and "not the file the catalog" in store.last_reconcile.notes[0]
        assert 999 not in {i for row in nearest_ids(store, latents(1, seed=5), k=11) for i in row}
        assert nearest_ids(store, data) == [[i] for i in ids] and store.verify().ok


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_damaged_vectors_file_is_rebuilt_from_the_catalog(tmp_path: Path, damage: str) -> None:
    folder, data = tmp_path / "s", latents(20)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(20), data)
    path = folder / "vectors.faiss"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x00garbage" * 9 if damage == "garbage" else path.read_bytes()[:300])
    with pytest.raises(StoreError, match="rebuild"):
        LatentStore.open(folder, read_only=True)
    with LatentStore.open(folder) as store:
        report = store.last_reconcile
        assert report.rebuilt and report.readded == 20 and "rebuilt the vectors" in report.notes[0]
        assert nearest_ids(store, data) == [[i] for i in ids] and store.verify().ok
    assert VectorIndex.load(path, "cosine").ntotal == 20  # and saved again


def test_flush_leaves_no_temp_files_and_a_failed_save_keeps_the_old_file(
    store: LatentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert_images(records(4), latents(4))
    store.flush()
    assert not [p.name for p in store.folder.iterdir() if p.name.endswith(".tmp")]
    before = (store.folder / "vectors.faiss").read_bytes()

    def crash_before_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        Path(src).write_bytes(b"garbage")
        raise OSError("disk full")

    store.upsert_images(records(2, start=4), latents(2, seed=3))
    monkeypatch.setattr(atomic_files.os, "replace", crash_before_replace)
    with pytest.raises(OSError, match="disk full"):
        store.flush()
    monkeypatch.undo()
    assert (store.folder / "vectors.faiss").read_bytes() == before
    assert not [p.name for p in store.folder.iterdir() if p.name.endswith(".tmp")]


def test_verify_reports_each_kind_of_inconsistency(tmp_path: Path) -> None:
    folder, data = tmp_path / "s", latents(8)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(8), data)
    raw = faiss.read_index(str(folder / "vectors.faiss"))
    extra = data[:3] / np.linalg.norm(data[:3], axis=1, keepdims=True)
    raw.remove_ids(np.array([ids[0]], dtype=np.int64))  # missing
    raw.remove_ids(np.array([ids[1]], dtype=np.int64))
    raw.add_with_ids(np.roll(extra[1:2], 1, axis=1), np.array([ids[1]], dtype=np.int64))  # stale
    raw.add_with_ids(extra[2:3], np.array([ids[2]], dtype=np.int64))  # duplicate
    raw.add_with_ids(extra[2:3], np.array([555], dtype=np.int64))  # orphan
    faiss.write_index(raw, str(folder / "vectors.faiss"))
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE images SET latent = NULL WHERE id = ?", (ids[3],))
        db.execute("UPDATE images SET latent = x'0000' WHERE id = ?", (ids[4],))
        db.execute(
            "UPDATE images SET latent = ? WHERE id = ?", (np.full(DIM, np.nan, np.float32).tobytes(), ids[5])
        )
        db.execute("UPDATE images SET model_id = 'vae-other' WHERE id = ?", (ids[6],))
    db.close()
    with LatentStore.open(folder, read_only=True) as store:
        report = store.verify()
    assert not report.ok
    assert report.missing_vectors == [ids[0]]
    assert report.stale_vectors == [ids[1]]
    assert report.duplicate_vectors == [ids[2]]
    assert report.orphan_vectors == [555]
    assert report.rows_without_latent == [ids[3]]
    assert report.bad_latents == [ids[4], ids[5]]
    assert report.foreign_model_rows == [ids[6]]
    assert len(report.problems) == 7
    with LatentStore.open(folder) as store:  # reconcile repairs what the vectors can; rows stay reported
        assert sorted(store.last_reconcile.unrecoverable) == [ids[3], ids[4], ids[5]]
        after = store.verify()
        assert not (
            after.missing_vectors or after.stale_vectors or after.duplicate_vectors or after.orphan_vectors
        )
        assert after.rows_without_latent == [ids[3]] and after.foreign_model_rows == [ids[6]]


def test_manifest_counts_that_disagree_are_reported(store: LatentStore) -> None:
    store.upsert_images(records(3), latents(3))
    report = store.verify()
    assert report.problems == ["manifest says image_count = 0, the catalog 3"]
    store.flush()
    assert store.verify().ok


def test_non_utf8_path_round_trips(tmp_path: Path) -> None:
    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # what os.fsdecode gives on a UTF-8 system
    folder = tmp_path / "s"
    record = ImageRecord(path=name, size=1, mtime_ns=1, content_hash="00" * 32, model_id=MODEL)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        (image_id,) = store.upsert_images([record], latents(1))
        other = ImageRecord(path="café.jpg", size=1, mtime_ns=1, content_hash="11" * 32, model_id=MODEL)
        store.upsert_images([other], latents(1, 2))
    with LatentStore.open(folder) as store:
        found = store.get_by_path(name)
        assert found.id == image_id and found.path == name
        assert found.path.encode("utf-8", "surrogateescape") == b"caf\xe9.jpg"
        assert found.display_path == "caf\\xe9.jpg"
        assert store.get_by_path("café.jpg").id != image_id
        assert [r.id for r in store.find_by_hash("00" * 32)] == [image_id]


def test_catalog_is_in_wal_mode(store: LatentStore) -> None:
    with sqlite3.connect(store.folder / "catalog.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_searches_in_two_threads_while_one_thread_upserts(store: LatentStore) -> None:
    store.upsert_images(records(50), latents(50))
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                for row in store.search(latents(4, seed=7), k=5):
                    assert len(row) == 5 and all(match.id > 0 for match in row)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    readers = [threading.Thread(target=search) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for batch in range(10):
            store.upsert_images(records(5, start=50 + 5 * batch), latents(5, seed=100 + batch))
    finally:
        done.set()
        for reader in readers:
            reader.join(timeout=10)
    assert not errors and store.count() == 100
    report = store.verify()
    assert not (report.missing_vectors or report.orphan_vectors or report.duplicate_vectors)


def test_one_writer_at_a_time_and_readers_alongside(store: LatentStore) -> None:
    with pytest.raises(StoreError, match="another writer"):
        LatentStore.open(store.folder)
    with LatentStore.open(store.folder, read_only=True) as reader:
        assert reader.count() == 0
        with pytest.raises(StoreError, match="read-only"):
            reader.upsert_images(records(1), latents(1))


def test_move_mark_failed_and_lookups(store: LatentStore) -> None:
    ids = store.upsert_images(records(3), latents(3))
    store.move_image(ids[0], "elsewhere/0000.jpg")
    assert store.get([ids[0]])[0].path == "elsewhere/0000.jpg"
    assert nearest_ids(store, latents(3)[:1]) == [[ids[0]]]
    with pytest.raises(StoreError, match="already belongs"):
        store.move_image(ids[1], "album/0002.jpg")
    with pytest.raises(NotFound):
        store.get([ids[0], 12345])
    with pytest.raises(NotFound):
        store.get_by_path("album/0000.jpg")
    failed = records(1, start=2)[0]
    failed.failure_reason = "decoder crashed"
    assert store.mark_failed([failed]) == [ids[2]]
    assert store.count() == 2 and store.get([ids[2]])[0].status == "failed"
    with pytest.raises(NotFound, match="no usable latent"):
        store.latents([ids[2]])
    assert ids[2] not in {i for row in nearest_ids(store, latents(3), k=3) for i in row}


def test_runs_are_recorded_and_a_dead_run_is_marked_interrupted(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        done = store.start_run("/photos")
        store.finish_run(done, RunCounts(new=3, failed=1))
        store.start_run("/photos")  # the process dies here
    with LatentStore.open(folder) as store:
        runs = store.runs()
    assert [(r.status, r.counts.new) for r in runs] == [("complete", 3), ("interrupted", 0)]


def test_ivfpq_falls_back_to_flat_on_a_small_store_with_a_note(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM, index_type="ivfpq") as store:
        assert "ivfpq needs at least" in store.last_reconcile.notes[0]
        ids = store.upsert_images(records(5), latents(5))
        assert nearest_ids(store, latents(5)) == [[i] for i in ids]


@pytest.mark.parametrize("wanted", [10, 4_500])  # the IN (...) queries, and one scan for most of a library
def test_perceptual_hashes_come_back_by_id_and_a_metadata_update_keeps_them(
    store: LatentStore, wanted: int
) -> None:
    rng = np.random.default_rng(3)
    hashes: list[np.ndarray | None] = list(rng.integers(0, 2**64, (5_000, HASHES), dtype=np.uint64))
    hashes[7] = None  # an image whose hashes are unknown
    ids = np.array(store.upsert_images(records(5_000), latents(5_000), hashes))
    asked = np.sort(rng.choice(ids, wanted, replace=False))
    asked[-1] = ids.max() + 1  # an id the store does not hold
    found, known = store.perceptual_hashes(asked)
    by_id = dict(zip(ids.tolist(), hashes, strict=True))
    expected = [by_id.get(i) for i in asked.tolist()]
    assert known.tolist() == [h is not None for h in expected]
    assert (found[known] == np.stack([h for h in expected if h is not None])).all()
    store.upsert_images(records(3), None)  # metadata only: latents and hashes stay
    assert (store.perceptual_hashes(ids[:3])[0] == np.stack(hashes[:3])).all()
    assert (store.perceptual_hashes(ids[2::-1])[0] == np.stack(hashes[2::-1])).all()  # in the order asked
