"""Starts `latentdex serve` as a real child process, as an operator would, and finds the port it took."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        port, lines = None, []
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = SERVING.search(line)
            port = int(found.group(1)) if found else None
        assert port, "".join(lines)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
