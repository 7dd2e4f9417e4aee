"""How long `find_duplicates` takes on large stores, how much memory it takes, and where the time goes.

Stores: the seeded synthetic stores of `bench.latency_inputs` (10k, 100k and 1M latents; quick: 10k), flat
under the default whitened metric, cached under bench/work/query_latency. The issue's goal is all groups of
a 1M-image store in at most 5 minutes with the index type `auto` picks for it
(`indexer.vectors.resolve_index_type`: flat below 100k, HNSW from 100k to 2M). So each store is measured as
cached (flat) and, where `auto` picks another type, as a copy rebuilt with `index_type="auto"` (made under
bench/work/duplicates_scale and deleted after it is measured; the rebuild time is reported). The flat
store above FLAT_FULL_MAX images is only measured on SAMPLE_BATCHES of its batches, extrapolated (an exact
all-k-NN pass over 1M images is O(n^2): about 10^14 multiply-adds).

Per store: `find_duplicates(store, near)` (the "near" preset for the store's distance space, 16 neighbours)
once, timed, and a bare k-NN pass in the same run: the store's FAISS index searched for the same batches of
the same ids with the same k (`VectorIndex.search`, the latents loaded from the catalog beforehand and not
timed). Reported: seconds, images/s, ratio = find_duplicates / bare k-NN, groups found and pairs under the
threshold (from the bare pass), and a split of find_duplicates' time, measured by wrapping the store's
methods on the instance (bench only): the catalog reads (`select_ids`, `same_hash_groups`), `all_latents`
(catalog read + decode of each batch), `LatentStore.search` split into its FAISS call and the rest (checks,
whitening, `Match` objects), the union-find loop (the rest of the batch loop), and after the loop the
union-find's `groups()` and building the groups (`_group`: catalog read + pairwise distances per group).

Memory: `bench.memory.PeakMemory` (this process's VmHWM from /proc/self/status after resetting it through
/proc/self/clear_refs at the start) minus VmRSS just before: what find_duplicates itself adds on top of the
open store. The store's own resident size (index loaded) is given as rss_before.

Threads: FAISS (OpenMP) uses every core for this batch job: `faiss.omp_set_num_threads(os.cpu_count())`
(or `threads` when given); the count in use is recorded. A batch search parallelises over its queries.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.latency_inputs import WORK_DIR as STORES_DIR
from bench.latency_inputs import ensure_store
from bench.memory import PeakMemory
from bench.report import table
from bench.synthetic_latents import LatentMixture
from latentdex.indexer import duplicates
from latentdex.indexer.duplicates import BATCH, DEFAULT_NEIGHBOURS, find_duplicates, resolve_threshold
from latentdex.indexer.store import LatentStore
from latentdex.indexer.vectors import resolve_index_type
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card

NAME = "duplicates_scale"
GOAL_S = 300.0  # the issue: all groups of a 1M-image store in at most 5 minutes
GOAL_N = 1_000_000
PRESET = "near"
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
FLAT_FULL_MAX = 100_000  # larger flat stores: sampled batches of the bare pass only, extrapolated
SAMPLE_BATCHES = 6
COPY_DIR = Path(__file__).resolve().parent / "work" / NAME
PROGRESS_STEPS = 10  # progress lines per store above PROGRESS_ABOVE images
PROGRESS_ABOVE = 100_000
PHASES = (
    "select_ids",
    "same_hash_groups",
    "all_latents",
    "faiss_search",
    "search_rest",
    "union_loop",
    "uf_groups",
    "build_groups",
)


def run(
    model_dir: str | os.PathLike[str] | None,
    quick: bool = False,
    threads: int = 0,
    stores_dir: Path = STORES_DIR,
    copy_dir: Path = COPY_DIR,
    keep_copies: bool = False,
) -> dict[str, Any]:
    """Measure find_duplicates on each store size; `keep_copies` keeps (and reuses) the `auto` copies."""
    card = read_card(model_dir or DEFAULT_MODEL_DIR)
    mixture = LatentMixture(dim=card.config.latent_dim)
    sizes = QUICK_SIZES if quick else FULL_SIZES
    with _faiss_threads(threads or os.cpu_count() or 1):
        result: dict[str, Any] = {
            "sizes": list(sizes),
            "mixture": asdict(mixture),
            "preset": PRESET,
            "neighbours": DEFAULT_NEIGHBOURS,
            "batch": BATCH,
            "goal_s": GOAL_S,
            "goal_n": GOAL_N,
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_version": faiss.__version__,
            "memory_method": "VmHWM (/proc/self/status, reset via /proc/self/clear_refs) - VmRSS before",
            "load_average_start": list(os.getloadavg()),
            "runs": [],
        }
        for n in sizes:
            folder, build = ensure_store(stores_dir / f"store-{n}", n, card.model_id, mixture)
            auto_kind, _ = resolve_index_type("auto", n)
            store = LatentStore.open(folder, read_only=True)
            try:
                row = measure_store(store, n, sampled=n > FLAT_FULL_MAX)
            finally:
                store.close()
            row["store_build"] = build
            result["runs"].append(row)
            if auto_kind != store.vector_kind:
                with auto_copy(folder, copy_dir, n, keep_copies) as (copy, rebuild_s):
                    store = LatentStore.open(copy, read_only=True)
                    try:
                        row = measure_store(store, n, sampled=False)
                    finally:
                        store.close()
                row["auto_rebuild_s"] = rebuild_s
                result["runs"].append(row)
        result["load_average_end"] = list(os.getloadavg())
    return result


# --- measuring -----------------------------------------------------------------------------------------


def measure_store(store: LatentStore, n: int, sampled: bool) -> dict[str, Any]:
    """One store: the bare k-NN pass (sampled batches if `sampled`) and, unless sampled, find_duplicates."""
    threshold = resolve_threshold(PRESET, None, store.distance_space)
    assert threshold is not None
    kind = store.vector_kind
    row: dict[str, Any] = {
        "n": store.vector_count,
        "index": kind,
        "auto_picks": resolve_index_type("auto", n)[0],
        "distance_space": store.distance_space,
        "threshold": threshold,
        "sampled": sampled,
        "rss_before_mib": _vm("VmRSS") / 2**20,
        "vectors_file_mb": (store.folder / "vectors.faiss").stat().st_size / 1e6,
    }
    label = f"{row['n']:,} {kind}"
    row["bare"] = bare_pass(store, threshold, DEFAULT_NEIGHBOURS, SAMPLE_BATCHES if sampled else None)
    if sampled:
        print(f"{NAME}: {label}: bare k-NN estimated at {row['bare']['seconds']:.0f} s", flush=True)
        return row
    row["find"] = timed_find(store, threshold, DEFAULT_NEIGHBOURS, label)
    row["ratio_to_bare"] = row["find"]["seconds"] / row["bare"]["seconds"]
    print(
        f"{NAME}: {label}: find_duplicates {row['find']['seconds']:.1f} s, "
        f"bare k-NN {row['bare']['seconds']:.1f} s",
        flush=True,
    )
    return row


def bare_pass(
    store: LatentStore, threshold: float, neighbours: int, sample: int | None = None
) -> dict[str, Any]:
    """The FAISS search of find_duplicates' batches alone (the latents loaded beforehand, untimed).

    `sample`: search only that many batches spread over the ids and extrapolate the time to all of them.
    """
    ids = store.select_ids()
    k = min(neighbours + 1, len(ids))
    starts = list(range(0, len(ids), BATCH))
    chosen = starts if sample is None else [starts[i] for i in _spread(len(starts), sample)]
    spec, vectors = store._spec, store._vectors  # bench only: the index FAISS searches, without the store
    search_s = load_s = 0.0
    pairs = searched = 0
    for start in chosen:
        began = time.perf_counter()
        found, latents = store.all_latents(ids[start : start + BATCH])
        queries = spec.to_index(latents)
        load_s += time.perf_counter() - began
        began = time.perf_counter()
        scores, neighbours_found = vectors.search(queries, k)
        search_s += time.perf_counter() - began
        distances = 1.0 - scores if spec.index_metric == "cosine" else np.sqrt(np.maximum(scores, 0.0))
        linked = (distances <= threshold) & (neighbours_found >= 0) & (neighbours_found != found[:, None])
        pairs += int(linked.sum())
        searched += len(found)
    scale = len(ids) / searched
    return {
        "k": k,
        "batches": len(chosen),
        "batches_all": len(starts),
        "images_searched": searched,
        "seconds": search_s * scale,
        "seconds_measured": search_s,
        "load_s": load_s * scale,
        "images_per_s": searched / search_s,
        # directed links (a -> b among a's k nearest); a pair found from both ends counts twice
        "links_under_threshold": round(pairs * scale),
        "extrapolated": sample is not None,
    }


def timed_find(store: LatentStore, threshold: float, neighbours: int, label: str) -> dict[str, Any]:
    """find_duplicates once, with its phases timed through wrappers and its memory peak."""
    clock = _Clock()
    every = max(1, store.vector_count // PROGRESS_STEPS)
    vectors = store._vectors  # bench only: to time the FAISS call inside LatentStore.search
    wrapped = [
        (store, "select_ids", "select_ids"),
        (store, "same_hash_groups", "same_hash_groups"),
        (store, "all_latents", "all_latents"),
        (store, "search", "search"),
        (vectors, "search", "faiss_search"),
    ]
    for owner, method, key in wrapped:
        setattr(owner, method, clock.wrap(getattr(owner, method), key))
    original_group, original_groups = duplicates._group, duplicates.UnionFind.groups
    duplicates._group = clock.wrap(original_group, "build_groups")  # type: ignore[assignment]
    duplicates.UnionFind.groups = clock.wrap(original_groups, "uf_groups")  # type: ignore[method-assign]
    marks: list[tuple[float, int]] = []

    def progress(done: int, total: int) -> None:
        marks.append((time.perf_counter(), done))
        if total > PROGRESS_ABOVE and (done // every != (done - BATCH) // every or done == total):
            print(f"{NAME}: {label}: {done:,}/{total:,} ({time.perf_counter() - began:.0f} s)", flush=True)

    rss_before = _vm("VmRSS") / 2**20
    try:
        with PeakMemory() as memory:
            began = time.perf_counter()
            report = find_duplicates(store, threshold, neighbours=neighbours, progress=progress)
            seconds = time.perf_counter() - began
    finally:
        duplicates._group = original_group  # type: ignore[assignment]
        duplicates.UnionFind.groups = original_groups  # type: ignore[method-assign]
        for owner, method, _ in wrapped:
            delattr(owner, method)
    loop_s = marks[-1][0] - began - clock.totals["select_ids"] - clock.totals["same_hash_groups"]
    phases = dict(clock.totals)
    phases["search_rest"] = phases.pop("search") - phases["faiss_search"]
    phases["union_loop"] = loop_s - phases["all_latents"] - phases["faiss_search"] - phases["search_rest"]
    phases = {name: phases.get(name, 0.0) for name in PHASES}
    phases["other"] = seconds - sum(phases.values())
    peak = memory.result()
    largest = max((len(g.members) for g in report.groups), default=0)
    return {
        "seconds": seconds,
        "images_per_s": report.images_scanned / seconds,
        "images_scanned": report.images_scanned,
        "groups": len(report.groups),
        "images_in_groups": report.images_in_groups,
        "largest_group": largest,
        "group_builds": clock.calls.get("build_groups", 0),
        "phases_s": phases,
        "search_share": phases["faiss_search"] / seconds,
        "rss_before_mib": rss_before,
        "peak_mib": peak["self_peak_mib"],
        "peak_over_before_mib": peak["self_peak_mib"] - rss_before,
        "memory": peak,
    }


class _Clock:
    """Summed seconds and call counts of wrapped callables, by key."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        self.totals.setdefault(key, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[key] += time.perf_counter() - began
                self.calls[key] = self.calls.get(key, 0) + 1

        return timed


