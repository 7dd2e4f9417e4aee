"""The query_latency benchmark's callers: client processes that send queries (or echoes) and time every call.

`ClientProcesses` are load-generating processes ("spawn"), started once and given one job per load. A job
goes to the first `callers` processes; `callers` is one of the group sizes the processes were started
with, each of which has its barrier. The protocol with the parent: the parent sends (target, call,
share, callers) down each taking part process's pipe; the process connects, makes one untimed call,
waits at the group's barrier with the others and the parent, makes its share of calls one after another
and replies {"samples": seconds per call, "end": perf_counter at its last reply}, or {"error": ...} after
aborting the barrier; None (or a closed pipe) ends it. The calls: "query", a QueryByLatent (k=K) of each
latent of the share; "echo", the standard health Check (grpc.health.v1) as often, the loopback round trip
of an almost empty call. Processes, not threads: client threads in one Python process share its GIL, and
the load generator itself would then limit what is measured.

Reported: every call's latency and QPS = calls / wall time from the release to the last reply
(`aggregate`, `latency_stats`). This module imports no torch, so the client processes stay light.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any, Literal

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from latentdex.service.client import LatentdexClient, connect

K = 10  # matches asked for by every query
Call = Literal["query", "echo"]
ECHO_REQUEST = health_pb2.HealthCheckRequest(service="")


def server_query(client: LatentdexClient, latent: np.ndarray) -> None:
    """One QueryByLatent through `client` (k=K)."""
    client.query_by_latent(latent, K)


def echo(health: health_pb2_grpc.HealthStub, _latent: np.ndarray | None = None) -> None:
    """One health Check: the loopback round trip of an almost empty call (the latent is not sent)."""
    health.Check(ECHO_REQUEST, timeout=30)


def caller(client: LatentdexClient, call: Call) -> Callable[[np.ndarray], None]:
    """The function that makes one `call` through `client`, given a query latent."""
    if call == "query":
        return partial(server_query, client)
    if call == "echo":
        return partial(echo, health_pb2_grpc.HealthStub(client.channel))
    raise ValueError(f"call must be 'query' or 'echo', got {call!r}")


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
    """`count` load-generating processes ("spawn"), started once and given one job per load.

    A job for `callers` processes (one of `groups`): the first `callers` connect to the target, make one
    untimed call, wait at the group's barrier with this process (for at most `timeout_s`), then make
    their share of calls one after another and report the latencies. Clocks are `time.perf_counter`
    (CLOCK_MONOTONIC on Linux, so comparable across processes).
    """

    def __init__(self, count: int, timeout_s: float, groups: Sequence[int] = ()) -> None:
        if any(not 1 <= size <= count for size in groups):
            raise ValueError(f"every group size must be between 1 and {count}, got {list(groups)}")
        context = multiprocessing.get_context("spawn")
        self.barriers = {size: context.Barrier(size + 1, timeout=timeout_s) for size in {*groups, count}}
        self.pipes = []
        self.processes = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_client_child, args=(theirs, self.barriers), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def run(self, target: str, shares: list[np.ndarray], call: Call = "query") -> dict[str, Any]:
        """The first len(`shares`) processes make their `call`s to `target` at once, process i over
        `shares[i]`; latencies and aggregate QPS."""
        callers = len(shares)
        if callers not in self.barriers:
            raise ValueError(f"{callers} callers: the processes were started for {sorted(self.barriers)}")
        pipes = self.pipes[:callers]
        for pipe, share in zip(pipes, shares, strict=True):
            pipe.send((target, call, share, callers))
        try:
            self.barriers[callers].wait()
        except threading.BrokenBarrierError:
            replies = [pipe.recv() for pipe in pipes if pipe.poll(5)]
            errors = [r["error"] for r in replies if "error" in r]
            raise RuntimeError(f"a client process failed: {errors[0] if errors else 'no reply'}") from None
        started = time.perf_counter()
        replies = [pipe.recv() for pipe in pipes]
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


def _client_child(conn: Any, barriers: dict[int, Any]) -> None:
    """A load-generating process: run jobs from `conn` until it sends None (or closes)."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        target, call, share, callers = job
        try:
            with connect(target) as client:
                make_call = caller(client, call)
                make_call(share[0])
                barriers[callers].wait()
                samples = timed_calls(make_call, share)
            conn.send({"samples": samples, "end": time.perf_counter()})
        except Exception as exc:
            barriers[callers].abort()
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
