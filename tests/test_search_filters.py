"""Filtered search: metadata filters in SQL combined with FAISS, k filtered matches whenever they exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import faiss
import numpy as np
import pytest

from latentdex.indexer.filters import filter_conditions
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.indexer.vectors import IVF_MIN_TRAINING

DIM = 16
MODEL = "vae-test"
FORMATS = ("JPEG", "PNG", "WEBP")


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> None:
    faiss.omp_set_num_threads(1)


def library(n: int) -> list[ImageRecord]:
    """Images spread over three albums and three formats, one in seven without a capture time."""
    start = datetime(2020, 1, 1)
    return [
        ImageRecord(
            path=f"{('travel', 'family', 'work')[i % 3]}/{i:05d}.{FORMATS[i % 3 // 1 % 3].lower()}",
            size=1000 + i,
            mtime_ns=i,
            content_hash=f"{i:064x}",
            width=400 + (i % 10) * 100,
            height=300 + (i % 7) * 100,
            format=FORMATS[(i // 3) % 3],
            capture_time=None if i % 7 == 0 else start + timedelta(days=i % 365),
            model_id=MODEL,
        )
        for i in range(n)
    ]


def passes(record: ImageRecord, where: SearchFilter) -> bool:
    """The filter's meaning, written out in Python: what the SQL must agree with."""
    checks = [
        where.path_prefix is None or record.path.startswith(where.path_prefix),
        where.min_width is None or (record.width or 0) >= where.min_width,
        where.min_height is None or (record.height or 0) >= where.min_height,
        not where.formats or (record.format or "").upper() in where.formats,
    ]
    if where.captured_after is not None:
        checks.append(record.capture_time is not None and record.capture_time >= where.captured_after)
    if where.captured_before is not None:
        checks.append(record.capture_time is not None and record.capture_time < where.captured_before)
    return all(checks)


def build(
    folder: Path, n: int, index_type: str = "flat", metric: str = "whitened"
) -> tuple[LatentStore, list[ImageRecord], np.ndarray]:
    """A store of `n` latents that are anisotropic and off-centre, so whitening changes the ranking."""
    rng = np.random.default_rng(7)
    scales = np.geomspace(4.0, 0.25, DIM).astype(np.float32)
    latents = (rng.standard_normal((n, DIM)).astype(np.float32) * scales + 1.5).astype(np.float32)
    store = LatentStore.create(folder, model_id=MODEL, latent_dim=DIM, metric=metric)
    stored = library(n)
    ids = store.upsert_images(stored, latents)
    if index_type != "flat":
        store.rebuild(index_type)
    store.flush()
    assert (store.whitening is not None) == (metric == "whitened" and n >= 2 * DIM)
    return store, [ImageRecord(**{**vars(r), "id": i}) for r, i in zip(stored, ids, strict=True)], latents


def exact_answer(
    query: np.ndarray,
    stored: list[ImageRecord],
    latents: np.ndarray,
    where: SearchFilter,
    k: int,
    store: LatentStore | None = None,
) -> list[int]:
    """The filtered cosine ranking, in `store`'s whitened space when it has one, else on the latents."""
    if store is not None and store.whitening is not None:
        latents, query = store.whitening.apply(latents), store.whitening.apply(query[None])[0]
    unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    order = [i for i in np.argsort(-scores, kind="stable") if passes(stored[i], where)]
    return [stored[i].id for i in order[:k]]


FILTERS = [
    SearchFilter(path_prefix="family/"),
    SearchFilter(formats=frozenset({"png", "WebP"})),
    SearchFilter(min_width=1000, min_height=800),
    SearchFilter(captured_after=datetime(2020, 3, 1), captured_before=datetime(2020, 4, 1)),
    SearchFilter(path_prefix="work/", formats=frozenset({"JPEG"}), min_width=900),
]


@pytest.mark.parametrize("metric", ["whitened", "cosine"])
@pytest.mark.parametrize("where", FILTERS, ids=lambda f: ",".join(k for k, v in vars(f).items() if v))
def test_flat_filtered_search_is_the_exact_filtered_answer(
    tmp_path: Path, where: SearchFilter, metric: str
) -> None:
    store, stored, latents = build(tmp_path / "store", 600, metric=metric)
    queries = latents[:5] + np.random.default_rng(1).standard_normal((5, DIM)).astype(np.float32)
    with store:
        results = store.search(queries, 10, where=where)
    for query, matches in zip(queries, results, strict=True):
        assert [m.id for m in matches] == exact_answer(query, stored, latents, where, 10, store)
        assert len(matches) == 10