# --- inputs --------------------------------------------------------------------------------------------


@contextmanager
def auto_copy(folder: Path, copy_dir: Path, n: int, keep: bool) -> Iterator[tuple[Path, float | None]]:
    """A copy of the store `folder` rebuilt with index_type "auto", and the seconds the rebuild took
    (None when a kept copy is reused). Deleted on exit unless `keep`."""
    copy = copy_dir / f"store-{n}-auto"
    marker = copy.with_name(copy.name + ".source")
    source = folder.with_name(folder.name + ".recipe.json").read_text(encoding="utf-8")
    rebuild_s: float | None = None
    if not (keep and marker.exists() and marker.read_text(encoding="utf-8") == source):
        marker.unlink(missing_ok=True)
        shutil.rmtree(copy, ignore_errors=True)
        copy_dir.mkdir(parents=True, exist_ok=True)
        print(f"{NAME}: copying the {n:,} store and rebuilding it with index_type auto", flush=True)
        shutil.copytree(folder, copy)
        began = time.perf_counter()
        with LatentStore.open(copy) as store:
            store.rebuild(index_type="auto")
        rebuild_s = time.perf_counter() - began
        marker.write_text(source, encoding="utf-8")
    try:
        yield copy, rebuild_s
    finally:
        if not keep:
            marker.unlink(missing_ok=True)
            shutil.rmtree(copy, ignore_errors=True)


