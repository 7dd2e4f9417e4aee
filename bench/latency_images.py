"""The query_latency benchmark's QueryByImage measurements: the server against the same work done here.

`against_in_process`: QueryByImage (k=K) without previews alternates image by image with the in-process
baseline of the same bytes (`bench.machine.time_interleaved`): `load_for_model` (decode to the model's
square), `LatentCodec.encode` (a batch of one), `LatentStore.search` on the same store opened read-only,
which is the work the server does before it fetches the matches' metadata. Two pairs: ranked by latent
alone ("server" against "in_process": decode + encode + search), and ranked copies first, the server's
default ("server_copies_first" against "in_process_copies_first": the same plus the search to
`pixel_alignment.DEPTH`, the candidates' thumbnails and their alignment). Reported: p50/p99 of each, the
median of each stage on both sides for the first pair (the server's from `QueryResult.timings`), each
pair's ratio = server p50 / baseline p50, and what copies first adds to the server's p50.

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
from latentdex.indexer.pixel_alignment import DEPTH as ALIGNMENT_DEPTH
from latentdex.indexer.pixel_alignment import alignment_thumbnail, order_copies_first
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
    """QueryByImage without previews, ranked copies first (the server's default) and by latent alone,
    alternating image by image with the same work done here.

    Run it in a thread set up as the server's RPC threads are (`bench.latency_server.rpc_like_thread`).
    """
    by_latent = QueryOptions(previews=False, ranking="latent")
    copies_first_options = QueryOptions(previews=False)
    streams = {name: _cycle(images) for name in ("here", "here_copies", "server", "server_copies")}
    local_stages: list[dict[str, float]] = []
    server_stages: list[dict[str, float]] = []

    def decoded_and_encoded(data: bytes, stages: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        pixels = load_for_model(data, codec.image_size)
        decoded = time.perf_counter()
        latent = codec.encode(pixels[None])
        stages |= {"image_decode": decoded - started, "encode": time.perf_counter() - decoded}
        return pixels, latent

    def in_process() -> None:
        stages: dict[str, float] = {}
        _, latent = decoded_and_encoded(next(streams["here"]), stages)
        started = time.perf_counter()
        store.search(latent, K)
        local_stages.append(stages | {"search": time.perf_counter() - started})

    def in_process_copies_first() -> None:
        pixels, latent = decoded_and_encoded(next(streams["here_copies"]), {})
        matches = store.search(latent, max(K, ALIGNMENT_DEPTH))[0]
        thumbnails = store.alignment_thumbnails([m.id for m in matches])
        candidates = np.stack([thumbnails[m.id] for m in matches])
        order = order_copies_first(
            alignment_thumbnail(pixels), candidates, np.array([m.distance for m in matches])
        )
        _ = [matches[i] for i in order[:K]]

    def asked(stream: str, options: QueryOptions, stages: list[dict[str, float]] | None) -> None:
        result = client.query_by_image(next(streams[stream]), K, options=options)
        if len(result.matches) != K:
            raise RuntimeError(f"the server found {len(result.matches)} matches, not {K}")
        if stages is not None:
            stages.append(result.timings)

    timings = time_interleaved(
        {
            "in_process": in_process,
            "server": lambda: asked("server", by_latent, server_stages),
            "in_process_copies_first": in_process_copies_first,
            "server_copies_first": lambda: asked("server_copies", copies_first_options, None),
        },
        warmup=warmup,
        repeat=len(images),
    )
    stats: dict[str, Any] = {name: latency_stats(t.samples) for name, t in timings.items()}
    local_stages, server_stages = local_stages[warmup:], server_stages[warmup:]
    ratio = stats["server"]["p50_ms"] / stats["in_process"]["p50_ms"]
    copies_ratio = stats["server_copies_first"]["p50_ms"] / stats["in_process_copies_first"]["p50_ms"]
    return {
        "queries": len(images),
        **stats,
        "in_process_stages_p50_ms": _medians_ms(local_stages, IN_PROCESS_STAGES),
        "server_stages_p50_ms": _medians_ms(server_stages, [n for n in server_stages[0] if n != "total"]),
        "server_total_p50_ms": _medians_ms(server_stages, ["total"])["total"],
        "ratio": ratio,
        "copies_first_ratio": copies_ratio,
        "copies_first_cost_ms": stats["server_copies_first"]["p50_ms"] - stats["server"]["p50_ms"],
        "meets_goal": ratio <= IMAGE_GOAL and copies_ratio <= IMAGE_GOAL,
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
