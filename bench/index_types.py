"""Compare the vector index types: build time, add rate, search latency, recall@10 and bytes per image.

Every index type of `indexer.vectors` (flat, hnsw, ivfpq) is built and searched through `VectorIndex`, so
the figures include our wrapper's checks, cosine normalisation and id handling, on:

(a) N seeded synthetic latents (`bench.synthetic_latents`, 128-d, 200 clusters; N = 100k, quick 10k), and
    the latents of a real store when one is given (queries: a held-out tenth of them, at most 1000);
(b) a large store (1M vectors, quick 50k): flat and IVF-PQ at that size, HNSW too unless its build is
    estimated (from (a)) to take over `HNSW_BUDGET_S`; then HNSW is measured at the largest smaller size
    that fits, next to a flat index of that size, and the row says so.

Per index: bulk build (IVF-PQ training + one `add`), search of 1000 queries in one call and of 100 queries
one at a time, recall@10 against the exact flat index on the same queries, bytes per image of the
serialised index, and "increments": adds of 64 vectors (the pipeline's batch) into the built index, which
pay for `VectorIndex.add`'s remove-before-add. Speeds are also given against flat measured in the same run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.machine import time_call
from bench.report import table
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.store import LatentStore
from latentdex.indexer.vectors import (
    FACTORIES,
    IVF_MIN_TRAINING,
    IVF_REFINE,
    VectorIndex,
    ivfpq_factory,
    rerank,
)

NAME = "index_types"
# "ivfpq+rerank": IVF-PQ asked for K * IVF_REFINE candidates, re-ranked exactly (`indexer.vectors.rerank`),
# as `LatentStore.search` does; here the exact vectors come from memory, in the store from the catalog.
KINDS = ("flat", "hnsw", "ivfpq", "ivfpq+rerank")
K = 10
BATCH_QUERIES = 1000
SINGLE_QUERIES = 100
INCREMENT = 64  # vectors per add, as the pipeline's default batch
HNSW_BUDGET_S = 300.0  # largest estimated HNSW build the large-store step attempts
HNSW_FALLBACK_SIZES = (500_000, 250_000, 100_000, 50_000, 20_000, 10_000)
METRIC = "cosine"  # the store's default
QUERY_SEED, INCREMENT_SEED, BASE_SEED = 1, 2, 3


@dataclass(frozen=True)
class IndexSizes:
    """How much to measure: vectors per type, the large store's size, timed repeats, 64-vector adds."""

    n: int
    store_n: int
    repeat: int
    increments: int


FULL = IndexSizes(n=100_000, store_n=1_000_000, repeat=3, increments=10)
QUICK = IndexSizes(n=10_000, store_n=50_000, repeat=2, increments=5)


def run(
    store_dir: str | os.PathLike[str] | None = None, quick: bool = False, threads: int = 0
) -> dict[str, Any]:
    """Measure every index type; `threads` > 0 sets FAISS's OpenMP threads for the run. JSON-ready result."""
    sizes = QUICK if quick else FULL
    mixture = LatentMixture()
    with _faiss_threads(threads):
        result: dict[str, Any] = {
            "sizes": asdict(sizes),
            "mixture": asdict(mixture),
            "metric": METRIC,
            "k": K,
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_version": faiss.__version__,
        }
        base = mixture.sample(sizes.n, BASE_SEED)
        queries = mixture.sample(BATCH_QUERIES, QUERY_SEED)
        extra = mixture.sample(INCREMENT * sizes.increments, INCREMENT_SEED)
        result["synthetic"] = measure_types(base, queries, extra, METRIC, sizes)
        del base
        result["real"] = real_latents(store_dir, sizes) if store_dir else None
        if not store_dir:
            result["real_reason"] = "no store given (run_all --store DIR)"
        result["large_store"] = large_store(mixture, sizes, result["synthetic"]["hnsw"])
    return result


def measure_types(
    base: np.ndarray,
    queries: np.ndarray,
    extra: np.ndarray,
    metric: str,
    sizes: IndexSizes,
    kinds: tuple[str, ...] = KINDS,
    *,
    footprint: bool = True,
) -> dict[str, dict[str, Any]]:
    """One row per index kind on `base`; flat first, as the exact reference for recall and the ratios."""
    rows: dict[str, dict[str, Any]] = {}
    truth: np.ndarray | None = None
    for kind in ("flat", *(k for k in kinds if k != "flat")):
        if kind.startswith("ivfpq") and len(base) < IVF_MIN_TRAINING:
            reason = f"needs {IVF_MIN_TRAINING} vectors to train"
            rows[kind] = {"kind": kind, "n": len(base), "skipped": reason}
            continue
        rows[kind], labels = measure_index(kind, base, queries, extra, metric, sizes, footprint=footprint)
        truth = labels if kind == "flat" else truth
        rows[kind]["recall_at_10"] = recall_at_k(labels, truth)
    add_ratios(rows, rows["flat"])
    return rows


