"""Starts `latentdex serve` as a real child process, as an operator would, and finds the port it took."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from conftest import shape_image

from bench.process_output import wait_for_port
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.limits import Limits
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig

REPO = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"serving latentdex\.v1\.Latentdex on 127\.0\.0\.1:(\d+)")


@contextmanager
def serve_process(store: Path, *options: str, timeout: float = 60) -> Iterator[tuple[subprocess.Popen, int]]:
    """`latentdex serve --store STORE --port 0 OPTIONS` until it says it serves; yields it and its port.

    The process is killed on the way out if it is still running.
    """
    command = [sys.executable, "-m", "latentdex.service.cli", "serve", "--store", str(store), "--port", "0"]
    process = subprocess.Popen(
        [*command, *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert process.stdout is not None
        port, lines = wait_for_port(process.stdout, SERVING, timeout)
        assert port, "".join(lines)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def served_shapes(
    root: Path, limits: Limits, config: ServerConfig, count: int = 12
) -> Iterator[tuple[Path, RunningServer, grpc.Channel]]:
    """`count` generated shape PNGs indexed with the shipped model into `root`/store, served in this
    process by a real server on a loopback port; yields the store, the server and a channel to it that
    accepts replies of up to 64 MiB."""
    (root / "photos").mkdir()
    for i in range(count):
        shape_image(i, i % 4, 64).save(root / "photos" / f"p{i:02d}.png")
    codec = LatentCodec.load()
    index_folder(root / "photos", root / "store", codec, IndexOptions(workers=1))
    live = LiveStore(root / "store", check_interval=0.05)
    running = start_server(QueryEngine(codec, live, limits), config)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{running.port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    try:
        yield root / "store", running, channel
    finally:
        channel.close()
        running.stop(0)
        live.close()
