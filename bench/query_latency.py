"""Query latency and throughput of the gRPC server against baselines measured in the same run.

Stores: 10k, 100k and 1M seeded synthetic latents (`bench.synthetic_latents`; quick: 10k only, fewer
queries) under the default whitened metric, each with two index types: flat (exact) and the one "auto"
picks for its size (`indexer.vectors.resolve_index_type`: flat below 100k, HNSW up to 2M). The flat store
is built through `LatentStore.upsert_images` (`bench.latency_inputs.ensure_store`); the auto one is a copy
of its folder rebuilt with `LatentStore.rebuild(index_type="auto")` (`ensure_rebuilt_store`; the copy and
rebuild seconds are reported). Both are kept in bench/work/query_latency (store-<N>, store-<N>-auto) with
their recipes and reused by later runs. Where auto resolves to flat (10k) the two are the same store:
it is measured once and its rows say so. Records carry plausible photo metadata (path, size, hash,
4032x3024 JPEG, EXIF time and camera) so that replies are as large as real ones.

Server: `service.server.start_server` over `QueryEngine` and `LiveStore` (ServerConfig's default 8 RPC
workers, 64 calls in progress, FAISS on one thread per RPC thread) in a child process ("spawn"), one per
store, on 127.0.0.1, reached through the real `service.client`. Every query asks for k=10.

Per store, in this order:

1. One caller, QueryByLatent: three variants alternate query by query (raw, echo, server, raw, ...;
   `bench.machine.time_interleaved`), so load from other processes hits them alike. raw:
   `LatentStore.search(latent, 10)` on the same store opened read-only here (FAISS plus the store's
   checks and hit objects; no metadata); echo: the health Check (grpc.health.v1) on the client's channel,
   the loopback round trip of an almost empty call; server: `LatentdexClient.query_by_latent`. Reported:
   p50/p99 of each, the server's own time (`QueryResult.timings`), and ratio = server p50 / (raw p50 +
   echo p50). Goal: <= 1.3 at every size and index type.
2. Concurrent callers, QueryByLatent beside the echo: 1, 8 and 32 client processes
   (`bench.latency_callers.ClientProcesses`, started once with "spawn" and reused for every store), each
   with its own channel, released together by a barrier and sending its share one after another. Each
   round runs, for every caller count, the queries and then as many echoes from the same processes; the
   rounds repeat so the machine's load hits all loads alike. Reported per (store, callers): p50/p99 of
   every call, QPS = calls / wall time from the release to the last reply (summed over the rounds), for
   both, and QPS / echo QPS. Goal: >= 0.5 with 8 callers at 1M with auto (the ratio is given for all).
3. QueryByImage without previews against the in-process decode + encode + search of the same image
   bytes, alternating image by image (`bench.latency_images.against_in_process`): camera-like 640x480
   JPEGs (crops of the wallpaper photos, `bench.photo_folders`; generated gradients + noise without
   them). The model here is loaded as the server loads it (precision "auto"). Reported: p50/p99 of
   both, their stage medians, and ratio = server p50 / in-process p50. Goal: <= 1.5.
4. QueryByImage with previews of the matches (fewer images): the split of the call into the server's
   stages, the rest of its total and the transport (`bench.latency_images.with_previews`).

Threads: `threads` > 0 sets torch and FAISS (OpenMP) threads both here and in the server (0: the
libraries' defaults, and ServerConfig's one FAISS thread per RPC thread). The in-process baselines (raw
search, image decode + encode + search) run, with the server calls they alternate with, in one thread set
up as the server's RPC threads are (`bench.latency_server.rpc_like_thread`): OpenMP's count is per thread,
and torch's intra-op threads behave differently in the main thread. The torch/FAISS counts of that
thread and of the server's RPC threads are recorded per store. Stores are built before, with the default
threads.

This module runs the benchmark and checks its goals; the stores and query JPEGs are made by
`bench.latency_inputs`, the server by `bench.latency_server`, the client processes by
`bench.latency_callers`, the image queries by `bench.latency_images`, the tables by `bench.latency_tables`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import grpc
import numpy as np
import torch

from bench import latency_tables
from bench.latency_callers import Call, ClientProcesses, K, aggregate, caller, latency_stats
from bench.latency_images import IMAGE_GOAL, against_in_process, with_previews
from bench.latency_inputs import (
    IMAGE_FILES,
    IMAGE_SIZE,
    WORK_DIR,
    ensure_rebuilt_store,
    ensure_store,
    image_folder,
    store_recipe,
)
from bench.latency_server import (
    SERVER_MAX_CONCURRENT,
    SERVER_START_TIMEOUT_S,
    SERVER_WORKERS,
    rpc_like_thread,
    served,
    served_group,
    thread_counts,
)
from bench.machine import time_interleaved
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.store import LatentStore
from latentdex.indexer.vectors import resolve_index_type
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card
from latentdex.models.inference import LatentCodec
from latentdex.service.client import LatentdexClient, connect

NAME = "query_latency"
GOAL = 1.3  # one caller: server p50 over (raw p50 + echo p50)
QPS_GOAL = 0.5  # QPS over the echo's QPS with as many callers, where QPS_GOAL_AT says
QPS_GOAL_AT = {"n": 1_000_000, "index_type": "auto", "callers": 8}
INDEX_TYPES = ("flat", "auto")
CALLERS = (1, 8, 32)
LOADS: tuple[Call, ...] = ("query", "echo")
QUERY_SEED = 1
LOAD_SECONDS = 1.0  # the least a concurrent load runs per round (in one-caller time) where that is cheap


@dataclass(frozen=True)
class StoreRun:
    """One store size: vectors, queries of each one-caller variant, and calls of each concurrent load
    (split over the callers and rounds; at least one per caller and round)."""

    n: int
    one_caller: int
    per_load: int


@dataclass(frozen=True)
class LatencySizes:
    """The store sizes, untimed warm-up calls per variant, rounds of the concurrent loads, image queries
    without and with previews."""

    stores: tuple[StoreRun, ...]
    warmup: int
    rounds: int
    images: int
    preview_images: int


FULL = LatencySizes(
    stores=(StoreRun(10_000, 1000, 960), StoreRun(100_000, 600, 960), StoreRun(1_000_000, 200, 288)),
    warmup=20,
    rounds=3,
    images=IMAGE_FILES,
    preview_images=16,
)
QUICK = LatencySizes(stores=(StoreRun(10_000, 200, 128),), warmup=10, rounds=2, images=16, preview_images=8)


@dataclass(frozen=True)
class StoreVariant:
    """A store to measure: its size, the index types asked for that it stands for (("flat", "auto") where
    auto resolves to flat), its folder, and what making it took."""

    run: StoreRun
    index_types: tuple[str, ...]
    folder: Path
    build: dict[str, Any]


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    threads: int = 0,
    work_dir: Path = WORK_DIR,
    placement: str = "process",
) -> dict[str, Any]:
    """Make (or reuse) the stores and measure each; `placement` "process" or "thread" (the server's).

    Returns the JSON-ready result.
    """
    sizes = QUICK if quick else FULL
    card = read_card(model_dir or DEFAULT_MODEL_DIR)
    mixture = LatentMixture(dim=card.config.latent_dim)
    result: dict[str, Any] = {
        "sizes": asdict(sizes),
        "mixture": asdict(mixture),
        "k": K,
        "metric": "whitened",
        "index_types": INDEX_TYPES,
        "callers": CALLERS,
        "goals": {
            "one_caller_ratio_max": GOAL,
            "qps_vs_echo_min": QPS_GOAL,
            "qps_goal_at": QPS_GOAL_AT,
            "image_ratio_max": IMAGE_GOAL,
        },
        "placement": placement,
        "server_config": {"max_workers": SERVER_WORKERS, "max_concurrent_rpcs": SERVER_MAX_CONCURRENT},
        "threads_asked": threads,
        "faiss_version": faiss.__version__,
        "grpc_version": grpc.__version__,
    }
    started = time.perf_counter()
    images, image_source = image_folder(Path(data_root) / "raw", work_dir / f"images-{IMAGE_FILES}")
    image_bytes = [p.read_bytes() for p in sorted(images.glob("*.jpg"))[: sizes.images]]
    result["images"] = {
        "folder": str(images),
        "source": image_source,
        "size": IMAGE_SIZE,
        "mean_kb": statistics.mean(len(b) for b in image_bytes) / 1000,
    }
    variants = prepare_stores(sizes, work_dir, card.latent_space_id, mixture)
    result["inputs_ready_s"] = time.perf_counter() - started
    most = max(max(s.one_caller, s.per_load) for s in sizes.stores) + sizes.warmup
    queries = mixture.sample(most, QUERY_SEED)
    result["stores"] = []
    # `serve --processes` with one process per core, where there is more than one
    group_processes = os.cpu_count() or 1
    result["process_group"] = group_processes if group_processes > 1 else None
    with _threads(threads):
        codec = LatentCodec.load(model_dir, precision="auto")  # as the server loads it
        result["precision"] = codec.precision
        load = ClientProcesses(max(CALLERS), SERVER_START_TIMEOUT_S, CALLERS)
        try:
            for variant in variants:
                with served(variant.folder, model_dir, threads, placement) as server:
                    row = measure_store(
                        variant, server.port, threads, sizes, queries, image_bytes, codec, load
                    )
                row.update(store=variant.build, folder=str(variant.folder), server=server.facts)
                if group_processes > 1 and "auto" in variant.index_types:
                    with served_group(variant.folder, model_dir, group_processes) as group:
                        target = f"127.0.0.1:{group.port}"
                        calls = row["concurrent_calls"]
                        loads = concurrent(target, queries, calls, sizes.rounds, load)
                    row["process_group"] = {"processes": group_processes, "concurrent": loads}
                result["server"] = server.facts
                result["stores"].append(row)
        finally:
            load.close()
    result["goals_met"] = goals_met(result["stores"])
    return result


def prepare_stores(
    sizes: LatencySizes, work_dir: Path, model_id: str, mixture: LatentMixture
) -> list[StoreVariant]:
    """The flat store of each size, and beside it its auto copy where auto resolves to another type."""
    variants = []
    for store_run in sizes.stores:
        n = store_run.n
        flat, build = ensure_store(work_dir / f"store-{n}", n, model_id, mixture)
        if resolve_index_type("auto", n)[0] == "flat":
            variants.append(StoreVariant(store_run, INDEX_TYPES, flat, build))
            continue
        variants.append(StoreVariant(store_run, ("flat",), flat, build))
        recipe = store_recipe(n, model_id, mixture)
        auto, rebuilt = ensure_rebuilt_store(flat, recipe, work_dir / f"store-{n}-auto", "auto")
        variants.append(StoreVariant(store_run, ("auto",), auto, rebuilt))
    return variants


# --- measuring -----------------------------------------------------------------------------------------


def measure_store(
    variant: StoreVariant,
    port: int,
    threads: int,
    sizes: LatencySizes,
    queries: np.ndarray,
    image_bytes: list[bytes],
    codec: LatentCodec,
    load: ClientProcesses,
) -> dict[str, Any]:
    """One store: one caller against raw + echo, concurrent callers beside the echo, image queries.

    The in-process baselines, with the server calls they alternate with, run in a thread set up as the
    server's RPC threads are (`threads` as for the server).
    """
    store = LatentStore.open(variant.folder, read_only=True)
    target = f"127.0.0.1:{port}"
    baseline = rpc_like_thread(threads)
    try:
        row: dict[str, Any] = {
            "n": store.vector_count,
            "index_types": list(variant.index_types),
            "vector_kind": store.vector_kind,
            "baseline_threads": baseline.submit(thread_counts).result(),
        }
        if len(variant.index_types) > 1:
            row["note"] = f"{' and '.join(variant.index_types)} are the same store here: measured once"
        with connect(target) as client:
            row["one_caller"] = baseline.submit(
                one_caller, store, client, queries, variant.run.one_caller, sizes.warmup
            ).result()
            # about LOAD_SECONDS per load and round where the store answers fast, at least per_load calls
            fast = round(LOAD_SECONDS * sizes.rounds * row["one_caller"]["server"]["qps"])
            row["concurrent_calls"] = max(variant.run.per_load, 0 if sizes is QUICK else fast)
            row["concurrent"] = concurrent(target, queries, row["concurrent_calls"], sizes.rounds, load)
            row["image_queries"] = baseline.submit(
                against_in_process, store, codec, client, image_bytes, sizes.warmup
            ).result()
            previews = image_bytes[: sizes.preview_images]
            row["image_previews"] = with_previews(client, previews, sizes.warmup)
    finally:
        baseline.shutdown()
        store.close()
    return row


def one_caller(
    store: LatentStore, client: LatentdexClient, queries: np.ndarray, count: int, warmup: int
) -> dict[str, Any]:
    """raw, echo and server alternating query by query; the same latents for raw and server."""
    echo = caller(client, "echo")  # takes a latent, as a query does, and does not send it
    raw_next, server_next = _cycle(queries), _cycle(queries)
    engine: list[dict[str, float]] = []

    def raw() -> None:
        store.search(next(raw_next)[None], K)

    def server() -> None:
        result = client.query_by_latent(next(server_next), K)
        if len(result.matches) != K:
            raise RuntimeError(f"the server found {len(result.matches)} matches, not {K}")
        engine.append(result.timings)

    timings = time_interleaved(
        {"raw": raw, "echo": lambda: echo(queries[0]), "server": server}, warmup=warmup, repeat=count
    )
    stats: dict[str, Any] = {name: latency_stats(t.samples) for name, t in timings.items()}
    engine = engine[warmup:]
    stats["server_engine"] = latency_stats([t["total"] for t in engine])
    stats["server_stages_p50_ms"] = {
        name: 1000 * statistics.median(t[name] for t in engine) for name in engine[0] if name != "total"
    }
    ratio = stats["server"]["p50_ms"] / (stats["raw"]["p50_ms"] + stats["echo"]["p50_ms"])
    return {"queries": count, **stats, "ratio": ratio, "meets_goal": ratio <= GOAL}


def concurrent(
    target: str, queries: np.ndarray, per_load: int, rounds: int, load: ClientProcesses
) -> list[dict[str, Any]]:
    """QueryByLatent and the echo from each count of CALLERS client processes, in `rounds` rounds.

    Each round runs, for every caller count, the queries and then as many echoes from the same
    processes; caller i sends its own part of the queries. Per (callers, load): every call's latency,
    and QPS = its calls / its summed wall time.
    """
    per_caller = {callers: max(1, per_load // (callers * rounds)) for callers in CALLERS}
    runs: dict[tuple[int, Call], list[dict[str, Any]]] = {(c, call): [] for c in CALLERS for call in LOADS}
    for r in range(rounds):
        for callers in CALLERS:
            count = per_caller[callers]
            first = r * callers * count
            shares = [
                queries.take(range(first + i * count, first + (i + 1) * count), axis=0, mode="wrap")
                for i in range(callers)
            ]
            for call in LOADS:
                runs[callers, call].append(load.run(target, shares, call))
    rows = []
    for callers in CALLERS:
        row: dict[str, Any] = {
            "callers": callers,
            "per_caller_per_round": per_caller[callers],
            "rounds": rounds,
        }
        for call in LOADS:
            row[call] = _pooled(runs[callers, call])
        row["qps_vs_echo"] = row["query"]["qps"] / row["echo"]["qps"]
        rows.append(row)
    return rows


def goals_met(stores: list[dict[str, Any]]) -> dict[str, Any]:
    """Each goal: met (True / False), or None where the store it is set at was not measured. The
    throughput goal is met by one process or by the process group (each against its own echo)."""
    qps_at = [
        load["qps_vs_echo"] >= QPS_GOAL
        for row in stores
        if row["n"] == QPS_GOAL_AT["n"] and QPS_GOAL_AT["index_type"] in row["index_types"]
        for loads in (row["concurrent"], row.get("process_group", {}).get("concurrent", []))
        for load in loads
        if load["callers"] == QPS_GOAL_AT["callers"]
    ]
    return {
        "one_caller_ratio": all(row["one_caller"]["meets_goal"] for row in stores),
        "qps_vs_echo": any(qps_at) if qps_at else None,
        "image_ratio": all(row["image_queries"]["meets_goal"] for row in stores),
    }


def _pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One load's rounds as one: percentiles over every call, QPS over the summed wall time."""
    samples = [s for each in rounds for s in each["samples"]]
    stats = aggregate([samples], sum(each["wall_s"] for each in rounds))
    del stats["samples"]  # percentiles are kept; every call's latency would be most of the file
    return {**stats, "qps_per_round": [each["qps"] for each in rounds]}


def _cycle(queries: np.ndarray) -> Iterator[np.ndarray]:
    while True:
        yield from queries


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """`threads` (> 0) for torch and FAISS here; the counts before are restored at the end."""
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    if threads > 0:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def format_result(result: dict[str, Any]) -> str:
    """The printed tables (`bench.latency_tables`)."""
    return latency_tables.format_result(result)
