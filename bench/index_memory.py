"""Resident memory of a serving process per stored image, with recall@10 and p50, for each index type.

The synthetic 1M-vector store of query_latency (`bench.latency_inputs.ensure_store`, whitened metric, kept
in bench/work/query_latency) as flat, and copies of it rebuilt as HNSW and as IVF-PQ (`ensure_rebuilt_store`:
store-<N>-auto is HNSW at this size, store-<N>-ivfpq the memory mode, whose candidates are re-ranked with
exact vectors from a memory-mapped file beside the index, `indexer.rerank_rows`). For each, a real server
in its own process (`bench.latency_server.served`) answers `queries` QueryByLatent calls (k=10) from one
client. Its memory comes from /proc/PID/status after the calls: RssAnon is what the process holds privately
(the index, the model, Python); RssFile is file pages it has mapped and touched (shared libraries, and for
IVF-PQ the re-rank rows its queries read, evicted from the page cache before the server starts: page
cache that the kernel may drop again under memory pressure). Baseline: the same server
over a 1,000-image store in the same run, so per image = (RssAnon - baseline RssAnon) / N, and the same for
RssFile. Recall@10: overlap with the flat store's answers to the same queries (flat search is exact).

Goal (the memory mode): <= 64 B per image resident (RssAnon) at 1M, recall@10 >= 0.95.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.latency_inputs import WORK_DIR, ensure_rebuilt_store, ensure_store, store_recipe
from bench.latency_server import served
from bench.memory import process_memory
from bench.report import table
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.store import RERANK_GLOB
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card
from latentdex.service.client import connect

NAME = "index_memory"
K = 10
BASELINE_N = 1_000
GOAL_BYTES_PER_IMAGE = 64
GOAL_RECALL = 0.95
QUERY_SEED = 7
RSS_KINDS = ("RssAnon", "RssFile")  # private memory, and file pages mapped


def run(
    model_dir: str | os.PathLike[str] | None,
    quick: bool = False,
    threads: int = 1,
    work_dir: Path = WORK_DIR,
) -> dict[str, Any]:
    """Build (or reuse) the stores and measure each server; returns the JSON-ready result."""
    n, queries_count = (100_000, 100) if quick else (1_000_000, 300)
    card = read_card(model_dir or DEFAULT_MODEL_DIR)
    mixture = LatentMixture(dim=card.config.latent_dim)
    queries = mixture.sample(queries_count, QUERY_SEED)
    space = card.latent_space_id  # the stores hold latents: any model of the lineage reads them
    flat, flat_build = ensure_store(work_dir / f"store-{n}", n, space, mixture)
    recipe = store_recipe(n, space, mixture)
    baseline, _ = ensure_store(work_dir / f"store-{BASELINE_N}", BASELINE_N, space, mixture)
    stores = {"flat": (flat, flat_build)}
    stores["hnsw"] = ensure_rebuilt_store(flat, recipe, work_dir / f"store-{n}-auto", "auto")
    stores["ivfpq"] = ensure_rebuilt_store(flat, recipe, work_dir / f"store-{n}-ivfpq", "ivfpq")
    base = serve_and_measure(baseline, model_dir, queries[:20], threads)
    rows: dict[str, Any] = {}
    exact: list[list[int]] | None = None
    for kind, (folder, build) in stores.items():
        measured = serve_and_measure(folder, model_dir, queries, threads)
        if kind == "flat":
            exact = measured.pop("answers")
        else:
            answers = measured.pop("answers")
            assert exact is not None
            measured["recall_at_10"] = recall(answers, exact)
        measured["anon_bytes_per_image"] = (measured["rss_anon"] - base["rss_anon"]) / n
        measured["file_bytes_per_image"] = (measured["rss_file"] - base["rss_file"]) / n
        measured["disk_mb"] = build.get("disk_mb")
        measured["vector_kind"] = build.get("vector_kind", "flat")
        rows[kind] = measured
    rows["flat"]["recall_at_10"] = 1.0
    base.pop("answers")
    memory_mode = rows["ivfpq"]
    return {
        "n": n,
        "queries": queries_count,
        "k": K,
        "server_threads": threads,
        "baseline": {"n": BASELINE_N, **base},
        "stores": rows,
        "goal": {
            "bytes_per_image": GOAL_BYTES_PER_IMAGE,
            "recall_at_10": GOAL_RECALL,
            "met": memory_mode["anon_bytes_per_image"] <= GOAL_BYTES_PER_IMAGE
            and memory_mode["recall_at_10"] >= GOAL_RECALL,
        },
    }


def serve_and_measure(
    folder: Path, model_dir: str | os.PathLike[str] | None, queries: np.ndarray, threads: int
) -> dict[str, Any]:
    """Serve `folder` in a child process, query it once per latent; its memory, p50 and answers."""
    for rows_file in folder.glob(RERANK_GLOB):
        _evict_from_page_cache(rows_file)
    with served(folder, model_dir, threads, "process") as server:
        pid = server.facts["pid"]
        started = process_memory(pid, RSS_KINDS)
        seconds, answers = [], []
        with connect(f"127.0.0.1:{server.port}", timeout=120) as client:
            for latent in queries:
                begin = time.perf_counter()
                result = client.query_by_latent(latent, K)
                seconds.append(time.perf_counter() - begin)
                answers.append([match.id for match in result.matches])
        after = process_memory(pid, RSS_KINDS)
    return {
        "rss_anon": after["RssAnon"],
        "rss_file": after["RssFile"],
        "rss_anon_at_start": started["RssAnon"],
        "rss_file_at_start": started["RssFile"],
        "p50_ms": 1000 * statistics.median(seconds),
        "answers": answers,
    }


def _evict_from_page_cache(path: Path) -> None:
    """Drop `path`'s clean pages from the page cache (just written by a rebuild, it would all be cached,
    and each page fault maps up to 16 cached neighbours): RssFile then counts what the queries read."""
    with open(path, "rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    """Mean share of each exact top-k that was found."""
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True) if e]))


def format_result(result: dict[str, Any]) -> str:
    rows = []
    for kind, row in result["stores"].items():
        rows.append(
            [
                f"{kind} ({row['vector_kind']})",
                row["anon_bytes_per_image"],
                row["file_bytes_per_image"],
                row["recall_at_10"],
                row["p50_ms"],
                row["disk_mb"],
            ]
        )
    title = (
        f"Server memory per image at {result['n']:,} images (over a {result['baseline']['n']:,}-image "
        f"server in the same run), recall@10 against flat, p50 of {result['queries']} QueryByLatent calls"
    )
    headers = ["index", "RssAnon B/image", "RssFile B/image", "recall@10", "p50 ms", "disk MB"]
    goal = result["goal"]
    verdict = "met" if goal["met"] else "NOT met"
    line = (
        f"memory mode goal (ivfpq): <= {goal['bytes_per_image']} B/image, recall@10 >= {goal['recall_at_10']}"
    )
    return "\n".join([table(title, headers, rows), f"{line}: {verdict}"])