def test_filters_fewer_than_k_return_all_that_pass_and_none_returns_nothing(tmp_path: Path) -> None:
    store, stored, latents = build(tmp_path / "store", 300)
    rare = SearchFilter(path_prefix="travel/", min_width=1300, min_height=900)
    expected = {r.id for r in stored if passes(r, rare)}
    assert 0 < len(expected) < 10
    with store:
        [matches] = store.search(latents[:1], 10, where=rare)
        assert {m.id for m in matches} == expected
        [nothing] = store.search(latents[:1], 10, where=SearchFilter(path_prefix="nowhere/"))
        assert nothing == []


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_approximate_indexes_still_return_k_matches_under_a_narrow_filter(
    tmp_path: Path, index_type: str
) -> None:
    n = IVF_MIN_TRAINING + 500 if index_type == "ivfpq" else 3000
    store, stored, latents = build(tmp_path / "store", n, index_type)
    narrow = SearchFilter(path_prefix="family/", formats=frozenset({"PNG"}), min_width=1200, min_height=800)
    admitted = [r for r in stored if passes(r, narrow)]
    assert 12 <= len(admitted) < n // 50
    queries = np.random.default_rng(3).standard_normal((4, DIM)).astype(np.float32)
    with store:
        assert store.vector_kind == index_type
        results = store.search(queries, 12, where=narrow)
    admitted_ids = {r.id for r in admitted}
    for query, matches in zip(queries, results, strict=True):
        assert len(matches) == 12 and {m.id for m in matches} <= admitted_ids
        # the nearest admitted image is found (IVF-PQ scores are approximate, so compare the set)
        assert exact_answer(query, stored, latents, narrow, 1, store)[0] in [m.id for m in matches]


def test_a_filter_checks_its_values() -> None:
    with pytest.raises(ValueError, match="relative"):
        SearchFilter(path_prefix="/abs")
    with pytest.raises(ValueError, match="naive"):
        SearchFilter(captured_after=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="negative"):
        SearchFilter(min_width=-1)
    assert SearchFilter().is_empty and not SearchFilter(min_width=1).is_empty


@pytest.mark.parametrize(
    "where",
    [
        SearchFilter(),
        SearchFilter(min_width=0, min_height=0),  # zero bounds admit every image: no condition
        SearchFilter(path_prefix="2023/"),
        SearchFilter(captured_after=datetime(2020, 1, 1)),
        SearchFilter(captured_before=datetime(2020, 1, 1)),
        SearchFilter(min_width=1),
        SearchFilter(min_height=1),
        SearchFilter(formats=frozenset({"png"})),
    ],
)
def test_a_filter_is_empty_exactly_when_it_makes_no_sql_condition(where: SearchFilter) -> None:
    """The value decides emptiness from its fields; the SQL side must agree, or an empty-looking filter
    would skip conditions the catalog query applies."""
    assert where.is_empty == (not filter_conditions(where))


def test_hits_leave_out_ids_without_an_ok_row(tmp_path: Path) -> None:
    store, stored, latents = build(tmp_path / "store", 20)
    with store:
        store.remove_images([stored[3].id])
        found = store.hits([stored[2].id, stored[3].id, 999_999])
    assert list(found) == [stored[2].id]
    record, latent = found[stored[2].id]
    assert record.path == stored[2].path and np.array_equal(latent, latents[2])


@pytest.mark.parametrize("metric", ["whitened", "cosine"])
def test_ivfpq_candidates_are_reranked_with_the_exact_stored_latents(tmp_path: Path, metric: str) -> None:
    n = IVF_MIN_TRAINING + 500
    centres = np.random.default_rng(11).standard_normal((50, DIM)).astype(np.float32)
    picks = np.random.default_rng(12).integers(0, 50, n)
    latents = centres[picks] + 0.35 * np.random.default_rng(13).standard_normal((n, DIM)).astype(np.float32)
    store = LatentStore.create(tmp_path / "store", model_id=MODEL, latent_dim=DIM, metric=metric)
    ids = np.asarray(store.upsert_images(library(n), latents))
    store.rebuild("ivfpq")
    queries = latents[:40] + 0.05 * np.random.default_rng(14).standard_normal((40, DIM)).astype(np.float32)
    with store:
        assert store.vector_kind == "ivfpq"
        results = store.search(queries, 10)
        space = store.whitening.apply if store.whitening is not None else (lambda x: x)
    assert (metric == "whitened") == (store.whitening is not None)
    unit = space(latents) / np.linalg.norm(space(latents), axis=1, keepdims=True)
    recalls = []
    for query, matches in zip(space(queries), results, strict=True):
        exact = unit @ (query / np.linalg.norm(query))
        truth = set(ids[np.argsort(-exact)[:10]].tolist())
        recalls.append(len(truth & {m.id for m in matches}) / 10)
        # distances are exact cosine distances, not PQ approximations, and sorted
        by_id = dict(zip(ids.tolist(), exact.tolist(), strict=True))
        np.testing.assert_allclose([m.similarity for m in matches], [by_id[m.id] for m in matches], atol=1e-5)
        assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert np.mean(recalls) > 0.9


def test_a_read_only_store_serves_repeated_hits_from_memory_and_the_same_records(tmp_path: Path) -> None:
    store, stored, _ = build(tmp_path / "store", 30)
    store.close()
    with LatentStore.open(tmp_path / "store", read_only=True) as reader:
        first = reader.hits([stored[1].id, stored[2].id], with_latents=False)
        again = reader.hits([stored[2].id, stored[3].id, 999_999], with_latents=False)
        assert list(reader._records) == [stored[1].id, stored[2].id, stored[3].id]  # the cache filled up
        assert again[stored[2].id][0] == first[stored[2].id][0]
        assert again[stored[2].id][0].path == stored[2].path and again[stored[2].id][1] is None
        assert again[stored[3].id][0].content_hash == stored[3].content_hash and 999_999 not in again
        with_latent = reader.hits([stored[2].id])  # latents always come from the catalog
        assert with_latent[stored[2].id][1] is not None
