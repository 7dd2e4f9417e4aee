"""No process of ours outlives its parent: SIGKILL a real `latentdex index` (and `serve`) and find none
of its helpers (multiprocessing forkserver, resource tracker, decode workers) alive a few seconds later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shape_image
from serve_support import serve_process

from latentdex.indexer.parent_watch import PARENT_ENV

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")


def children() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":  # a zombie has exited; only its entry waits to be reaped
                out[int(entry.name)] = int(fields[1])
    return out


def descendants(root: int) -> set[int]:
    table = children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & set(children())


def kill_and_check(process: subprocess.Popen, helpers: set[int]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(helpers), f"helpers left running: {sorted(alive(helpers))}"


def test_a_sigkilled_indexer_leaves_no_helper_running(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(600):
        shape_image(i, i % 4, 160).save(photos / f"p{i:04d}.jpg", quality=90)
    command = [
        sys.executable,
        "-m",
        "latentdex.service.cli",
        "index",
        str(photos),
        "--store",
        str(tmp_path / "store"),
    ]
    command += ["--workers", "2", "--batch-size", "8"]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    try:
        helpers: set[int] = set()
        deadline = time.monotonic() + 60
        # a forkserver, a resource tracker and two workers: the run is decoding
        while len(helpers) < 4 and process.poll() is None and time.monotonic() < deadline:
            helpers |= descendants(process.pid)
            time.sleep(0.02)
        assert process.poll() is None and len(helpers) >= 4, "the run ended before its helpers were seen"
        kill_and_check(process, helpers)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_sigkilled_server_leaves_no_process_behind(tmp_path: Path) -> None:
    with serve_process(tmp_path / "none") as (process, _):
        kill_and_check(process, descendants(process.pid))


def test_arming_the_signal_where_the_parent_is_already_gone_exits_at_once() -> None:
    """A helper whose parent died before it armed the signal would never get it: it exits instead."""
    code = (
        "import os; from latentdex.indexer.parent_watch import die_with_parent; "
        "print(die_with_parent(os.getppid()), flush=True); "
        "print(die_with_parent(os.getppid() + 1), flush=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines() == ["True"] and result.returncode == 1


@pytest.mark.parametrize(("marked_parent", "armed"), [("parent", 9), ("other", 0), (None, 0)])
def test_the_import_arms_the_signal_only_in_a_helper_of_the_marked_process(
    marked_parent: str | None, armed: int
) -> None:
    """The forkserver imports the module with its parent marked; anything else importing it is untouched."""
    code = (
        "import ctypes, latentdex.indexer.parent_watch; value = ctypes.c_int(); "
        "ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0); print(value.value)"  # PR_GET_PDEATHSIG
    )
    env = {k: v for k, v in os.environ.items() if k != PARENT_ENV}
    if marked_parent is not None:
        env[PARENT_ENV] = str(os.getpid() if marked_parent == "parent" else os.getpid() + 1)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == armed


EARLY_HELPERS = """
import sys
from multiprocessing import forkserver
from latentdex.indexer.decoding import DecodePool, decode_for_index, start_decode_helpers

start_decode_helpers()
server = forkserver._forkserver._forkserver_pid
with DecodePool(1, decode_for_index, 32, 2) as pool:
    [(index, decoded)] = list(pool.results([sys.argv[1]], lambda: False))
later = forkserver._forkserver._forkserver_pid
# read once the pool has forked from it: a process just spawned may not have exec'd its command yet
command = open(f"/proc/{server}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
print(server, later, "latentdex.indexer.decoding" in command, decoded.failure)
print(repr(command), file=sys.stderr)
"""


def test_decode_helpers_started_early_are_the_ones_a_later_pool_forks_from(tmp_path: Path) -> None:
    """`index` starts the decoder's forkserver before it imports torch, so the two starts overlap: the
    server is running, with the decoder preloaded, before any pool exists, and the pool made later
    decodes through that same server rather than starting another."""
    image = tmp_path / "one.png"
    shape_image(0, 0, 48).save(image)
    done = subprocess.run(
        [sys.executable, "-c", EARLY_HELPERS, str(image)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    before, after, preloaded, failure = done.stdout.split()
    assert before == after and int(before) > 0
    assert preloaded == "True" and failure == "None", done.stderr
