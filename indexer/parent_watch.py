"""Helper processes end when the process that started them does, even when it is SIGKILLed.

A killed indexer (the OOM killer, a container's hard stop) runs no clean-up: its multiprocessing
forkserver and decode workers would live on as orphans holding memory. Linux's parent-death signal ends
them with their parent. The forkserver imports this module as a preload (`indexer.decoding` sets it up);
the import arms the signal only in a process whose parent is the one named in `PARENT_ENV`, so neither
the indexer itself nor anything else that imports the module is affected. Decode workers arm it in their
initializer. Elsewhere than Linux this is a no-op.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.context
import os
import signal
import sys

PARENT_ENV = "LATENTDEX_HELPERS_OF"
_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; True if armed.

    If `expected_parent` is given and the parent is already another process (it died before the call),
    exit at once: the signal would never come.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
    return True


def mark_helpers_of_this_process() -> None:
    """Name this process as the one whose helpers (started from now on) must die with it."""
    os.environ[PARENT_ENV] = str(os.getpid())


def helper_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """A multiprocessing context whose helpers die with this process: forkserver (workers fork from a
    small server that imported only `preload`: no copy of torch or of this process's threads), or spawn
    where there is no forkserver. Pools on it should pass `die_with_parent` as their initializer."""
    mark_helpers_of_this_process()
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, *preload])
        return context
    return multiprocessing.get_context("spawn")


if os.environ.get(PARENT_ENV) == str(os.getppid()):
    die_with_parent(os.getppid())
