"""IVF-PQ stores re-rank from a memory-mapped file of exact vectors: lookups, durability and repair."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from latentdex.indexer import vectors
from latentdex.indexer.rerank_rows import PendingRows, RerankRows
from latentdex.indexer.store import RERANK_GLOB, ImageRecord, LatentStore
from latentdex.service.live_store import LiveStore

DIM = 16
COUNT = 2000


def records(start: int, count: int) -> list[ImageRecord]:
    return [
        ImageRecord(path=f"p/{i}.jpg", size=i, mtime_ns=i, content_hash=f"{i:064x}", model_id="vae-t")
        for i in range(start, start + count)
    ]


def latents(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)


@pytest.fixture
def ivf_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vectors, "IVF_MIN_TRAINING", 1000)
    folder = tmp_path / "store"
    with LatentStore.create(folder, model_id="vae-t", latent_dim=DIM, metric="cosine") as store:
        store.upsert_images(records(0, COUNT), latents(COUNT))
        store.rebuild(index_type="ivfpq")
        assert store.vector_kind == "ivfpq"
    return folder


def rows_file(folder: Path) -> Path:
    """The store's one re-rank rows file."""
    (path,) = folder.glob(RERANK_GLOB)
    return path


def exact_top(store: LatentStore, query: np.ndarray, k: int) -> list[int]:
    ids, stored = store.all_latents()
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    order = np.argsort(-(unit @ (query / np.linalg.norm(query))))
    return ids[order[:k]].tolist()


def test_rows_read_back_by_id_and_holes_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "rows.f32"
    ids = np.array([1, 2, 5, 40])
    rows = RerankRows.write_all(path, 4, ids, np.arange(16, dtype=np.float32).reshape(4, 4) + 1)
    found_ids, found = rows.rows(np.array([0, 1, 5, 7, 40, 41, 1000]))
    assert found_ids.tolist() == [1, 5, 40]
    assert found[:, 0].tolist() == [1.0, 9.0, 13.0]
    rows.write(np.array([100_000]), np.ones((1, 4), np.float32))
    rows.sync()
    assert rows.capacity > 100_000
    reader = RerankRows(path, 4, writable=False)
    assert reader.rows(np.array([100_000]))[0].tolist() == [100_000]
    with pytest.raises(PermissionError):
        reader.write(np.array([3]), np.ones((1, 4), np.float32))
    assert path.stat().st_blocks * 512 < path.stat().st_size  # holes take no disk


def test_a_file_of_partial_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.f32"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="not whole rows"):
        RerankRows(path, 4, writable=False)


def test_an_ivfpq_store_re_ranks_from_the_file_without_reading_the_catalog(
    ivf_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rows_file(ivf_store).exists()
    with LatentStore.open(ivf_store, read_only=True) as store:
        queries = latents(20, seed=1)
        expected = [exact_top(store, q, 10) for q in queries]

        def no_catalog(*args: object, **kwargs: object) -> None:
            raise AssertionError("re-ranking read latents from the catalog")

        monkeypatch.setattr(store, "all_latents", no_catalog)
        found = [[m.id for m in row] for row in store.search(queries, 10)]
        monkeypatch.undo()
        assert store.verify().ok
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)])
    assert recall > 0.9


def test_new_images_reach_the_file_at_the_next_save(ivf_store: Path) -> None:
    with LatentStore.open(ivf_store) as store:
        added = latents(50, seed=2)
        store.upsert_images(records(COUNT, 50), added)
        newest = store.get_by_path(f"p/{COUNT + 49}.jpg").id
        assert store.search(added[-1:], 1)[0][0].id == newest  # before the save: from memory
        store.flush()
    with LatentStore.open(ivf_store, read_only=True) as store:
        rows = RerankRows(rows_file(ivf_store), DIM, writable=False)
        assert newest in rows.rows(np.array([newest]))[0].tolist()
        assert store.search(added[-1:], 1)[0][0].id == newest
        assert store.verify().ok


def test_a_stale_or_damaged_file_is_rebuilt_by_the_next_writer(ivf_store: Path) -> None:
    with sqlite3.connect(ivf_store / "catalog.sqlite") as db:  # as if a save died before recording it
        db.execute("UPDATE store_meta SET value = '' WHERE key = 'rerank_generation'")
    with LatentStore.open(ivf_store, read_only=True) as reader:
        assert not reader.verify().ok  # a reader cannot repair: it says so, and re-ranks from the catalog
        assert len(reader.search(latents(1, seed=3), 10)[0]) == 10
    with LatentStore.open(ivf_store) as writer:
        assert writer.verify().ok
    rows_file(ivf_store).write_bytes(b"\1" * 7)
    with LatentStore.open(ivf_store) as writer:
        assert writer.verify().ok


def test_verify_finds_a_row_that_differs_from_its_latent(ivf_store: Path) -> None:
    rows = np.memmap(rows_file(ivf_store), np.float32, "r+")
    rows[5 * DIM : 6 * DIM] = 1.0
    rows.flush()
    del rows
    with LatentStore.open(ivf_store, read_only=True) as store:
        report = store.verify()
    assert not report.ok and any("re-rank rows" in line for line in report.problems)


def test_leaving_ivfpq_removes_the_file(ivf_store: Path) -> None:
    with LatentStore.open(ivf_store) as store:
        store.rebuild(index_type="flat")
    assert list(ivf_store.glob(RERANK_GLOB)) == []


def test_a_new_vector_space_gets_a_new_file_and_readers_of_the_old_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whitening refit rewrites every row: until the save that records it, a reader of the old state
    must still find the old rows, so the new ones go to a file of their own."""
    monkeypatch.setattr(vectors, "IVF_MIN_TRAINING", 1000)
    folder = tmp_path / "store"
    with LatentStore.create(folder, model_id="vae-t", latent_dim=DIM) as store:  # whitened
        store.upsert_images(records(0, COUNT), latents(COUNT))
        store.rebuild(index_type="ivfpq")
        first = store.rerank_path
    reader = LatentStore.open(folder, read_only=True)
    with LatentStore.open(folder) as writer:
        writer.upsert_images(records(COUNT, COUNT), latents(COUNT, seed=5))
        writer.rebuild()  # refits the whitening: a new space
        second = writer.rerank_path
    assert first != second and second.exists() and not first.exists()
    query = latents(1, seed=6)
    assert len(reader.search(query, 10)[0]) == 10  # the old mapping still answers
    reader.close()
    with LatentStore.open(folder, read_only=True) as fresh:
        assert fresh.rerank_path == second and fresh.verify().ok


def test_pending_rows_keep_the_latest_vector_of_an_id() -> None:
    pending = PendingRows(2)
    assert not pending and pending.rows(np.array([1]))[0].size == 0
    pending.add(np.array([5, 1]), np.array([[5.0, 5.0], [1.0, 1.0]], np.float32))
    pending.add(np.array([5]), np.array([[9.0, 9.0]], np.float32))  # re-encoded: the newer vector wins
    ids, vectors = pending.rows(np.array([5, 7]))
    assert ids.tolist() == [5] and vectors.tolist() == [[9.0, 9.0]]
    ids, vectors = pending.take()
    assert ids.tolist() == [1, 5] and vectors.tolist() == [[1.0, 1.0], [9.0, 9.0]]
    assert not pending


def test_memory_mode_keeps_its_records_in_the_catalog(ivf_store: Path) -> None:
    live = LiveStore(ivf_store)
    with live.use() as store:
        assert store.vector_kind == "ivfpq" and store.record_table is None
        assert len(store.hits([1, 2], with_latents=False)) == 2
    live.close()
