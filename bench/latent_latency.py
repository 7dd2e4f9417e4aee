"""Latency of the latent-space RPCs at 100k stored images, against their own parts in the same run.

The store is the 100k-vector flat store of `bench.query_latency` (synthetic latents with plausible
metadata; built once and reused). A server runs in this process on a loopback port, and one client calls,
sequentially, each RPC as a user would:

- Generate: 8 samples like the library (a Gaussian fitted to the store), each with its 5 nearest images;
- Interpolate: 16 slerp steps between two stored images, each with its nearest image;
- Edit: one stored image at 5 strengths along a direction learnt from two groups of 1,000 images, each
  edit with its 5 nearest images;
- CreateDirection itself (two groups of 1,000 images by path pattern, "auto": both methods fitted and
  compared on held-out halves).

Baseline, measured in the same run and in-process: the parts each RPC cannot avoid, i.e. decoding its
frames with the VAE (one batch) plus one exact FAISS search per frame batch (`LatentStore.search`). The
ratio RPC p50 / parts p50 is the overhead of everything else (gRPC, PNG encoding of the frames, metadata
fetch, the library statistics). Library statistics are computed once per store state and cached; the
first Generate after a store change pays for reading every latent, reported separately.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from bench.latency_inputs import WORK_DIR as STORE_WORK_DIR
from bench.latency_inputs import ensure_store
from bench.machine import time_call
from bench.report import table
from bench.synthetic_latents import LatentMixture
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.client import FrameOptions, ImageGroup, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import start_server
from latentdex.service.server_config import ServerConfig

NAME = "latent_latency"
STORE_SIZE = 100_000
SAMPLES, STEPS, STRENGTHS, NEAREST = 8, 16, (-2.0, -1.0, 0.0, 1.0, 2.0), 5


def run(
    model_dir: str | os.PathLike[str] | None, quick: bool = False, work_dir: Path = STORE_WORK_DIR
) -> dict[str, Any]:
    """Measure each RPC and its in-process parts; returns the JSON-ready result."""
    repeat = 5 if quick else 30
    codec = LatentCodec.load(model_dir, precision="auto")
    mixture = LatentMixture(dim=codec.latent_dim)
    size = 20_000 if quick else STORE_SIZE
    folder, build = ensure_store(work_dir / f"store-{size}", size, codec.latent_space_id, mixture)
    live = LiveStore(folder)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0))
    result: dict[str, Any] = {
        "store_n": size,
        "store": build,
        "repeat": repeat,
        "precision": codec.precision,
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    try:
        with (
            connect(f"127.0.0.1:{running.port}", timeout=600) as client,
            LatentStore.open(folder, read_only=True) as store,
        ):
            started = time.perf_counter()
            client.generate(1, seed=0, source="library")  # reads every latent once: the stats cache
            result["first_generate_s"] = time.perf_counter() - started
            ends = [1, size // 2]
            groups = (ImageGroup(path_globs=["photos/0000/*"]), ImageGroup(path_globs=["photos/0001/*"]))
            create = _timed(
                lambda: client.create_direction("bench", *groups, replace=True), max(3, repeat // 5)
            )
            nearest = FrameOptions(nearest_k=NEAREST)
            one = FrameOptions(nearest_k=1)
            rpcs = {
                "generate": lambda: client.generate(SAMPLES, seed=1, source="library", frames=nearest),
                "interpolate": lambda: client.interpolate(ends[0], ends[1], STEPS, frames=one),
                "edit": lambda: client.edit(ends[0], "bench", STRENGTHS, frames=nearest),
            }
            latents = store.latents(ends)
            parts = {
                "generate": _parts(codec, store, SAMPLES, NEAREST, latents[0]),
                "interpolate": _parts(codec, store, STEPS, 1, latents[0]),
                "edit": _parts(codec, store, len(STRENGTHS), NEAREST, latents[0]),
            }
            result["rpcs"] = {}
            for name, call in rpcs.items():
                rpc = _timed(call, repeat)
                base = _timed(parts[name], repeat)
                result["rpcs"][name] = {"rpc": rpc, "parts": base, "ratio": rpc["p50_ms"] / base["p50_ms"]}
            result["rpcs"]["create_direction"] = {"rpc": create, "parts": None, "ratio": None}
            client.delete_direction("bench")
    finally:
        running.stop(0)
        live.close()
    return result


def _parts(
    codec: LatentCodec, store: LatentStore, frames: int, k: int, latent: np.ndarray
) -> Callable[[], object]:
    batch = np.repeat(latent[None], frames, axis=0) + np.float32(0.01)

    def work() -> None:
        codec.decode(batch)
        store.search(batch, k)

    return work


def _timed(call: Callable[[], object], repeat: int) -> dict[str, float]:
    timing = time_call(call, warmup=1, repeat=repeat)
    ordered = sorted(timing.samples)
    return {
        "p50_ms": 1000 * timing.median,
        "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "best_ms": 1000 * timing.best,
        "repeat": repeat,
    }


def format_result(result: dict[str, Any]) -> str:
    """The printed table: p50 and p90 of each RPC, the in-process parts, and the ratio."""
    rows = []
    labels = {
        "generate": f"Generate {SAMPLES} samples + {NEAREST} nearest each",
        "interpolate": f"Interpolate {STEPS} steps + nearest each",
        "edit": f"Edit {len(STRENGTHS)} strengths + {NEAREST} nearest each",
        "create_direction": "CreateDirection (2 x 1,000 images, auto)",
    }
    for name, row in result["rpcs"].items():
        parts = row["parts"]
        rows.append(
            [
                labels[name],
                row["rpc"]["p50_ms"],
                row["rpc"]["p90_ms"],
                parts["p50_ms"] if parts else None,
                row["ratio"],
            ]
        )
    title = (
        f"Latent-space RPCs at {result['store_n']:,} stored images (loopback gRPC, {result['precision']} "
        f"decoder, {result['torch_threads']} torch threads); parts = VAE decode of the frames + FAISS "
        "search, in-process, same run"
    )
    text = table(title, ["rpc", "p50 ms", "p90 ms", "parts p50 ms", "x parts"], rows)
    first = result["first_generate_s"]
    return text + f"\nfirst Generate after a store change (reads every latent once): {first:.2f} s"
