"""The FAISS half of the store: index types, removal (HNSW included), search padding, atomic files."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np
import pytest

from latentdex import atomic_files
from latentdex.errors import BadLatent, DimensionMismatch, StoreError
from latentdex.indexer import vectors
from latentdex.indexer.vectors import VectorIndex, parse_size, resolve_index_type

DIM = 16


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> None:
    """A training job owns the other cores; FAISS must not spread over them."""
    faiss.omp_set_num_threads(1)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_flat_search_is_exact_and_pads_with_minus_one() -> None:
    index = VectorIndex.create("flat", DIM)
    data = unit_rows(5)
    index.add(np.arange(100, 105), data)
    scores, ids = index.search(data, k=8)
    assert ids[:, 0].tolist() == [100, 101, 102, 103, 104]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (ids[:, 5:] == -1).all()
    assert set(ids[:, :5].ravel().tolist()) == set(range(100, 105))


def test_cosine_normalises_and_l2_does_not() -> None:
    data = unit_rows(3)
    cosine = VectorIndex.create("flat", DIM, "cosine")
    cosine.add(np.arange(3), data * np.array([[1.0], [5.0], [0.1]], dtype=np.float32))
    scores, ids = cosine.search(data * 7, k=1)
    assert ids[:, 0].tolist() == [0, 1, 2] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    l2 = VectorIndex.create("flat", DIM, "l2")
    l2.add(np.arange(3), data)
    scores, ids = l2.search(data, k=1)
    assert ids[:, 0].tolist() == [0, 1, 2] and np.allclose(scores[:, 0], 0.0, atol=1e-5)


def test_bad_vectors_raise() -> None:
    index = VectorIndex.create("flat", DIM)
    with pytest.raises(DimensionMismatch):
        index.add(np.arange(2), np.ones((2, DIM + 1), np.float32))
    with pytest.raises(BadLatent):
        index.add(np.arange(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(BadLatent, match="zero"):
        index.search(np.zeros((1, DIM), np.float32), 1)
    with pytest.raises(ValueError, match="twice"):
        index.add(np.array([1, 1]), unit_rows(2))
    assert index.ntotal == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_removed_ids_are_never_returned(kind: str) -> None:
    index = VectorIndex.create(kind, DIM)
    data = unit_rows(300)
    index.add(np.arange(300), data)
    removed = np.arange(0, 300, 7)
    assert index.remove(removed) == len(removed)
    assert index.remove(removed) == 0
    _, ids = index.search(data, k=20)
    assert not np.isin(ids, removed).any()
    assert index.ntotal == 300 - len(removed)
    assert set(index.ids().tolist()) == set(range(300)) - set(removed.tolist())


def test_hnsw_readded_id_keeps_only_its_new_vector_also_after_save(tmp_path: Path) -> None:
    index = VectorIndex.create("hnsw", DIM)
    old, new = unit_rows(50, seed=1), unit_rows(1, seed=2)
    index.add(np.arange(50), old)
    index.add(np.array([7]), new)
    assert index.ntotal == 50 and sorted(index.ids().tolist()) == list(range(50))
    assert np.allclose(index.vectors(np.array([7])), new, atol=1e-6)
    _, ids = index.search(old[7:8], k=50)
    assert ids[0, 0] != 7  # the old vector of 7 is dead
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss", "cosine")
    assert loaded.ntotal == 50 and np.allclose(loaded.vectors(np.array([7])), new, atol=1e-6)


def test_hnsw_compacts_once_many_slots_are_dead() -> None:
    index = VectorIndex.create("hnsw", DIM)
    data = unit_rows(100)
    index.add(np.arange(100), data)
    index.remove(np.arange(20))
    assert index._index.ntotal == 100  # below the ratio: slots only marked dead
    index.remove(np.arange(20, 30))
    assert index._index.ntotal == 70 and not index._dead  # past it: rebuilt without them
    _, ids = index.search(data[30:40], k=1)
    assert ids[:, 0].tolist() == list(range(30, 40))


def test_ivfpq_trains_and_finds_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "IVF_MIN_TRAINING", 1500)
    data = unit_rows(1500)
    index, notes = VectorIndex.build("ivfpq", DIM, "cosine", np.arange(1500), data)
    assert index.kind == "ivfpq" and notes == []
    _, ids = index.search(data[:50], k=10)
    assert np.mean([i in row for i, row in enumerate(ids.tolist())]) > 0.8
    index.remove(np.arange(10))
    _, ids = index.search(data[:10], k=10)
    assert not np.isin(ids, np.arange(10)).any()


def test_index_type_resolution() -> None:
    assert resolve_index_type("auto", 10) == ("flat", None)
    assert resolve_index_type("auto", vectors.AUTO_FLAT_BELOW)[0] == "hnsw"
    assert resolve_index_type("auto", vectors.AUTO_HNSW_BELOW)[0] == "ivfpq"
    kind, note = resolve_index_type("ivfpq", 10)
    assert kind == "flat" and "at least" in note
    assert vectors.ivfpq_factory(2_000_000, 128) == "IVF4096,PQ32"
    with pytest.raises(ValueError, match="unknown index type"):
        resolve_index_type("lsh", 10)


def test_auto_steps_down_to_ivfpq_when_the_pick_exceeds_the_memory_budget() -> None:
    million = 1_000_000
    assert resolve_index_type("auto", million, 128) == ("hnsw", None)
    assert resolve_index_type("auto", million, 128, parse_size("2GB")) == ("hnsw", None)
    kind, note = resolve_index_type("auto", million, 128, parse_size("500MB"))
    assert kind == "ivfpq" and "792.0 MB" in note and "500.0 MB budget" in note
    kind, note = resolve_index_type("auto", 5000, 128, 1000)  # too few to train IVF-PQ: stays, says so
    assert kind == "flat" and "too few images" in note
    assert resolve_index_type("hnsw", million, 128, 1000) == ("hnsw", None)  # a type asked for is kept
    assert vectors.index_bytes("ivfpq", million, 128) < 64 * million
    why = vectors.describe_choice("auto", million, 128, parse_size("500MB"))
    assert why.startswith("ivfpq, about 47.0 MB") and "budget 500.0 MB" in why


@pytest.mark.parametrize(
    ("text", "expected"), [("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000), ("100", 100)]
)
def test_sizes_parse_in_decimal_and_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "2XB", "0.1"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_save_is_atomic_and_interrupted_save_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v.faiss"
    index = VectorIndex.create("flat", DIM)
    index.add(np.arange(3), unit_rows(3))
    digest = index.save(path)
    before = path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.faiss"]

    def crash_before_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        Path(src).write_bytes(b"half a file")
        raise OSError("power cut")

    index.add(np.array([9]), unit_rows(1, seed=5))
    monkeypatch.setattr(atomic_files.os, "replace", crash_before_replace)
    with pytest.raises(OSError, match="power cut"):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.faiss"]
    reloaded = VectorIndex.load(path, "cosine")
    assert reloaded.ntotal == 3 and reloaded.digest == digest


@pytest.mark.parametrize("content", [b"", b"not a faiss index at all", "truncate"])
def test_load_of_damaged_file_raises_store_error(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "v.faiss"
    index = VectorIndex.create("flat", DIM)
    index.add(np.arange(10), unit_rows(10))
    index.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncate" else content)
    with pytest.raises(StoreError):
        VectorIndex.load(path, "cosine")