def measure_index(
    kind: str,
    base: np.ndarray,
    queries: np.ndarray,
    extra: np.ndarray,
    metric: str,
    sizes: IndexSizes,
    *,
    footprint: bool = True,
) -> tuple[dict[str, Any], np.ndarray]:
    """Build, search and grow one index; returns its row and the ids the batched search found."""
    n, dim = base.shape
    reranked = kind == "ivfpq+rerank"
    concrete = "ivfpq" if reranked else kind
    started = time.perf_counter()
    index = VectorIndex.create(concrete, dim, metric, training=base if concrete == "ivfpq" else None)
    created = time.perf_counter()
    index.add(np.arange(n, dtype=np.int64), base)
    added = time.perf_counter()
    row: dict[str, Any] = {
        "kind": kind,
        "n": n,
        "factory": ivfpq_factory(n, dim) if concrete == "ivfpq" else FACTORIES[kind],
        "train_s": created - started,
        "add_s": added - created,
        "build_s": added - started,
        "add_vectors_per_s": n / (added - created),
    }

    def search(batch: np.ndarray) -> np.ndarray:
        if not reranked:
            return index.search(batch, K)[1]
        candidates = index.search(batch, K * IVF_REFINE)[1]
        return rerank(batch, candidates, lambda ids: (ids, base[ids]), K, metric)[1]

    found: list[np.ndarray] = []
    batched = time_call(lambda: found.append(search(queries)), warmup=1, repeat=sizes.repeat)
    row["batched_ms_per_query"] = 1000 * batched.median / len(queries)
    single_queries = queries[:SINGLE_QUERIES]

    def one_at_a_time() -> None:
        for i in range(len(single_queries)):
            search(single_queries[i : i + 1])

    single = time_call(one_at_a_time, warmup=0, repeat=sizes.repeat)
    row["single_ms_per_query"] = 1000 * single.median / len(single_queries)
    if footprint:
        row["bytes_per_image"] = len(faiss.serialize_index(index._index)) / n  # what `save` writes
    row["increment_ms_per_add"], row["increment_vectors_per_s"] = _increments(index, n, extra, sizes)
    row["timing"] = {"batched": batched.to_dict(), "single": single.to_dict()}
    return row, found[-1]


def _increments(index: VectorIndex, n: int, extra: np.ndarray, sizes: IndexSizes) -> tuple[float, float]:
    """Median ms per INCREMENT-vector add into the built index, and the vectors/s that gives."""
    samples = []
    for step in range(sizes.increments):
        ids = np.arange(n + step * INCREMENT, n + (step + 1) * INCREMENT, dtype=np.int64)
        start = time.perf_counter()
        index.add(ids, extra[step * INCREMENT : (step + 1) * INCREMENT])
        samples.append(time.perf_counter() - start)
    median = float(np.median(samples))
    return 1000 * median, INCREMENT / median


