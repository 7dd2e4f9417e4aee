"""How long `find_duplicates` takes on large stores, how much memory it adds, where the time goes, and what
the IVF range search it uses above `EXACT_RANGE_MAX` images misses.

Stores: the seeded synthetic stores of `bench.latency_inputs` (10k, 100k and 1M latents; quick: 10k), under
the default whitened metric, cached under bench/work/query_latency. The issue's goal: all groups of a
1M-image store in at most 5 minutes. find_duplicates reads the library's vectors once and range-searches
them at the threshold with an index built for the run, so the store's own index type plays no part.

Per store: `find_duplicates(store, near)` once, timed, with its phases split by wrapping (bench only) the
store's methods on the instance and the module's `linked_pairs` and `_group`: "catalog" (`select_ids`,
`same_hash_groups`), "read vectors" (`duplicate_vectors`: catalog read, decode, whitening, normalising),
"range search" (time spent inside the `linked_pairs` generator: building the exact or IVF index and the
batched range searches) and "union + groups" (the rest: the union-find, its groups, `_group`). Baseline in
the same run: the bare range search, `linked_pairs` alone over the same vectors (read beforehand, untimed);
ratio = find_duplicates / bare.

Two signals: `find_duplicates` again with the preset's pHash rule (`HASH_RULES`), which adds a search of
each image's nearest latent neighbours and a read of the hashes. The synthetic stores get a random 64-bit
hash and five random region hashes per image (SQLite's random() and randomblob(), once, kept with the
cached store): unrelated pictures, so the rule's
cost is measured, not its links. Phase "read hashes" is `perceptual_hashes`.

Recall (on the 100k store's vectors; quick: 10k): PLANTED_BASES images get 1 to 4 copies each at a cosine
distance drawn uniformly up to the "similar" threshold (in a random direction orthogonal to the base), kept
in memory; `linked_pairs` (IVF above EXACT_RANGE_MAX vectors) is compared with an exact flat range search:
pair recall (exact pairs found directly), pair recall through groups (exact pairs whose images end in one
group), and group recall (exact groups found exactly), at the "near" and "similar" thresholds.

The region check, remembered (stores up to REMEMBERED_MAX images): the synthetic images have no files,
so the check's first run cannot be measured here (`bench.duplicates_files` measures it on real files).
What is measured is a later run, whose every candidate pair the catalog remembers
(`indexer.region_memory`): the candidates of one run are collected (the check's `links` wrapped, bench
only), a "no overlap" row (the truth for unrelated synthetic images) is kept for each, and then
`find_duplicates` with the pHash rule and the remembering region check is timed; a file read would fail
the run. Baseline in the same run: the two-signal run without the check.

Memory: `bench.memory.PeakMemory` (this process's VmHWM, reset through /proc/self/clear_refs at the start)
minus VmRSS just before: what find_duplicates adds on top of the open store.

Threads: FAISS (OpenMP) uses every core (`os.cpu_count()`), or `threads` when given; the count in use and
the load average (`os.getloadavg()`, other processes included) are recorded.
"""

from __future__ import annotations

import os
import re
import sqlite3
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
from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import (
    BATCH,
    EXACT_RANGE_MAX,
    IVF_PROBES,
    HashRule,
    find_duplicates,
    linked_pairs,
    resolve_hash_rule,
    resolve_region_rule,
    resolve_threshold,
)
from latentdex.indexer.region_links import RegionCheck
from latentdex.indexer.region_memory import pair_key
from latentdex.indexer.region_rule import NO_OVERLAP, LocalFeatures
from latentdex.indexer.store import CATALOG_FILE, LatentStore
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card

NAME = "duplicates_scale"
GOAL_S = 300.0  # the issue: all groups of a 1M-image store in at most 5 minutes
GOAL_N = 1_000_000
PRESET = "near"
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
PHASES = ("catalog", "read_vectors", "read_hashes", "range_search", "union_groups")
PROGRESS_STEPS = 10  # progress lines per store above PROGRESS_ABOVE images
PROGRESS_ABOVE = 100_000
REMEMBERED_MAX = 1_000_000  # the synthetic mixture gives ~10 candidate pairs an image: 11M rows at 1M
PLANTED_BASES = 3000
PLANTED_SEED = 7


