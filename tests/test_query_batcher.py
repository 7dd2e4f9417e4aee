"""Concurrent single queries share engine calls: each caller gets its own answer or its own error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from latentdex.errors import CallCancelled, DimensionMismatch, NotFound
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.call_guard import checking
from latentdex.service.client import connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import IdQuery, LatentQuery, PreviewSpec, QueryEngine, QuerySpec
from latentdex.service.query_batcher import QueryBatcher, batchable
from latentdex.service.server import start_server
from latentdex.service.server_config import ServerConfig

COUNT = 300


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryEngine]:
    codec = LatentCodec.load()
    folder = tmp_path_factory.mktemp("batched") / "store"
    records = [
        ImageRecord(path=f"{i}.jpg", size=i, mtime_ns=i, content_hash=f"{i:064x}", model_id=codec.model_id)
        for i in range(COUNT)
    ]
    vectors = np.random.default_rng(0).standard_normal((COUNT, codec.latent_dim)).astype(np.float32)
    with LatentStore.create(folder, model_id=codec.model_id, latent_dim=codec.latent_dim) as store:
        store.upsert_images(records, vectors)
    live = LiveStore(folder)
    yield QueryEngine(codec, live)
    live.close()


def queries(engine: QueryEngine, count: int, seed: int = 1) -> list[LatentQuery]:
    rng = np.random.default_rng(seed)
    return [
        LatentQuery(rng.standard_normal(engine.codec.latent_dim).astype(np.float32)) for _ in range(count)
    ]


def ids(answer: object) -> list[int]:
    return [hit.id for hit in answer.hits]  # type: ignore[attr-defined]


class HeldFirstBatch:
    """The engine's first call waits until released, so that the queries arriving meanwhile queue up."""

    def __init__(self, engine: QueryEngine) -> None:
        self.engine, self.started, self.release = engine, threading.Event(), threading.Event()
        self.calls: list[int] = []
        self.limits = engine.limits

    def query(self, batch: list, spec: QuerySpec) -> list:
        self.calls.append(len(batch))
        if len(self.calls) == 1:
            self.started.set()
            assert self.release.wait(30)
        return self.engine.query(batch, spec)


def run_queued(held: HeldFirstBatch, first: tuple, others: list[tuple]) -> list[object]:
    """`first` leads and is held; `others` queue behind it; every result or error, in order."""
    batcher = QueryBatcher(held)  # type: ignore[arg-type]

    def answer(query: object, spec: QuerySpec) -> object:
        try:
            return batcher.answer(query, spec)  # type: ignore[arg-type]
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(others) + 1) as pool:
        leader = pool.submit(answer, *first)
        assert held.started.wait(30)
        followers = [pool.submit(answer, *item) for item in others]
        while len(batcher._waiting) < len(others):  # every follower queued behind the held batch
            threading.Event().wait(0.01)
        held.release.set()
        return [leader.result(30), *(f.result(30) for f in followers)]


def test_queries_that_arrive_during_a_batch_are_answered_together_as_if_alone(engine: QueryEngine) -> None:
    held = HeldFirstBatch(engine)
    asked = queries(engine, 7)
    spec = QuerySpec(k=5)
    results = run_queued(held, (asked[0], spec), [(q, spec) for q in asked[1:]])
    assert held.calls == [1, 6]  # the leader's own query, then the six that waited, in one call
    for query, result in zip(asked, results, strict=True):
        assert ids(result) == ids(engine.query([query], spec)[0])


def test_each_caller_gets_its_own_options_and_its_own_error(engine: QueryEngine) -> None:
    held = HeldFirstBatch(engine)
    good = queries(engine, 3)
    wrong_size = LatentQuery(np.ones(3, np.float32))
    others = [
        (good[1], QuerySpec(k=3)),
        (wrong_size, QuerySpec(k=5)),
        (IdQuery(10_000), QuerySpec(k=5)),
        (IdQuery(4), QuerySpec(k=5)),
        (good[2], QuerySpec(k=5)),
    ]
    results = run_queued(held, (good[0], QuerySpec(k=5)), others)
    assert len(ids(results[0])) == 5 and len(ids(results[1])) == 3
    assert isinstance(results[2], DimensionMismatch) and "queries[" not in str(results[2])
    assert isinstance(results[3], NotFound)
    assert ids(results[4]) == ids(engine.query([IdQuery(4)], QuerySpec(k=5))[0]) and 4 not in ids(results[4])
    assert ids(results[5]) == ids(engine.query([good[2]], QuerySpec(k=5))[0])


def test_a_leader_whose_call_is_cancelled_still_answers_the_batch(engine: QueryEngine) -> None:
    def cancelled() -> None:
        raise CallCancelled("the client cancelled the call")

    batcher = QueryBatcher(engine)
    with checking(cancelled):
        answer = batcher.answer(queries(engine, 1)[0], QuerySpec(k=4))
    assert len(answer.hits) == 4 and (batcher.batches, batcher.answered) == (1, 1)


def test_only_queries_without_previews_or_thumbnails_are_batched() -> None:
    assert batchable(QuerySpec()) and batchable(QuerySpec(k=50, include_latents=True))
    for preview in (PreviewSpec(matches=True), PreviewSpec(query=True), PreviewSpec(thumbnails=True)):
        assert not batchable(QuerySpec(preview=preview))


def test_a_server_under_concurrent_callers_answers_each_as_alone(engine: QueryEngine) -> None:
    asked = queries(engine, 96, seed=7)
    expected = [ids(engine.query([q], QuerySpec(k=8))[0]) for q in asked]
    running = start_server(engine, ServerConfig(port=0, max_workers=8))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            barrier = threading.Barrier(12)

            def ask(index: int) -> list[int]:
                if index < 12:
                    barrier.wait(30)
                return [m.id for m in client.query_by_latent(asked[index].latent, k=8).matches]

            with ThreadPoolExecutor(12) as pool:
                assert list(pool.map(ask, range(len(asked)))) == expected
            with pytest.raises(DimensionMismatch):
                client.query_by_latent(np.ones(5, np.float32))
    finally:
        running.stop(0)


def test_batching_can_be_turned_off(engine: QueryEngine) -> None:
    running = start_server(engine, ServerConfig(port=0, batch_queries=False))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            query = queries(engine, 1)[0]
            assert [m.id for m in client.query_by_latent(query.latent, k=6).matches] == ids(
                engine.query([query], QuerySpec(k=6))[0]
            )
    finally:
        running.stop(0)