@contextmanager
def _faiss_threads(count: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _spread(count: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over range(count) (all of them if fewer)."""
    return sorted(set(np.linspace(0, count - 1, min(count, wanted)).round().astype(int).tolist()))


def _vm(key: str) -> int:
    """This process's /proc/self/status `key` (VmRSS, VmHWM) in bytes."""
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


# --- report --------------------------------------------------------------------------------------------


def format_result(result: dict[str, Any]) -> str:
    """The timing table and the phase split."""
    rows = []
    for run_ in result["runs"]:
        bare, find = run_["bare"], run_.get("find")
        rows.append(
            [
                f"{run_['n']:,}",
                run_["index"] + (" (auto)" if run_["index"] == run_["auto_picks"] else ""),
                find["seconds"] if find else None,
                find["images_per_s"] if find else None,
                bare["seconds"],
                run_.get("ratio_to_bare"),
                find["search_share"] if find else None,
                find["peak_over_before_mib"] if find else None,
                run_["rss_before_mib"],
                find["groups"] if find else None,
                bare["links_under_threshold"],
            ]
        )
    headers = [
        "images",
        "index",
        "find s",
        "img/s",
        "bare kNN s",
        "ratio",
        "faiss share",
        "+peak MiB",
        "store MiB",
        "groups",
        "links<=t",
    ]
    title = (
        f"find_duplicates at {result['preset']!r}, {result['neighbours']} neighbours, batch "
        f"{result['batch']}, {result['faiss_threads']} FAISS threads (goal: {result['goal_n']:,} in "
        f"<= {result['goal_s']:.0f} s; bare kNN marked * is extrapolated from sampled batches)"
    )
    for row, run_ in zip(rows, result["runs"], strict=True):
        if run_["bare"]["extrapolated"]:
            row[4] = f"{run_['bare']['seconds']:,.0f}*"
    parts = [table(title, headers, rows)]
    split = [
        [f"{r['n']:,} {r['index']}", *(r["find"]["phases_s"][p] for p in (*PHASES, "other"))]
        for r in result["runs"]
        if "find" in r
    ]
    parts.append(table("find_duplicates' seconds by phase", ["store", *PHASES, "other"], split))
    return "\n\n".join(parts)
