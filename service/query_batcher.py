"""Concurrent single queries answered together: one engine call (one FAISS search, one record read) for
every query that arrived while the previous batch ran.

Under load a server's time goes to per-call Python work (store checks, validation, stage timings) and to
the FAISS call, which costs little more for eight queries than for one (a flat scan reads the vectors once
for the whole batch). `QueryBatcher` needs no thread of its own: the first caller to arrive while no batch
runs leads; it answers every waiting query with the same options in one `QueryEngine.query`, and when its
batch is done it hands the lead to the first query still waiting. A caller alone pays one lock, so a quiet
server answers as before. Only cheap queries are batched: by latent or id, without previews or thumbnails
(a batch must not make a quick query wait for another's decoding).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from latentdex.errors import LatentdexError
from latentdex.service.call_guard import checking
from latentdex.service.queries import Answer, IdQuery, LatentQuery, QueryEngine, QuerySpec

BatchedQuery = LatentQuery | IdQuery
DEFAULT_MAX_BATCH = 64


def batchable(spec: QuerySpec) -> bool:
    """Whether queries with these options are cheap enough to answer in a shared batch."""
    preview = spec.preview
    return not (preview.matches or preview.query or preview.thumbnails)


@dataclass(eq=False)
class _Waiting:
    query: BatchedQuery
    spec: QuerySpec
    done: threading.Event | None = None  # made for a caller that waits (a leader alone needs none)
    answer: Answer | None = None
    error: BaseException | None = None
    leads: bool = False  # woken to lead the next batch rather than with an answer


class QueryBatcher:
    """Answers single batchable queries in shared engine calls; thread-safe."""

    def __init__(self, engine: QueryEngine, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max(1, min(max_batch, engine.limits.max_batch))
        self.batches = 0  # engine calls made, and the queries they answered (for tests and metrics)
        self.answered = 0
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._leading = False

    def answer(self, query: BatchedQuery, spec: QuerySpec) -> Answer:
        """The query's answer, as `QueryEngine.query([query], spec)` gives it; its errors as that raises
        them (a query's bad input never fails the others of its batch)."""
        item = _Waiting(query, spec)
        with self._lock:
            leads = not self._leading
            if not leads:
                item.done = threading.Event()
            self._waiting.append(item)
            self._leading = True
        if item.done is not None:
            item.done.wait()
            leads = item.leads
        if leads:
            self._lead()
        if item.error is not None:
            raise item.error
        assert item.answer is not None
        return item.answer

    def _lead(self) -> None:
        """Answer one batch (which holds the leader's own query), then pass the lead on."""
        with self._lock:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        try:
            self._answer(batch)
        finally:
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                self._leading = successor is not None
            if successor is not None:
                successor.leads = True
                _wake(successor)
            for item in batch:
                _wake(item)

    def _answer(self, batch: list[_Waiting]) -> None:
        groups: dict[QuerySpec, list[_Waiting]] = {}
        for item in batch:
            groups.setdefault(item.spec, []).append(item)
        # The batch answers several calls: no single caller's cancellation or deadline stops it.
        with checking(_never_stop):
            for spec, items in groups.items():
                self._answer_group(spec, items)

    def _answer_group(self, spec: QuerySpec, items: list[_Waiting]) -> None:
        try:
            answers = self.engine.query([item.query for item in items], spec)
        except LatentdexError as exc:
            if len(items) == 1:
                items[0].error = exc
                return
            for item in items:  # one query's bad input: each answered alone, with its own error
                self._answer_group(spec, [item])
            return
        except BaseException as exc:  # unexpected: every caller of the batch reports it
            for item in items:
                item.error = exc
            return
        self.batches += 1
        self.answered += len(items)
        for item, answer in zip(items, answers, strict=True):
            item.answer = answer


def _wake(item: _Waiting) -> None:
    if item.done is not None:
        item.done.set()


def _never_stop() -> None:
    return None
