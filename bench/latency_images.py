"""The query_latency benchmark's QueryByImage measurements: the server against the same work done here.

`against_in_process`: QueryByImage (k=K) without previews alternates image by image with the in-process
baseline of the same bytes (`bench.machine.time_interleaved`): `load_for_model` (decode to the model's
square), `LatentCodec.encode` (a batch of one), `LatentStore.search` on the same store opened read-only,
which is the work the server does before it fetches the matches' metadata. Reported: p50/p99 of each,
the median of each stage on both sides (the server's from `QueryResult.timings`), and ratio = server p50
/ baseline p50.

`with_previews`: QueryByImage with previews of the matches on; the median of each server stage and of
the client-observed call, the rest of the server total ("other") and the transport (client call - server
total: (de)serialisation, previews included, and the loopback). Not interleaved with a baseline: the
split of one call is consistent, absolute stage times move with the machine's load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.latency_callers import K, latency_stats
from bench.machine import time_interleaved
from latentdex.indexer.load import load_for_model
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.client import LatentdexClient, QueryOptions

IMAGE_GOAL = 1.5  # server p50 over the in-process decode + encode + search p50
IN_PROCESS_STAGES = ("image_decode", "encode", "search")  # named as the server's timings name them
PREVIEW_STAGES = ("image_decode", "encode", "search", "metadata", "preview")


def against_in_process(
    store: LatentStore,
    codec: LatentCodec,
    client: LatentdexClient,
    images: list[bytes],
    warmup: int,
) -> dict[str, Any]:
    """QueryByImage without previews alternating with decode + encode + search here, over `images`.

    Run it in a thread set up as the server's RPC threads are (`bench.latency_server.rpc_like_thread`).
    """
    options = QueryOptions(previews=False)
    local_next, server_next = _cycle(images), _cycle(images)
    local_stages: list[dict[str, float]] = []
    server_stages: list[dict[str, float]] = []

    def in_process() -> None:
        data = next(local_next)
        started = time.perf_counter()
        pixels = load_for_model(data, codec.image_size)
        decoded = time.perf_counter()
        latent = codec.encode(pixels[None])
        encoded = time.perf_counter()
        store.search(latent, K)
        searched = time.perf_counter()
        local_stages.append(
            {"image_decode": decoded - started, "encode": encoded - decoded, "search": searched - encoded}
        )

    def server() -> None:
        result = client.query_by_image(next(server_next), K, options=options)
        if len(result.matches) != K:
            raise RuntimeError(f"the server found {len(result.matches)} matches, not {K}")
        server_stages.append(result.timings)

    timings = time_interleaved(
        {"in_process": in_process, "server": server}, warmup=warmup, repeat=len(images)
    )
    stats: dict[str, Any] = {name: latency_stats(t.samples) for name, t in timings.items()}
    local_stages, server_stages = local_stages[warmup:], server_stages[warmup:]
    ratio = stats["server"]["p50_ms"] / stats["in_process"]["p50_ms"]
    return {
        "queries": len(images),
        **stats,
        "in_process_stages_p50_ms": _medians_ms(local_stages, IN_PROCESS_STAGES),
        "server_stages_p50_ms": _medians_ms(server_stages, [n for n in server_stages[0] if n != "total"]),
        "server_total_p50_ms": _medians_ms(server_stages, ["total"])["total"],
        "ratio": ratio,
        "meets_goal": ratio <= IMAGE_GOAL,
    }


def with_previews(client: LatentdexClient, images: list[bytes], warmup: int) -> dict[str, Any]:
    """QueryByImage with previews of the matches: median server stage times and client-observed call."""
    options = QueryOptions(previews=True)
    for i in range(min(warmup, len(images))):
        client.query_by_image(images[i], K, options=options)
    calls, replies, preview_kb = [], [], []
    for data in images:
        start = time.perf_counter()
        result = client.query_by_image(data, K, options=options)
        calls.append(time.perf_counter() - start)
        replies.append(result.timings)
        preview_kb.append(sum(len(m.preview.data) for m in result.matches if m.preview) / 1000)
    stages = [name for name in replies[0] if name != "total"]  # PREVIEW_STAGES and any the server adds
    medians = _medians_ms(replies, [*stages, "total"])
    medians["server_other"] = 1000 * statistics.median(
        t["total"] - sum(t[s] for s in stages) for t in replies
    )
    medians["transport"] = 1000 * statistics.median(
        c - t["total"] for c, t in zip(calls, replies, strict=True)
    )
    medians["client"] = 1000 * statistics.median(calls)
    return {
        "queries": len(images),
        "median_ms": medians,
        "client_p99_ms": 1000 * float(np.percentile(calls, 99)),
        "previews_kb_per_reply": statistics.median(preview_kb),
    }


def _medians_ms(timings: list[dict[str, float]], names: list[str] | tuple[str, ...]) -> dict[str, float]:
    return {name: 1000 * statistics.median(t[name] for t in timings) for name in names}


def _cycle(images: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from images
