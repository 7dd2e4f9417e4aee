"""Reading a started `latentdex` process's output until it says where it listens."""

from __future__ import annotations

import re
import time
from typing import IO


def wait_for_port(output: IO[str], pattern: re.Pattern[str], timeout: float) -> tuple[int | None, list[str]]:
    """Read `output` line by line until a line matches `pattern` (its first group: the port), the
    stream ends, or `timeout` seconds pass; return the port (None if none came) and the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = output.readline()
        if not line:
            break
        lines.append(line)
        found = pattern.search(line)
        if found:
            return int(found.group(1)), lines
    return None, lines
