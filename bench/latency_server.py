"""The query_latency benchmark's server: a real gRPC server over a store, in a child process or a thread.

`served` starts `service.server.start_server` over `QueryEngine` and `LiveStore` on 127.0.0.1 (a free
port), with ServerConfig's default 8 workers and 64 calls in progress, and the model loaded as `latentdex
serve` does. Placement "process" runs it in a child process started with "spawn" (as a deployed server
runs); "thread" runs it in this process's threads. `threads` > 0 sets torch and FAISS (OpenMP) threads in
the server; the counts in use and the model's precision are reported back as the server's facts: those of
its main thread, and those a thread set up as its RPC threads are reports (`rpc_torch_threads`,
`rpc_faiss_threads`; OpenMP's count is per thread). `http` also serves the web app and HTTP/JSON API (a
free port, `facts["http_port"]`).

`rpc_like_thread` is one thread set up as the server's RPC threads are (`service.server.rpc_executor`),
for baselines that should run as the server's handlers do: torch's intra-op threads behave differently
in the main thread (measured: an encode of one image took 77-550 ms on two threads in the main thread of
a busy 2-core machine, 9 ms in another thread).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import torch

from bench.process_output import wait_for_port
from latentdex.models.inference import LatentCodec
from latentdex.service.limits import Limits
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, rpc_executor, start_server
from latentdex.service.server_config import ServerConfig

SERVER_WORKERS = 8  # ServerConfig's defaults, stated here so the result records them
SERVER_MAX_CONCURRENT = 64
_GROUP_SERVING = re.compile(r"processes serving on 127\.0\.0\.1:(\d+)")
SERVER_START_TIMEOUT_S = 600.0  # loading a 1M store in a busy child can take a while


@dataclass
class Served:
    """A running server: its port, and the thread counts and precision it runs with."""

    port: int
    facts: dict[str, Any]


def server_config(threads: int, http: bool = False) -> ServerConfig:
    """The served config: a free port, SERVER_WORKERS, SERVER_MAX_CONCURRENT, FAISS on `threads` (> 0)
    per RPC thread or ServerConfig's default, the HTTP port (a free one) when `http`."""
    return ServerConfig(
        port=0,
        max_workers=SERVER_WORKERS,
        max_concurrent_rpcs=SERVER_MAX_CONCURRENT,
        faiss_threads=threads if threads > 0 else ServerConfig().faiss_threads,
        http_port=0 if http else None,
    )


def rpc_like_thread(threads: int) -> ThreadPoolExecutor:
    """One thread set up as the served server's RPC threads are (`threads` as for `served`)."""
    return rpc_executor(replace(server_config(threads), max_workers=1))


def thread_counts() -> dict[str, int]:
    """The torch and FAISS (OpenMP) threads of the calling thread."""
    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}


@contextmanager
def served(
    store_dir: Path,
    model_dir: str | os.PathLike[str] | None,
    threads: int,
    placement: str,
    *,
    http: bool = False,
) -> Iterator[Served]:
    """A server over `store_dir` on 127.0.0.1 (free port), in a child process or in this one."""
    model = None if model_dir is None else str(model_dir)
    if placement == "thread":
        running, live, facts = _start(str(store_dir), model, threads, http)
        try:
            yield Served(running.port, {**facts, "placement": "thread"})
        finally:
            running.stop(1.0)
            live.close()
        return
    if placement != "process":
        raise ValueError(f"placement must be 'process' or 'thread', got {placement!r}")
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(
        target=_serve_child, args=(str(store_dir), model, threads, http, theirs), daemon=True
    )
    child.start()
    theirs.close()
    try:
        if not ours.poll(SERVER_START_TIMEOUT_S):
            raise RuntimeError(f"the server process did not start within {SERVER_START_TIMEOUT_S:.0f} s")
        try:
            facts = ours.recv()
        except EOFError:
            raise RuntimeError(
                f"the server process exited with code {child.exitcode} before serving"
            ) from None
        if "error" in facts:
            raise RuntimeError(f"the server process failed: {facts['error']}")
        yield Served(facts["port"], {**facts, "placement": "process"})
    finally:
        with suppress(OSError):
            ours.send("stop")
        child.join(30)
        if child.is_alive():
            child.terminate()
            child.join(5)
        ours.close()


def _start(
    store_dir: str, model_dir: str | None, threads: int, http: bool
) -> tuple[RunningServer, LiveStore, dict[str, Any]]:
    """Load the model and the store and start a server; the server, its live store, and its facts."""
    if threads > 0:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    codec = LatentCodec.load(model_dir, precision="auto")  # as `latentdex serve`
    live = LiveStore(store_dir)
    engine = QueryEngine(codec, live, Limits())
    config = server_config(threads, http)
    running = start_server(engine, config)
    with live.use() as store:
        stored = store.vector_count
    with rpc_executor(config) as probe:
        rpc = probe.submit(thread_counts).result()
    facts = {
        "port": running.port,
        "http_port": running.http_port,
        "store_n": stored,
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "rpc_torch_threads": rpc["torch"],
        "rpc_faiss_threads": rpc["faiss"],
        "precision": codec.precision,
        "image_size": codec.image_size,
    }
    return running, live, facts


def _serve_child(store_dir: str, model_dir: str | None, threads: int, http: bool, conn: Any) -> None:
    """The child process: start a server, send its facts, serve until told to stop (or the pipe closes)."""
    try:
        running, live, facts = _start(store_dir, model_dir, threads, http)
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({**facts, "pid": os.getpid()})
    try:
        conn.recv()
    except EOFError:
        pass
    finally:
        running.stop(1.0)
        live.close()


@contextmanager
def served_group(
    store_dir: Path, model_dir: str | os.PathLike[str] | None, processes: int
) -> Iterator[Served]:
    """`latentdex serve --processes N` over `store_dir` on 127.0.0.1 (a free port), as an operator runs
    it (request log off, as the in-process placements have it)."""
    command = [sys.executable, "-m", "latentdex.service.cli", "serve", "--store", str(store_dir)]
    command += ["--port", "0", "--processes", str(processes), "--log-level", "warning", "--grace", "1"]
    if model_dir is not None:
        command += ["--model", str(model_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        port, lines = wait_for_port(process.stdout, _GROUP_SERVING, SERVER_START_TIMEOUT_S)
        if port is None:
            raise RuntimeError(f"the server group did not start: {''.join(lines)[-2000:]}")
        yield Served(port, {"placement": "processes", "processes": processes, "port": port})
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