def run(
    model_dir: str | os.PathLike[str] | None,
    quick: bool = False,
    threads: int = 0,
    stores_dir: Path = STORES_DIR,
) -> dict[str, Any]:
    """Measure find_duplicates on each store size and the IVF range search's recall."""
    card = read_card(model_dir or DEFAULT_MODEL_DIR)
    mixture = LatentMixture(dim=card.config.latent_dim)
    sizes = QUICK_SIZES if quick else FULL_SIZES
    planted_n = 10_000 if quick else 100_000
    with _faiss_threads(threads or os.cpu_count() or 1):
        result: dict[str, Any] = {
            "sizes": list(sizes),
            "mixture": asdict(mixture),
            "preset": PRESET,
            "batch": BATCH,
            "exact_range_max": EXACT_RANGE_MAX,
            "ivf_probes": IVF_PROBES,
            "goal_s": GOAL_S,
            "goal_n": GOAL_N,
            "faiss_threads": faiss.omp_get_max_threads(),
            "cpu_count": os.cpu_count(),
            "faiss_version": faiss.__version__,
            "memory_method": "VmHWM (/proc/self/status, reset via /proc/self/clear_refs) - VmRSS before",
            "load_average_start": list(os.getloadavg()),
            "runs": [],
        }
        for n in sizes:
            folder, build = ensure_store(stores_dir / f"store-{n}", n, card.latent_space_id, mixture)
            ensure_hashes(folder)
            with LatentStore.open(folder, read_only=True) as store:
                row = measure_store(store)
                if n == planted_n:
                    print(f"{NAME}: planted duplicates on the {n:,} store's vectors", flush=True)
                    result["planted"] = planted_recall(store)
            row["store_build"] = build
            result["runs"].append(row)
        result["load_average_end"] = list(os.getloadavg())
    return result


# --- measuring -----------------------------------------------------------------------------------------


def measure_store(store: LatentStore) -> dict[str, Any]:
    """find_duplicates once (timed, phases, memory), then the bare range search over the same vectors."""
    threshold = resolve_threshold(PRESET, None, store.distance_space)
    assert threshold is not None
    n = store.vector_count
    label = f"{n:,}"
    row: dict[str, Any] = {
        "n": n,
        "distance_space": store.distance_space,
        "threshold": threshold,
        "range_index": "flat (exact)" if n <= EXACT_RANGE_MAX else f"IVF-Flat {_lists(n)} lists",
        "load_average": list(os.getloadavg()),
    }
    row["find"] = timed_find(store, threshold, label)
    print(f"{NAME}: {label}: find_duplicates {row['find']['seconds']:.1f} s", flush=True)
    rule = resolve_hash_rule(PRESET, None, store.distance_space)
    if rule is not None:
        row["hash_rule"] = asdict(rule)
        row["find_two_signals"] = timed_find(store, threshold, f"{label}, two signals", rule)
        seconds = row["find_two_signals"]["seconds"]
        print(f"{NAME}: {label}: find_duplicates with pHash {seconds:.1f} s", flush=True)
        if n <= REMEMBERED_MAX:
            row["find_remembered"] = remembered_check(store, threshold, rule)
            seconds = row["find_remembered"]["seconds"]
            print(f"{NAME}: {label}: with the region check, remembered {seconds:.1f} s", flush=True)
    row["bare"] = bare_range(store, threshold)
    print(f"{NAME}: {label}: bare range search {row['bare']['seconds']:.1f} s", flush=True)
    row["ratio_to_bare"] = row["find"]["seconds"] / row["bare"]["seconds"]
    return row


def ensure_hashes(folder: Path) -> None:
    """Give every ok image of a synthetic store random perceptual hashes, once (a writable open first brings
    the catalog to the revision that has the column)."""
    LatentStore.open(folder).close()
    with sqlite3.connect(folder / CATALOG_FILE) as db:
        db.execute(
            "UPDATE images SET perceptual_hash = random(), region_hashes = randomblob(40) "
            "WHERE region_hashes IS NULL AND status = 'ok'"
        )


