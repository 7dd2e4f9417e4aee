"""Measure the peak memory of a stretch of work: this process, its child processes, and the two together.

`resource.getrusage` alone cannot say it: RUSAGE_SELF's maxrss is the peak of the whole process lifetime
(earlier benchmarks included), and RUSAGE_CHILDREN's counts only children that have exited and been
waited for, while the decode workers are grandchildren forked by a multiprocessing forkserver that outlives
the run. So `PeakMemory` resets this process's peak on entry (Linux /proc/self/clear_refs, which also
resets RUSAGE_SELF's maxrss) and samples /proc for every descendant process while the work runs.
Both rusage figures are reported too.
"""

from __future__ import annotations

import re
import resource
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

PROC = Path("/proc")
MIB = 1024 * 1024


class PeakMemory:
    """Context manager sampling memory every `interval` seconds; read `result()` after it exits.

    Peaks are in MiB: `self_peak` (this process's VmHWM since entry), `children_peak` (the largest VmHWM of
    any descendant seen), `tree_peak_rss` (the largest sampled sum of VmRSS over this process and its
    descendants; pages shared between processes are counted once per process).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-memory", daemon=True)
        self._children_hwm: dict[int, int] = {}
        self._tree_rss = 0
        self._reset = False
        self._pid = 0

    def __enter__(self) -> PeakMemory:
        try:
            (PROC / "self" / "clear_refs").write_text("5")
            self._reset = True
        except OSError:
            self._reset = False
        self._pid = int((PROC / "self").resolve().name)
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def result(self) -> dict[str, Any]:
        """The peaks in MiB, the rusage maxrss figures and what they mean."""
        own = process_memory(self._pid)
        usage_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        usage_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return {
            "self_peak_mib": own.get("VmHWM", 0) / MIB,
            "self_peak_since_entry": self._reset,
            "children_peak_mib": max(self._children_hwm.values(), default=0) / MIB,
            "children_seen": len(self._children_hwm),
            "tree_peak_rss_mib": self._tree_rss / MIB,
            "rusage_self_maxrss_mib": usage_self / 1024,
            "rusage_children_maxrss_mib": usage_children / 1024,
        }

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        total = process_memory(self._pid).get("VmRSS", 0)
        for pid in _descendants(self._pid):
            status = process_memory(pid)
            total += status.get("VmRSS", 0)
            if "VmHWM" in status:
                self._children_hwm[pid] = max(self._children_hwm.get(pid, 0), status["VmHWM"])
        self._tree_rss = max(self._tree_rss, total)


def process_memory(pid: int, keys: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int]:
    """The memory lines `keys` of a process's /proc status (e.g. VmRSS, RssAnon), in bytes; empty if it
    is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return {}
    pattern = rf"^({'|'.join(keys)}):\s+(\d+) kB"
    return {key: int(kib) * 1024 for key, kib in re.findall(pattern, text, re.MULTILINE)}


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of any of its threads, recursively)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = list((PROC / str(parent) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found
