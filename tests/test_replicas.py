"""Replicas: two real `latentdex serve` processes on one store while a real `latentdex index` writes into it.

What must hold: every query to either server is answered while the store changes under them, and both
servers converge on the new data within a bounded time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
from indexing_support import write_photos
from serve_support import REPO, serve_process

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.client import LatentdexClient, QueryResult, connect

OLD, NEW, SIZE = 24, 24, 48
K = 30  # more than OLD: a reply's length tells which store state answered it (24 before, 30 after)
SERVE_OPTIONS = ("--reload-interval", "0.1", "--workers", "4", "--threads", "1")
PLAIN_SERVING = ("--no-batch-queries", "--no-records-in-memory")
INDEX_COMMAND = (sys.executable, "-m", "latentdex.service.cli", "index")
INDEX_OPTIONS = ("--workers", "1", "--batch-size", "1", "--flush-every", "1")  # a save after each image
CONVERGE_SECONDS = 60.0
PAUSE = 0.01  # between a client's calls: steady traffic that leaves the writer CPU on a 2-core machine


@dataclass
class Answered:
    """One client thread's calls: (start time, number of matches) of each reply, and what went wrong."""

    name: str
    replies: list[tuple[float, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def keep_querying(
    port: int,
    answered: Answered,
    ask: Callable[[LatentdexClient], QueryResult],
    expected: str,
    stop: threading.Event,
) -> None:
    """Send `ask` to the server at `port` until `stop`; each reply must be non-empty with `expected` first."""
    with connect(f"127.0.0.1:{port}", timeout=30) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                matches = ask(client).matches
                if not matches or matches[0].path != expected:
                    first = matches[0].path if matches else None
                    answered.failures.append(f"{answered.name}: {len(matches)} matches, first {first}")
                answered.replies.append((started, len(matches)))
            except Exception as exc:  # any failed call is what this test is about
                answered.failures.append(f"{answered.name}: {exc!r}")
            time.sleep(PAUSE)


def drain(process: subprocess.Popen, lines: deque[str]) -> None:
    """Read a server's output (a log line per call) so a full pipe never blocks it; the last lines other
    than the per-call log are kept for the failure message."""
    assert process.stdout is not None
    for line in process.stdout:
        if "latentdex.requests:" not in line:
            lines.append(line)


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def converged(port: int, new_photo: Path) -> bool:
    """The server at `port` counts every image and finds `new_photo` by its own bytes at rank 1."""
    with connect(f"127.0.0.1:{port}", timeout=30) as client:
        if client.info().image_count != OLD + NEW:
            return False
        top = client.query_by_image(new_photo.read_bytes(), 1).matches[0]
        return top.path == new_photo.name and top.distance < 1e-4


@pytest.mark.slow
def test_two_servers_on_one_store_answer_every_query_and_converge_while_the_indexer_writes(
    tmp_path: Path,
) -> None:
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_photos(photos, OLD, size=SIZE)
    index_folder(photos, store, LatentCodec.load(), IndexOptions(workers=1))
    stop = threading.Event()
    threads: list[threading.Thread] = []  # the client threads
    outputs: dict[int, deque[str]] = {}
    writer: subprocess.Popen | None = None
    with (
        serve_process(store, *SERVE_OPTIONS) as (first, first_port),
        # the second replica answers each query alone and reads its records from the catalog
        serve_process(store, *SERVE_OPTIONS, *PLAIN_SERVING) as (second, second_port),
    ):
        ports = (first_port, second_port)
        for process, port in ((first, first_port), (second, second_port)):
            outputs[port] = deque(maxlen=40)
            threading.Thread(target=drain, args=(process, outputs[port]), daemon=True).start()
        with connect(f"127.0.0.1:{first_port}") as client:
            latent = client.encode(photos / "photo000.png")
        image = (photos / "photo001.png").read_bytes()
        clients = []
        for port in ports:
            by_latent = Answered(f"QueryByLatent to :{port}")
            by_image = Answered(f"QueryByImage to :{port}")
            clients += [by_latent, by_image]
            for answered, ask, expected in (
                (by_latent, lambda c: c.query_by_latent(latent, K), "photo000.png"),
                (by_image, lambda c: c.query_by_image(image, K), "photo001.png"),
            ):
                threads.append(
                    threading.Thread(target=keep_querying, args=(port, answered, ask, expected, stop))
                )
        for thread in threads:
            thread.start()
        try:
            assert wait_for(lambda: all(a.replies or a.failures for a in clients), 30), (
                "no client got a reply"
            )
            write_photos(photos, NEW, size=SIZE, start=OLD)
            writer = subprocess.Popen(
                [*INDEX_COMMAND, str(photos), "--store", str(store), *INDEX_OPTIONS],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            written_from = time.monotonic()
            output, _ = writer.communicate(timeout=120)
            written_until = time.monotonic()
            assert writer.returncode == 0, output
            new_photo = photos / f"photo{OLD + NEW - 1:03d}.png"
            for port in ports:
                assert wait_for(lambda port=port: converged(port, new_photo), CONVERGE_SECONDS), (
                    f"the server on :{port} did not converge in {CONVERGE_SECONDS} s:\n"
                    + "".join(outputs[port])
                )
            since = time.monotonic()
            assert wait_for(lambda: all(a.replies and a.replies[-1][0] > since for a in clients), 30), (
                "a client got no reply after both servers converged"
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.wait()
    assert first.poll() is not None and second.poll() is not None
    assert not any(thread.is_alive() for thread in threads)
    failures = [f for a in clients for f in a.failures]
    assert failures == [], f"{len(failures)} failed calls, the first: {failures[:10]}"
    for answered in clients:
        counts = [count for _, count in answered.replies]
        during = [count for started, count in answered.replies if written_from <= started <= written_until]
        # each thread asked before, during and after the write, and saw the old store, then the new one
        assert (counts[0], counts[-1]) == (OLD, K) and during, (
            answered.name,
            counts[0],
            counts[-1],
            len(during),
        )
        # a server never answers from an older store state than one it already answered from
        back = [(i, a, b) for i, (a, b) in enumerate(pairwise(counts)) if b < a]
        assert back == [], (
            f"{answered.name}: replies went back to an older store (call, before, after): {back}"
        )
