"""The query_latency benchmark's callers: load generators that send latent queries and time every call.

- `threads_together`: calls run in threads of this process, all released at once by a barrier;
- `ClientProcesses`: load-generating processes ("spawn"), started once and given one job per store. The
  protocol with the parent: the parent sends (target, share of queries) down each process's pipe; the
  process connects, sends one untimed query, waits at a shared barrier with the others and the parent,
  sends its share one after another and replies {"samples": seconds per call, "end": perf_counter at its
  last reply}, or {"error": ...} after aborting the barrier; None (or a closed pipe) ends it. They exist
  because client threads in one Python process share its GIL: the load generator itself would then limit
  what is measured.

Both report every call's latency and QPS = queries / wall time from the release to the last reply
(`aggregate`, `latency_stats`). This module imports no torch, so the client processes stay light.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from latentdex.service.client import LatentdexClient, connect

if TYPE_CHECKING:
    from latentdex.indexer.store import LatentStore

K = 10  # matches asked for by every query


def server_query(client: LatentdexClient, latent: np.ndarray) -> None:
    """One QueryByLatent through `client` (k=K)."""
    client.query_by_latent(latent, K)


def raw_search(store: LatentStore, latent: np.ndarray) -> None:
    """One in-process `LatentStore.search` (k=K): the raw baseline."""
    store.search(latent[None], K)


def threads_together(calls: list[Callable[[np.ndarray], object]], shares: list[np.ndarray]) -> dict[str, Any]:
    """Run `calls[i]` over `shares[i]` in thread i, all released at once; latencies and aggregate QPS."""
    barrier = threading.Barrier(len(calls) + 1)
    samples: list[list[float]] = [[] for _ in calls]
    ends = [0.0] * len(calls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            samples[i] = timed_calls(calls[i], shares[i])
        except BaseException as exc:
            errors.append(exc)
        ends[i] = time.perf_counter()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} threads failed: {errors[0]!r}") from errors[0]
    return aggregate(samples, max(ends) - started)


def timed_calls(call: Callable[[np.ndarray], object], share: np.ndarray) -> list[float]:
    """`call` on each latent of `share`, one after another; the seconds each call took."""
    samples = []
    for latent in share:
        start = time.perf_counter()
        call(latent)
        samples.append(time.perf_counter() - start)
    return samples


def aggregate(samples: list[list[float]], wall: float) -> dict[str, Any]:
    """Latency stats of every call, QPS over `wall`, and the samples (s) themselves."""
    every = [s for per_client in samples for s in per_client]
    stats = {"queries": len(every), "wall_s": wall, **latency_stats(every), "qps": len(every) / wall}
    return {**stats, "samples": every}


def latency_stats(samples: list[float]) -> dict[str, float]:
    """p50, p90 and p99 in ms (linear interpolation), the mean, and QPS one after another (1 / mean)."""
    values = np.asarray(samples, dtype=np.float64)
    mean = float(values.mean())
    return {
        "count": len(values),
        "p50_ms": 1000 * float(np.percentile(values, 50)),
        "p90_ms": 1000 * float(np.percentile(values, 90)),
        "p99_ms": 1000 * float(np.percentile(values, 99)),
        "mean_ms": 1000 * mean,
        "qps": 1 / mean,
    }


class ClientProcesses:
    """`count` load-generating processes ("spawn"), started once and given one job per store.

    A job: connect to the target, send one untimed query, wait at a shared barrier with the others and
    this process (for at most `timeout_s`), then send the share of queries one after another and report
    the latencies. Clocks are `time.perf_counter` (CLOCK_MONOTONIC on Linux, so comparable across
    processes).
    """

    def __init__(self, count: int, timeout_s: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(count + 1, timeout=timeout_s)
        self.pipes = []
        self.processes = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_client_child, args=(theirs, self.barrier), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def run(self, target: str, shares: list[np.ndarray]) -> dict[str, Any]:
        """Every process sends its share to `target` at once; latencies and aggregate QPS."""
        for pipe, share in zip(self.pipes, shares, strict=True):
            pipe.send((target, share))
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            replies = [pipe.recv() for pipe in self.pipes if pipe.poll(5)]
            errors = [r["error"] for r in replies if "error" in r]
            raise RuntimeError(f"a client process failed: {errors[0] if errors else 'no reply'}") from None
        started = time.perf_counter()
        replies = [pipe.recv() for pipe in self.pipes]
        if errors := [r["error"] for r in replies if "error" in r]:
            raise RuntimeError(f"{len(errors)} client processes failed: {errors[0]}")
        return aggregate([r["samples"] for r in replies], max(r["end"] for r in replies) - started)

    def close(self) -> None:
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
        for pipe in self.pipes:
            pipe.close()


def _client_child(conn: Any, barrier: Any) -> None:
    """A load-generating process: run jobs from `conn` until it sends None (or closes)."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        target, share = job
        try:
            with connect(target) as client:
                client.query_by_latent(share[0], K)
                barrier.wait()
                samples = timed_calls(partial(server_query, client), share)
            conn.send({"samples": samples, "end": time.perf_counter()})
        except Exception as exc:
            barrier.abort()
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
