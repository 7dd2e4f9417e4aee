"""`latentdex serve --processes N`: real server processes sharing one loopback port, supervised."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.store import LatentStore
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
GROUP_SERVING = re.compile(r"(\d+) processes serving on 127\.0\.0\.1:(\d+)")
REQUEST_LINE = re.compile(r"\[(\d+)\] INFO latentdex\.requests: .*QueryById")
WEB_APP_LINE = re.compile(r"\] INFO latentdex\.service\.server: web app on http://127\.0\.0\.1:(\d+)/")
SERVING_LINE = re.compile(r"\[(\d+)\] INFO latentdex\.service\.server: serving")
IMAGES = 40

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store in the shipped model's latent space, with random latents (nothing to encode)."""
    folder = tmp_path_factory.mktemp("group") / "store"
    card = read_card(DEFAULT_MODEL_DIR)
    records = [
        ImageRecord(
            path=f"p{i:03d}.png",
            size=100 + i,
            mtime_ns=i,
            content_hash=f"{i:064x}",
            width=64,
            height=64,
            model_id=card.latent_space_id,
        )
        for i in range(IMAGES)
    ]
    latents = np.random.default_rng(0).standard_normal((IMAGES, card.config.latent_dim)).astype(np.float32)
    with LatentStore.create(
        folder, model_id=card.latent_space_id, latent_dim=card.config.latent_dim
    ) as created:
        created.upsert_images(records, latents)
    return folder


@dataclass
class Group:
    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def children(self) -> set[int]:
        """The pids of the server processes, from their log lines."""
        return {int(m.group(1)) for line in list(self.lines) if (m := SERVING_LINE.search(line))}

    def answered_by(self) -> set[int]:
        return {int(m.group(1)) for line in list(self.lines) if (m := REQUEST_LINE.search(line))}


@contextmanager
def serve_group(store: Path, *options: str, timeout: float = 120) -> Iterator[Group]:
    """`latentdex serve --processes 2` until the group says it serves; killed on the way out."""
    command = [sys.executable, "-m", "latentdex.service.cli", "serve", "--store", str(store), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--processes", "2", "--grace", "1", *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = GROUP_SERVING.search(line)
            if match:
                port.append(int(match.group(2)))
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(timeout) and port, "".join(lines)
        group = Group(process, port[0], lines)
        assert len(group.children()) == 2, "".join(lines)
        yield group
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def query_by_id(port: int, image_id: int) -> pb.QueryResponse:
    # a channel of its own (no shared subchannel): a connection of its own, which the kernel places
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        return pb_grpc.LatentdexStub(channel).QueryById(
            pb.QueryByIdRequest(id=image_id, options=pb.QueryOptions(k=5)), timeout=30
        )


def test_two_processes_share_the_port_answer_every_query_and_stop_together(store: Path) -> None:
    with serve_group(store) as group:
        children = group.children()
        for image_id in range(1, 25):
            reply = query_by_id(group.port, image_id)
            assert len(reply.matches) == 5 and image_id not in {m.id for m in reply.matches}
        deadline = time.monotonic() + 10
        while group.answered_by() != children and time.monotonic() < deadline:
            time.sleep(0.1)  # the request log lines arrive through a pipe
        assert group.answered_by() == children  # 24 connections: both processes answered
        group.process.send_signal(signal.SIGTERM)
        assert group.process.wait(30) == 0
        assert gone_within(children, 10)


def test_a_child_that_dies_stops_the_group(store: Path) -> None:
    with serve_group(store) as group:
        first, second = sorted(group.children())
        os.kill(first, signal.SIGKILL)
        assert group.process.wait(30) == 1
        assert gone_within({second}, 10)
        assert any("exited" in line for line in group.lines)


def test_the_children_die_with_a_killed_parent(store: Path) -> None:
    with serve_group(store) as group:
        children = group.children()
        group.process.kill()
        group.process.wait()
        assert gone_within(children, 10)


def test_bad_group_options_and_a_held_port_are_refused(store: Path) -> None:
    base = [sys.executable, "-m", "latentdex.service.cli", "serve", "--store", str(store)]
    for options in (["--processes", "0"], ["--processes", "2", "--metrics-port", "0"]):
        result = subprocess.run([*base, *options], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert "--processes" in result.stderr and "Traceback" not in result.stderr
    with socket.socket() as held:  # another program listens on the port, without SO_REUSEPORT
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        result = subprocess.run(
            [*base, "--processes", "2", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_quiet_server_prints_its_bound_port_and_logs_no_requests(store: Path) -> None:
    command = [sys.executable, "-m", "latentdex.service.cli", "serve", "--store", str(store), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", "--grace", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]  # the store, then the bound port
        found = re.search(r"serving on 127\.0\.0\.1:(\d+) ", lines[1])
        assert found and int(found.group(1)) > 0, lines
        assert len(query_by_id(int(found.group(1)), 1).matches) == 5
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
        assert process.returncode == 0 and "latentdex.requests" not in errors, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_first_process_serves_the_web_app(store: Path) -> None:
    with serve_group(store, "--http-port", "0") as group:
        deadline = time.monotonic() + 10
        pages = []
        while not pages and time.monotonic() < deadline:
            pages = [m for line in list(group.lines) if (m := WEB_APP_LINE.search(line))]
            time.sleep(0.05)
        assert len(pages) == 1, "".join(group.lines)  # one web app, in one of the two processes
        port = int(pages[0].group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            assert reply.status == 200 and b"<html" in reply.read().lower()
        body = json.dumps({"id": 1, "options": {"k": 3}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/QueryById", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert len(json.loads(reply.read())["matches"]) == 3
