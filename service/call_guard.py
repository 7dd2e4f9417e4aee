"""The running call's stop check, for loops deep in the engine that cannot see the gRPC context.

`answering` installs a check for the call it guards; long loops (decoding frames in batches, loading
thumbnails) call `stop_if_abandoned()` between batches, so a call whose client cancelled or whose
deadline passed frees its worker within a batch instead of running to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StopCheck = Callable[[], None]
_current: ContextVar[StopCheck | None] = ContextVar("latentdex_call_check", default=None)


@contextmanager
def checking(check: StopCheck) -> Iterator[None]:
    """Make `check` the current call's stop check for the duration of the block."""
    token = _current.set(check)
    try:
        yield
    finally:
        _current.reset(token)


def stop_if_abandoned() -> None:
    """Raise (CallCancelled, or the deadline's error) if the current call should stop; else nothing."""
    check = _current.get()
    if check is not None:
        check()