def recall_at_k(found: np.ndarray, truth: np.ndarray | None) -> float | None:
    """Mean share of each query's exact `k` nearest ids that `found` holds (None without a truth)."""
    if truth is None:
        return None
    hits = [len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def add_ratios(rows: dict[str, dict[str, Any]], flat: dict[str, Any]) -> None:
    """Speeds against `flat`: > 1 means faster than flat (rates divided, latencies inverted)."""
    for row in rows.values():
        if "skipped" in row:
            continue
        row["vs_flat"] = {
            "add_rate": row["add_vectors_per_s"] / flat["add_vectors_per_s"],
            "batched_search": flat["batched_ms_per_query"] / row["batched_ms_per_query"],
            "single_search": flat["single_ms_per_query"] / row["single_ms_per_query"],
            "increment_rate": row["increment_vectors_per_s"] / flat["increment_vectors_per_s"],
        }


def hnsw_build_estimate(measured: dict[str, Any], n: int) -> float:
    """Seconds to add `n` vectors to HNSW, scaled from a measured build as n log n."""
    m = measured["n"]
    return measured["add_s"] * (n / m) * math.log(n) / math.log(m)


def large_store(mixture: LatentMixture, sizes: IndexSizes, hnsw: dict[str, Any]) -> dict[str, Any]:
    """Flat and IVF-PQ at `store_n`; HNSW there too, or at a smaller size (with flat beside it) if slow."""
    n = sizes.store_n
    estimate = hnsw_build_estimate(hnsw, n)
    hnsw_n = n
    if estimate > HNSW_BUDGET_S:
        fits = [s for s in HNSW_FALLBACK_SIZES if s < n and hnsw_build_estimate(hnsw, s) <= HNSW_BUDGET_S]
        hnsw_n = max(fits, default=hnsw["n"])
    out: dict[str, Any] = {
        "n": n,
        "hnsw_n": hnsw_n,
        "hnsw_build_estimate_s": estimate,
        "hnsw_budget_s": HNSW_BUDGET_S,
    }
    base = mixture.sample(n, BASE_SEED)
    queries = mixture.sample(BATCH_QUERIES, QUERY_SEED)
    extra = mixture.sample(INCREMENT * sizes.increments, INCREMENT_SEED)
    kinds = KINDS if hnsw_n == n else tuple(k for k in KINDS if k != "hnsw")
    out["rows"] = measure_types(base, queries, extra, METRIC, sizes, kinds, footprint=False)
    if hnsw_n != n:
        out["note"] = (
            f"HNSW at {n:,} was estimated at {estimate:.0f} s to build (over {HNSW_BUDGET_S:.0f} s): "
            f"measured at {hnsw_n:,}, next to a flat index of that size"
        )
        out["rows_at_hnsw_n"] = measure_types(
            base[:hnsw_n], queries, extra, METRIC, sizes, ("flat", "hnsw"), footprint=False
        )
    return out


def real_latents(store_dir: str | os.PathLike[str], sizes: IndexSizes) -> dict[str, Any]:
    """Every index type on a store's latents, a held-out tenth (at most 1000) as the queries."""
    store = LatentStore.open(Path(store_dir), read_only=True)
    try:
        ids = [entry.id for entry in store.entries() if entry.status == "ok"]
        latents = np.concatenate(
            [store.latents(ids[i : i + 10_000]) for i in range(0, len(ids), 10_000)]
            or [np.empty((0, store.latent_dim), np.float32)]
        )
        metric, model_id = store.metric, store.model_id
    finally:
        store.close()
    out: dict[str, Any] = {"store": str(store_dir), "model_id": model_id, "metric": metric}
    out["images"] = len(ids)
    if len(latents) < 2 * K:
        out["skipped"] = f"the store holds {len(latents)} latents: too few"
        return out
    order = np.random.default_rng(QUERY_SEED).permutation(len(latents))
    held = min(BATCH_QUERIES, max(1, len(latents) // 10))
    queries, base = latents[order[:held]], latents[order[held:]]
    extra = base[np.arange(INCREMENT * sizes.increments) % len(base)]
    out["queries"] = held
    out["rows"] = measure_types(base, queries, extra, metric, sizes)
    return out


@contextmanager
def _faiss_threads(threads: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


COLUMNS = (
    "index @ N",
    "build s",
    "add vec/s",
    "x flat",
    "batch ms/q",
    "x flat",
    "single ms/q",
    "x flat",
    "recall@10",
    "B/image",
    "+64 ms",
    "x flat",
)


def _table_rows(rows: dict[str, dict[str, Any]], suffix: str = "") -> list[list[Any]]:
    out: list[list[Any]] = []
    for kind, row in rows.items():
        label = f"{kind} @ {row['n']:,}{suffix}"
        if "skipped" in row:
            out.append([f"{label} skipped", *[None] * (len(COLUMNS) - 1)])
            continue
        vs = row["vs_flat"]
        out.append(
            [
                label,
                row["build_s"],
                row["add_vectors_per_s"],
                vs["add_rate"],
                row["batched_ms_per_query"],
                vs["batched_search"],
                row["single_ms_per_query"],
                vs["single_search"],
                row["recall_at_10"],
                row.get("bytes_per_image"),
                row["increment_ms_per_add"],
                vs["increment_rate"],
            ]
        )
    return out


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: synthetic (and real) latents, then the large store."""
    legend = (
        "'x flat': speed / flat's speed in the same table (> 1: faster); "
        "'+64 ms': one 64-vector add into the built index"
    )
    mix = result["mixture"]
    blocks = [
        table(
            f"Index types on synthetic latents ({mix['dim']}-d, {mix['clusters']} clusters, "
            f"{result['metric']}, FAISS {result['faiss_threads']} threads)",
            COLUMNS,
            _table_rows(result["synthetic"]),
        )
    ]
    real = result.get("real")
    if real is None:
        blocks.append(f"real latents: not measured - {result.get('real_reason')}")
    elif "skipped" in real:
        blocks.append(f"real latents ({real['store']}): skipped - {real['skipped']}")
    else:
        title = (
            f"Index types on real latents (store {real['store']}, model {real['model_id']}, "
            f"{real['queries']} held-out queries)"
        )
        blocks.append(table(title, COLUMNS, _table_rows(real["rows"])))
        blocks += [
            f"{kind} skipped: {row['skipped']}" for kind, row in real["rows"].items() if "skipped" in row
        ]
    large = result["large_store"]
    rows = _table_rows(large["rows"])
    if "rows_at_hnsw_n" in large:
        rows += _table_rows(large["rows_at_hnsw_n"], suffix=" (HNSW-size)")
    blocks.append(table(f"Large store ({large['n']:,} vectors)", COLUMNS, rows))
    notes = [legend, f"HNSW build at {large['n']:,} estimated {large['hnsw_build_estimate_s']:.0f} s"]
    if "note" in large:
        notes.append(large["note"])
    blocks.append("\n".join(notes))
    return "\n".join(blocks)
