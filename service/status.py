"""The guard every handler runs inside: domain errors out as their status codes, long calls stopped.

`answering` answers each `LatentdexError` with its kind's status (`latentdex.errors` holds the table) and
names the kind in the trailing metadata; anything unexpected becomes INTERNAL with a log line, so no
request takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

import grpc

from latentdex.errors import ERROR_KIND_KEY, CallCancelled, DeadlinePassed, LatentdexError
from latentdex.service.call_guard import checking

log = logging.getLogger(__name__)


def status_of(error: LatentdexError) -> grpc.StatusCode:
    """The gRPC status code a latentdex error is answered with: its kind's `status`."""
    return grpc.StatusCode[error.status]


class answering:  # noqa: N801 - used as a function: `with answering(context):`
    """Map errors to statuses, and let long loops inside stop once the call is cancelled or late.

    A class rather than @contextmanager: every call enters one, and a generator costs several times as
    much."""

    __slots__ = ("_checking", "_context")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self._checking = checking(call_check(context))

    def __enter__(self) -> None:
        self._checking.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        self._checking.__exit__(kind, error, _)
        if error is None or not isinstance(error, Exception):
            return  # answered, or a BaseException (KeyboardInterrupt, SystemExit) passing through
        context = self._context
        if isinstance(error, LatentdexError):
            # the kind's name lets the client raise the same kind (and the CLI exit with its code)
            context.set_trailing_metadata(((ERROR_KIND_KEY, type(error).__name__),))
            abort_with(context, status_of(error), str(error))
        if isinstance(error, (ValueError, OverflowError)):  # a proto value our checks did not foresee
            abort_with(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        log.error("unexpected error while answering a request", exc_info=error)
        abort_with(context, grpc.StatusCode.INTERNAL, "internal error (logged by the server)")


def abort_with(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def call_check(context: grpc.ServicerContext) -> Callable[[], None]:
    """A check that raises CallCancelled once the client has gone, DeadlinePassed once time is up."""
    deadline = _deadline_check(context)

    def check() -> None:
        if not context.is_active():
            raise CallCancelled("the client cancelled the call")
        deadline()

    return check


def _deadline_check(context: grpc.ServicerContext) -> Callable[[], None]:
    def check() -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlinePassed("the call's deadline passed before the answer was ready")

    return check
