"""The running call's stop check, for loops deep in the engine that cannot see the gRPC context.

`answering` installs a check for the call it guards; long loops (decoding frames in batches, loading
thumbnails) call `stop_if_abandoned()` between batches, so a call whose client cancelled or whose
deadline passed frees its worker within a batch instead of running to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

StopCheck = Callable[[], None]
_current: ContextVar[StopCheck | None] = ContextVar("latentdex_call_check", default=None)


class checking:  # noqa: N801 - used as a function: `with checking(check):`
    """Make `check` the current call's stop check for the duration of the block (a class rather than
    @contextmanager: every call enters one, and a generator costs several times as much)."""

    __slots__ = ("_check", "_token")

    def __init__(self, check: StopCheck) -> None:
        self._check = check

    def __enter__(self) -> None:
        self._token = _current.set(self._check)

    def __exit__(self, *_: object) -> None:
        _current.reset(self._token)


def stop_if_abandoned() -> None:
    """Raise (CallCancelled, or the deadline's error) if the current call should stop; else nothing."""
    check = _current.get()
    if check is not None:
        check()
