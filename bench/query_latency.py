"""Query latency of the gRPC server against the raw in-process search of the same queries, in the same run.

For each store size (10k, 100k and 1M seeded synthetic latents, `bench.synthetic_latents`; quick: 10k only,
fewer queries) a flat (exact, the default) store under the default whitened metric is built through
`LatentStore.upsert_images` in 50k-row transactions with one flush at the end (the build time and upsert
rate are reported), and kept in bench/work/query_latency/store-<N> for later runs: a JSON file beside it
records the recipe, and a store whose recipe differs is built again. Its records carry plausible photo
metadata (path, size, hash, 4032x3024 JPEG, EXIF time and camera) so that replies are as large as real
ones. A real server (`service.server.start_server` over `QueryEngine` and `LiveStore`, ServerConfig's
default 8 workers and 64 calls in progress) answers on 127.0.0.1 through the real `service.client`. Every
query asks for k=10.

QueryByLatent, one client: three variants alternate query by query (raw, echo, server, raw, ...; see
`bench.machine.time_interleaved`), so load from other processes hits them alike:

- raw: `LatentStore.search(latent, 10)` on the same store opened read-only in this process (the FAISS
  search plus the store's checks and hit objects; no metadata);
- echo: the standard health Check (grpc.health.v1) on the client's channel: the loopback round trip of an
  almost empty call (GetInfo, measured at 0.88 vs 0.72 ms p50, also reads the manifest file);
- server: `LatentdexClient.query_by_latent(latent, 10)`.

Reported: p50/p99 ms of each, the server's QPS (queries / summed latency), the server's own time
(`QueryResult.timings`: total, search, metadata), and ratio = server p50 / (raw p50 + echo p50); the goal
is a ratio <= 1.3.

QueryByLatent, concurrent: five loads over the same queries, run in interleaved rounds (each round runs all
five on its part of the queries): 1 client; 8 client threads here, each with its own client (own channel);
8 client processes, each with its own client; and as baselines 1 thread and 8 threads calling
`LatentStore.search` here. Concurrent clients start together (a barrier) and send their shares one after
another; QPS = queries / wall time from the start to the last reply, summed over the rounds; p50/p99 over
every call. Speeds are also given against the raw 1-thread QPS of the same rounds. The client processes
are started once ("spawn") and reused for every store. They are there because 8 client threads in one
Python process share its GIL: the load generator itself then limits what is measured.

QueryByImage: camera-like JPEGs (640x480 crops of the wallpaper photos, `bench.photo_folders`; generated
gradients + noise when no photos are there), sent as bytes with previews of the matches on (k=10). The
median of each server stage (`QueryResult.timings`: image decode, encode, search, metadata fetch, preview
= decoding the matches' latents and encoding them as PNG) and of the client-observed call; the rest of the
server total is "other", and client call - server total is the transport: request and reply
(de)serialisation, previews included, and the loopback. Image queries run after the latent ones and are
not interleaved with a baseline: the split of one call is consistent, but absolute stage times move with
the machine's load between sections (compare their search stage with the latent queries' with care).

Placement: the server runs in a child process ("spawn"), as a deployed server does; the clients and the
raw search run here. Measured at 10k on a 2-core machine with both placements side by side: one client
saw the same p50 (3.0 ms either way), but 8 client threads got 390 QPS from a server in its own process
and 328 from one in this process's threads, which then share the GIL with the clients.

Threads: `threads` > 0 sets torch and FAISS (OpenMP) threads both here and in the server (0: the libraries'
defaults, one per core); the counts in use are recorded. A single-query flat search in FAISS runs on one
thread whatever the setting (measured at 1M: 52 ms with 1 or 2 threads).

This module runs the benchmark and computes its ratios; the stores and query JPEGs are made by
`bench.latency_inputs`, the server by `bench.latency_server`, the load and its latencies by
`bench.latency_callers`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import grpc
import numpy as np
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.latency_callers import (
    ClientProcesses,
    K,
    aggregate,
    latency_stats,
    raw_search,
    server_query,
    threads_together,
)
from bench.latency_inputs import BUILD_CHUNK, IMAGE_FILES, IMAGE_SIZE, WORK_DIR, ensure_store, image_folder
from bench.latency_server import (
    SERVER_MAX_CONCURRENT,
    SERVER_START_TIMEOUT_S,
    SERVER_WORKERS,
    Served,
    served,
)
from bench.machine import time_interleaved
from bench.report import table
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.store import LatentStore
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card
from latentdex.service.client import LatentdexClient, QueryOptions, connect
from latentdex.service.server import ServerConfig

NAME = "query_latency"
GOAL = 1.3  # server p50 over (raw p50 + echo p50)
CLIENTS = 8
QUERY_SEED = 1
IMAGE_STAGES = ("image_decode", "encode", "search", "metadata", "preview")
CONCURRENT_LOADS = (
    "server_1_client",
    "server_client_threads",
    "server_client_processes",
    "raw_1_thread",
    "raw_threads",
)


@dataclass(frozen=True)
class StoreRun:
    """One store size: how many vectors, one-client queries, and queries per client of the 8."""

    n: int
    sequential: int
    per_client: int


@dataclass(frozen=True)
class LatencySizes:
    """The store sizes, untimed warm-up calls per variant, rounds of the concurrent loads, image queries."""

    stores: tuple[StoreRun, ...]
    warmup: int
    rounds: int
    images: int


FULL = LatencySizes(
    stores=(StoreRun(10_000, 2000, 125), StoreRun(100_000, 1000, 100), StoreRun(1_000_000, 300, 40)),
    warmup=20,
    rounds=4,
    images=IMAGE_FILES,
)
QUICK = LatencySizes(stores=(StoreRun(10_000, 200, 24),), warmup=10, rounds=2, images=16)


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    threads: int = 0,
    work_dir: Path = WORK_DIR,
    placement: str = "process",
) -> dict[str, Any]:
    """Build (or reuse) the stores and measure each; `placement` "process" or "thread" (the server's).

    Returns the JSON-ready result.
    """
    sizes = QUICK if quick else FULL
    card = read_card(model_dir or DEFAULT_MODEL_DIR)
    mixture = LatentMixture(dim=card.config.latent_dim)
    with _threads(threads):
        result: dict[str, Any] = {
            "sizes": asdict(sizes),
            "mixture": asdict(mixture),
            "k": K,
            "index_type": "flat",
            "metric": "whitened",
            "goal_ratio": GOAL,
            "clients": CLIENTS,
            "placement": placement,
            "server_config": {"max_workers": SERVER_WORKERS, "max_concurrent_rpcs": SERVER_MAX_CONCURRENT},
            "threads_asked": threads,
            "faiss_threads": faiss.omp_get_max_threads(),
            "torch_threads": torch.get_num_threads(),
            "faiss_version": faiss.__version__,
            "grpc_version": grpc.__version__,
        }
        started = time.perf_counter()
        images, image_source = image_folder(Path(data_root) / "raw", work_dir / f"images-{IMAGE_FILES}")
        result["images"] = {"folder": str(images), "source": image_source, "size": IMAGE_SIZE}
        result["images_ready_s"] = time.perf_counter() - started
        image_bytes = [p.read_bytes() for p in sorted(images.glob("*.jpg"))[: sizes.images]]
        result["images"]["mean_kb"] = statistics.mean(len(b) for b in image_bytes) / 1000
        most = max(max(s.sequential, CLIENTS * s.per_client) for s in sizes.stores) + sizes.warmup
        queries = mixture.sample(most, QUERY_SEED)
        result["stores"] = []
        load = ClientProcesses(CLIENTS, SERVER_START_TIMEOUT_S)
        try:
            for store_run in sizes.stores:
                folder, build = ensure_store(
                    work_dir / f"store-{store_run.n}", store_run.n, card.model_id, mixture
                )
                with served(folder, model_dir, threads, placement) as server:
                    row = measure_store(folder, server, store_run, sizes, queries, image_bytes, load)
                row["store"] = build
                result["server"] = server.facts
                result["stores"].append(row)
        finally:
            load.close()
    return result


# --- measuring -----------------------------------------------------------------------------------------


def measure_store(
    folder: Path,
    server: Served,
    store_run: StoreRun,
    sizes: LatencySizes,
    queries: np.ndarray,
    image_bytes: list[bytes],
    load: ClientProcesses,
) -> dict[str, Any]:
    """One store size: one client interleaved with raw and echo, then 8 clients, then image queries."""
    store = LatentStore.open(folder, read_only=True)
    target = f"127.0.0.1:{server.port}"
    try:
        with connect(target) as client:
            row: dict[str, Any] = {"n": store.vector_count}
            row.update(one_client(store, client, queries, store_run.sequential, sizes.warmup))
            row["concurrent"] = concurrent(store, client, target, queries, store_run, sizes.rounds, load)
            row["image_queries"] = image_queries(client, image_bytes, sizes.warmup)
    finally:
        store.close()
    return row


def one_client(
    store: LatentStore, client: LatentdexClient, queries: np.ndarray, count: int, warmup: int
) -> dict[str, Any]:
    """raw, echo and server alternating query by query; the same latents for raw and server."""
    health = health_pb2_grpc.HealthStub(client.channel)
    check = health_pb2.HealthCheckRequest(service="")
    raw_next, server_next = _cycle(queries), _cycle(queries)
    engine: list[dict[str, float]] = []

    def raw() -> None:
        store.search(next(raw_next)[None], K)

    def echo() -> None:
        health.Check(check, timeout=30)

    def server() -> None:
        result = client.query_by_latent(next(server_next), K)
        if len(result.matches) != K:
            raise RuntimeError(f"the server found {len(result.matches)} matches, not {K}")
        engine.append(result.timings)

    timings = time_interleaved({"raw": raw, "echo": echo, "server": server}, warmup=warmup, repeat=count)
    stats: dict[str, Any] = {name: latency_stats(t.samples) for name, t in timings.items()}
    engine = engine[warmup:]
    stats["server_engine"] = latency_stats([t["total"] for t in engine])
    stats["server_stages_p50_ms"] = {
        name: 1000 * statistics.median(t[name] for t in engine) for name in engine[0] if name != "total"
    }
    ratio = stats["server"]["p50_ms"] / (stats["raw"]["p50_ms"] + stats["echo"]["p50_ms"])
    return {"queries": count, **stats, "ratio": ratio, "meets_goal": ratio <= GOAL}


def concurrent(
    store: LatentStore,
    client: LatentdexClient,
    target: str,
    queries: np.ndarray,
    store_run: StoreRun,
    rounds: int,
    load: ClientProcesses,
) -> dict[str, Any]:
    """Five loads over the same queries, in `rounds` rounds of (1 client, CLIENTS client threads, CLIENTS
    client processes, raw 1 thread, raw CLIENTS threads), so load from other processes hits them alike.

    Each of CLIENTS clients has its share of the queries, split into `rounds` parts; round r sends part r
    of every share (the single-thread loads send them all, one after another). Per load: every call's
    latency, and QPS = its queries / its summed wall time.
    """
    per_client = store_run.per_client
    parts = [np.array_split(queries[c * per_client : (c + 1) * per_client], rounds) for c in range(CLIENTS)]
    clients = [connect(target) for _ in range(CLIENTS)]
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CONCURRENT_LOADS}
    try:
        for each in clients:  # connect and warm each channel before the clock starts
            each.query_by_latent(queries[0], K)
        for r in range(rounds):
            shares = [part[r] for part in parts]
            every = [np.concatenate(shares)]
            runs["server_1_client"].append(threads_together([partial(server_query, client)], every))
            threads = [partial(server_query, each) for each in clients]
            runs["server_client_threads"].append(threads_together(threads, shares))
            runs["server_client_processes"].append(load.run(target, shares))
            runs["raw_1_thread"].append(threads_together([partial(raw_search, store)], every))
            runs["raw_threads"].append(threads_together([partial(raw_search, store)] * CLIENTS, shares))
    finally:
        for each in clients:
            each.close()
    result: dict[str, Any] = {"clients": CLIENTS, "per_client": per_client, "rounds": rounds}
    for kind, parts_run in runs.items():
        samples = [s for run_ in parts_run for s in run_.pop("samples")]
        wall = sum(run_["wall_s"] for run_ in parts_run)
        stats = aggregate([samples], wall)
        del stats["samples"]  # percentiles are kept; every call's latency would be most of the file
        result[kind] = {**stats, "qps_per_round": [run_["qps"] for run_ in parts_run]}
    raw_qps = result["raw_1_thread"]["qps"]
    for kind in CONCURRENT_LOADS:
        result[kind]["x_raw_1_thread"] = result[kind]["qps"] / raw_qps
    return result


def image_queries(client: LatentdexClient, image_bytes: list[bytes], warmup: int) -> dict[str, Any]:
    """QueryByImage with previews of the matches: median server stage times and client-observed call."""
    options = QueryOptions(previews=True)
    for i in range(min(warmup, len(image_bytes))):
        client.query_by_image(image_bytes[i], K, options=options)
    calls, replies, preview_kb = [], [], []
    for data in image_bytes:
        start = time.perf_counter()
        result = client.query_by_image(data, K, options=options)
        calls.append(time.perf_counter() - start)
        replies.append(result.timings)
        preview_kb.append(sum(len(m.preview.data) for m in result.matches if m.preview) / 1000)
    stages = [name for name in replies[0] if name != "total"]  # IMAGE_STAGES and any the server adds
    medians = {name: 1000 * statistics.median(t[name] for t in replies) for name in (*stages, "total")}
    medians["server_other"] = 1000 * statistics.median(
        t["total"] - sum(t[s] for s in stages) for t in replies
    )
    medians["transport"] = 1000 * statistics.median(
        c - t["total"] for c, t in zip(calls, replies, strict=True)
    )
    medians["client"] = 1000 * statistics.median(calls)
    return {
        "queries": len(image_bytes),
        "median_ms": medians,
        "client_p99_ms": 1000 * float(np.percentile(calls, 99)),
        "previews_kb_per_reply": statistics.median(preview_kb),
    }


def _cycle(queries: np.ndarray) -> Iterator[np.ndarray]:
    while True:
        yield from queries


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """`threads` for torch and FAISS here; without it, FAISS as the server runs it (the raw baseline
    searches as the server does)."""
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads if threads > 0 else ServerConfig().faiss_threads or before[1])
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


# --- printing ------------------------------------------------------------------------------------------


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: one client against raw + echo, concurrency, QueryByImage stages, store builds."""
    server = result["server"]
    where = "a child process" if result["placement"] == "process" else "a thread of this process"
    setup = (
        f"k={result['k']}, {result['index_type']} {result['metric']}, server in {where}; threads "
        f"FAISS/torch {result['faiss_threads']}/{result['torch_threads']} here, "
        f"{server['faiss_threads']}/{server['torch_threads']} in the server ({server['precision']})"
    )
    one_rows, many_rows, image_rows, build_lines = [], [], [], []
    for row in result["stores"]:
        label = f"{row['n']:,}"
        stages = row["server_stages_p50_ms"]
        one_rows.append(
            [
                label,
                row["raw"]["p50_ms"],
                row["raw"]["p99_ms"],
                row["echo"]["p50_ms"],
                row["server"]["p50_ms"],
                row["server"]["p99_ms"],
                row["server"]["qps"],
                row["server_engine"]["p50_ms"],
                stages["search"],
                stages["metadata"],
                row["ratio"],
                "yes" if row["meets_goal"] else "no",
            ]
        )
        many = row["concurrent"]
        for kind in CONCURRENT_LOADS:
            stats = many[kind]
            many_rows.append(
                [
                    f"{label}  {_load_label(kind, many['clients'])}",
                    stats["qps"],
                    stats["p50_ms"],
                    stats["p99_ms"],
                    stats["x_raw_1_thread"],
                    min(stats["qps_per_round"]),
                    max(stats["qps_per_round"]),
                ]
            )
        images = row["image_queries"]["median_ms"]
        image_rows.append(
            [
                label,
                *(images[s] for s in IMAGE_STAGES),
                images["server_other"],
                images["total"],
                images["transport"],
                images["client"],
            ]
        )
        build = row["store"]
        build_lines.append(
            f"store {label}: built in {build['build_s']:.0f} s (upsert "
            f"{build['upsert_rows_per_s']:,.0f} rows/s in {BUILD_CHUNK:,}-row chunks, flush "
            f"{build['flush_s']:.1f} s, {build['disk_mb']:.0f} MB)"
            + (", reused from an earlier run" if build["reused"] else "")
        )
    one = table(
        f"QueryByLatent, 1 client ({setup}); ms",
        [
            "store",
            "raw p50",
            "raw p99",
            "echo p50",
            "server p50",
            "server p99",
            "server QPS",
            "engine p50",
            "search",
            "metadata",
            "ratio",
            f"<= {result['goal_ratio']}",
        ],
        one_rows,
    )
    many = table(
        f"QueryByLatent, concurrent loads in {result['sizes']['rounds']} interleaved rounds (all clients "
        "start together, each sends its share one after another); ms",
        ["store  load", "QPS", "p50", "p99", "x raw 1 thread", "QPS min round", "max round"],
        many_rows,
    )
    first = result["stores"][0]["image_queries"]
    size = result["images"]["size"]
    images = table(
        f"QueryByImage, previews of the {result['k']} matches ({first['queries']} JPEGs {size[0]}x{size[1]}, "
        f"{result['images']['source']}); median ms",
        ["store", *IMAGE_STAGES, "other", "server", "transport", "client"],
        image_rows,
    )
    notes = [
        "raw: LatentStore.search in this process; echo: health Check round trip; engine, search, metadata: "
        "the server's own total and stage times (p50); ratio: server p50 / (raw p50 + echo p50)",
        "x raw 1 thread: QPS / the QPS of one thread calling LatentStore.search here on the same queries in "
        "the same rounds; client threads share this process's GIL, client processes do not",
        "preview: decoding the matches' latents and encoding them as PNG; other: server total - stages; "
        "transport: client call - server total",
        *build_lines,
    ]
    return "\n".join([one, many, images, *notes])


def _load_label(kind: str, clients: int) -> str:
    return {
        "server_1_client": "server, 1 client",
        "server_client_threads": f"server, {clients} client threads",
        "server_client_processes": f"server, {clients} client processes",
        "raw_1_thread": "raw search, 1 thread",
        "raw_threads": f"raw search, {clients} threads",
    }[kind]