def timed_find(
    store: LatentStore, threshold: float, label: str, hash_rule: HashRule | None = None
) -> dict[str, Any]:
    """find_duplicates once, with its phases timed through wrappers and its memory peak."""
    clock = _Clock()
    every = max(1, store.vector_count // PROGRESS_STEPS)
    wrapped = ("select_ids", "same_hash_groups", "duplicate_vectors", "perceptual_hashes")
    for method in wrapped:
        setattr(store, method, clock.wrap(getattr(store, method), method))
    original = duplicates.linked_pairs

    def timed_pairs(*args: Any, **kwargs: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        pairs = original(*args, **kwargs)
        while True:
            began_ = time.perf_counter()
            try:
                item = next(pairs)
            except StopIteration:
                clock.add("range_search", time.perf_counter() - began_)
                return
            clock.add("range_search", time.perf_counter() - began_)
            yield item

    def progress(done: int, total: int) -> None:
        if total > PROGRESS_ABOVE and (done // every != (done - BATCH) // every or done == total):
            print(f"{NAME}: {label}: {done:,}/{total:,} ({time.perf_counter() - began:.0f} s)", flush=True)

    duplicates.linked_pairs = timed_pairs  # type: ignore[assignment]
    rss_before = _vm("VmRSS") / 2**20
    try:
        with PeakMemory() as memory:
            began = time.perf_counter()
            report = find_duplicates(store, threshold, progress=progress, hash_rule=hash_rule)
            seconds = time.perf_counter() - began
    finally:
        duplicates.linked_pairs = original
        for method in wrapped:
            delattr(store, method)
    totals = clock.totals
    phases = {
        "catalog": totals["select_ids"] + totals["same_hash_groups"],
        "read_vectors": totals["duplicate_vectors"],
        "read_hashes": totals["perceptual_hashes"],
        "range_search": totals["range_search"],
    }
    phases["union_groups"] = seconds - sum(phases.values())
    peak = memory.result()
    return {
        "seconds": seconds,
        "images_per_s": report.images_scanned / seconds,
        "images_scanned": report.images_scanned,
        "groups": len(report.groups),
        "images_in_groups": report.images_in_groups,
        "largest_group": max((len(g.members) for g in report.groups), default=0),
        "phases_s": phases,
        "rss_before_mib": rss_before,
        "peak_mib": peak["self_peak_mib"],
        "peak_over_before_mib": peak["self_peak_mib"] - rss_before,
        "memory": peak,
    }


def remembered_check(store: LatentStore, threshold: float, hash_rule: HashRule) -> dict[str, Any]:
    """find_duplicates with the pHash rule and a region check whose every candidate pair the catalog
    remembers (kept first as "no overlap": the synthetic images are unrelated and have no files)."""
    region_rule = resolve_region_rule(PRESET, None, store.distance_space)
    assert region_rule is not None
    collecting = RegionCheck(region_rule, _no_file)
    candidates: list[tuple[np.ndarray, np.ndarray]] = []

    def collect(_store: LatentStore, first: np.ndarray, second: np.ndarray, *_: Any) -> Iterator[Any]:
        candidates.append((first, second))
        return iter(())

    collecting.links = collect  # type: ignore[method-assign]
    find_duplicates(store, threshold, hash_rule=hash_rule, regions=collecting)
    [(first, second)] = candidates
    pairs = np.unique(np.sort(np.c_[first, second].astype(np.int64), axis=1), axis=0)
    began = time.perf_counter()
    hashes = store.content_hashes(np.unique(pairs).tolist())
    keys = sorted(
        {pair_key(hashes[a], hashes[b]) for a, b in pairs.tolist() if hashes.get(a) and hashes.get(b)}
    )
    memory = store.region_memory
    sample = keys[:: max(1, len(keys) // 1000)]
    kept_before = len(memory.recall(sample)) == len(sample)  # kept by an earlier run of this benchmark
    for start in range(0, 0 if kept_before else len(keys), 100_000):
        memory.remember(dict.fromkeys(keys[start : start + 100_000], NO_OVERLAP))
    kept_s = time.perf_counter() - began
    check = RegionCheck(region_rule, _no_file, remember=True)
    rss_before = _vm("VmRSS") / 2**20
    with PeakMemory() as memory:
        began = time.perf_counter()
        report = find_duplicates(store, threshold, hash_rule=hash_rule, regions=check)
        seconds = time.perf_counter() - began
    peak = memory.result()
    if check.files_read:
        raise RuntimeError(f"{check.files_read} files read: the memory did not answer every pair")
    return {
        "seconds": seconds,
        "candidate_pairs": len(pairs),
        "pairs_remembered": check.pairs_remembered,
        "region_seconds": check.seconds,
        "microseconds_per_pair": 1e6 * check.seconds / max(1, check.pairs_remembered),
        "groups": len(report.groups),
        "keep_rows_s": kept_s,
        "rows_kept_before": kept_before,
        "peak_over_before_mib": peak["self_peak_mib"] - rss_before,
    }


def _no_file(record: ImageRecord) -> LocalFeatures | None:
    raise RuntimeError(f"image {record.id} was read: a remembered run reads no file")


def bare_range(store: LatentStore, threshold: float) -> dict[str, Any]:
    """`linked_pairs` alone over the store's vectors (read beforehand, untimed): the baseline."""
    began = time.perf_counter()
    _, vectors, metric = store.duplicate_vectors(store.select_ids())
    read_s = time.perf_counter() - began
    rss_before = _vm("VmRSS") / 2**20
    with PeakMemory() as memory:
        began = time.perf_counter()
        pairs = sum(len(first) for first, _ in linked_pairs(vectors, metric, threshold))
        seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "images_per_s": len(vectors) / seconds,
        "pairs": pairs,
        "read_vectors_s": read_s,
        "peak_over_before_mib": memory.result()["self_peak_mib"] - rss_before,
    }


def planted_recall(store: LatentStore) -> dict[str, Any]:
    """`linked_pairs` (IVF above EXACT_RANGE_MAX vectors) on the store's vectors plus planted near-copies,
    against an exact flat range search, at the "near" and "similar" thresholds."""
    _, base_vectors, metric = store.duplicate_vectors(store.select_ids())
    if metric != "cosine":
        return {"skipped": f"the store's vectors are compared by {metric}, the planting is by cosine"}
    rng = np.random.default_rng(PLANTED_SEED)
    thresholds = {name: resolve_threshold(name, None, store.distance_space) for name in ("near", "similar")}
    most = max(t for t in thresholds.values() if t is not None)
    bases = rng.choice(len(base_vectors), min(PLANTED_BASES, len(base_vectors) // 30), replace=False)
    copies = []
    for base in bases.tolist():
        for _ in range(int(rng.integers(1, 5))):
            # a copy at cosine distance `delta` from its base, in a random direction orthogonal to it
            delta = rng.uniform(0.0005, most)
            noise = rng.standard_normal(base_vectors.shape[1]).astype(np.float32)
            noise -= noise @ base_vectors[base] * base_vectors[base]
            noise /= np.linalg.norm(noise)
            angle = np.arccos(1.0 - delta)
            copies.append(np.cos(angle) * base_vectors[base] + np.sin(angle) * noise)
    vectors = np.ascontiguousarray(np.concatenate([base_vectors, np.stack(copies).astype(np.float32)]))
    faiss.normalize_L2(vectors)
    count = len(vectors)
    result: dict[str, Any] = {
        "n": len(base_vectors),
        "planted": len(copies),
        "bases": len(bases),
        "vectors": count,
        "method": "flat (exact)" if count <= EXACT_RANGE_MAX else f"IVF-Flat {_lists(count)} lists",
        "nprobe": IVF_PROBES,
    }
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    began = time.perf_counter()
    limits, scores, found = exact.range_search(vectors, 1.0 - most)
    result["exact_range_s"] = time.perf_counter() - began
    sources = np.repeat(np.arange(count), np.diff(limits).astype(np.int64))
    later = found > sources
    exact_first, exact_second, exact_distance = sources[later], found[later], 1.0 - scores[later]
    result["rows"] = []
    for name, threshold in thresholds.items():
        assert threshold is not None
        within = exact_distance <= threshold
        truth_pairs = (exact_first[within], exact_second[within])
        began = time.perf_counter()
        parts = list(linked_pairs(vectors, metric, threshold))
        seconds = time.perf_counter() - began
        first = np.concatenate([p[0] for p in parts])
        second = np.concatenate([p[1] for p in parts])
        result["rows"].append(
            {"threshold": name, "distance": threshold, "seconds": seconds, "pairs": len(first)}
            | _recall((first, second), truth_pairs, count)
        )
    return result


def _recall(
    found: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray], count: int
) -> dict[str, Any]:
    """Direct pair recall, pair recall through the groups, exact-group recall and mixed groups."""
    truth_keys = set((truth[0] * count + truth[1]).tolist())
    found_keys = set((np.minimum(*found) * count + np.maximum(*found)).tolist())
    found_labels, found_groups = _components(found, count)
    truth_labels, truth_groups = _components(truth, count)
    same = found_labels[truth[0]] == found_labels[truth[1]]
    return {
        "exact_pairs": len(truth_keys),
        "groups": len(found_groups),
        "exact_groups": len(truth_groups),
        "pair_recall": len(truth_keys & found_keys) / max(1, len(truth_keys)),
        "pair_recall_groups": float(same.mean()) if len(same) else 1.0,
        "group_recall": len(found_groups & truth_groups) / max(1, len(truth_groups)),
        "mixed_groups": sum(len(set(truth_labels[list(g)].tolist())) > 1 for g in found_groups),
    }


def _components(pairs: tuple[np.ndarray, np.ndarray], count: int) -> tuple[np.ndarray, set[tuple[int, ...]]]:
    """Component label of each row, and the components of two or more rows as sorted tuples."""
    links = duplicates.UnionFind(np.arange(count))
    for a, b in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        links.union_slots(a, b)
    labels = np.array([links._root(slot) for slot in range(count)])
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = {tuple(part.tolist()) for part in np.split(order, bounds) if len(part) > 1}
    return labels, groups


# --- helpers -------------------------------------------------------------------------------------------


class _Clock:
    """Seconds spent in wrapped calls, by key."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        self.totals[key] = self.totals.get(key, 0.0) + seconds

    def wrap(self, function: Callable[..., Any], key: str) -> Callable[..., Any]:
        self.totals.setdefault(key, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - began)

        return timed


def _lists(n: int) -> int:
    """The IVF lists `linked_pairs` builds for `n` vectors (as `duplicates.range_index`)."""
    return 2 ** round(np.log2(np.sqrt(n)))


@contextmanager
def _faiss_threads(count: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _vm(key: str) -> int:
    """This process's /proc/self/status `key` (VmRSS, VmHWM) in bytes."""
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


# --- report --------------------------------------------------------------------------------------------


def format_result(result: dict[str, Any]) -> str:
    """The timing table with find_duplicates' phases, and the planted-duplicate recall."""

    def row(r: dict[str, Any], key: str, label: str) -> list[Any]:
        find = r[key]
        return [
            label,
            r["range_index"],
            find["seconds"],
            find["images_per_s"],
            find["peak_over_before_mib"],
            r["bare"]["seconds"],
            find["seconds"] / r["bare"]["seconds"],
            find["groups"],
            *(find["phases_s"][p] for p in PHASES),
        ]

    rows = [row(r, "find", f"{r['n']:,}") for r in result["runs"]]
    rows += [
        row(r, "find_two_signals", f"{r['n']:,} + pHash") for r in result["runs"] if "find_two_signals" in r
    ]
    headers = ["images", "range index", "find s", "img/s", "+peak MiB", "bare s", "ratio", "groups"]
    headers += [f"{p} s" for p in PHASES]
    load = ", ".join(f"{x:.2f}" for x in result["load_average_start"])
    title = (
        f"find_duplicates at {result['preset']!r}, batch {result['batch']}, IVF nprobe "
        f"{result['ivf_probes']}, {result['faiss_threads']} FAISS threads, load average at start {load} "
        f"(goal: {result['goal_n']:,} in <= {result['goal_s']:.0f} s)"
    )
    parts = [table(title, headers, rows)]
    remembered = [
        [
            f"{r['n']:,}",
            r["find_two_signals"]["seconds"],
            r["find_remembered"]["seconds"],
            r["find_remembered"]["seconds"] / r["find_two_signals"]["seconds"],
            r["find_remembered"]["pairs_remembered"],
            r["find_remembered"]["microseconds_per_pair"],
            r["find_remembered"].get("peak_over_before_mib", "-"),
        ]
        for r in result["runs"]
        if "find_remembered" in r
    ]
    if remembered:
        parts.append(
            table(
                "a later run of the region check: every candidate pair remembered in the catalog",
                [
                    "images",
                    "pHash s",
                    "+ remembered check s",
                    "ratio",
                    "pairs remembered",
                    "us / pair",
                    "extra peak MiB",
                ],
                remembered,
            )
        )
    planted = result.get("planted")
    if planted and "rows" in planted:
        recall = [
            [
                r["threshold"],
                r["distance"],
                r["seconds"],
                r["pair_recall"],
                r["pair_recall_groups"],
                r["group_recall"],
                r["groups"],
                r["exact_groups"],
                r["mixed_groups"],
            ]
            for r in planted["rows"]
        ]
        parts.append(
            table(
                f"planted duplicates: {planted['n']:,} vectors + {planted['planted']:,} copies of "
                f"{planted['bases']:,}; linked_pairs ({planted['method']}, nprobe {planted['nprobe']}) vs "
                f"exact flat range search ({planted['exact_range_s']:.1f} s)",
                [
                    "threshold",
                    "distance",
                    "s",
                    "pair recall",
                    "via groups",
                    "group recall",
                    "groups",
                    "exact",
                    "mixed",
                ],
                recall,
            )
        )
    return "\n\n".join(parts)
