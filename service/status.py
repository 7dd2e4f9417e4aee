"""The guard every handler runs inside: domain errors out as their status codes, long calls stopped.

`answering` answers each `LatentdexError` with its kind's status (`latentdex.errors` holds the table) and
names the kind in the trailing metadata; anything unexpected becomes INTERNAL with a log line, so no
request takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc

from latentdex.errors import ERROR_KIND_KEY, CallCancelled, DeadlinePassed, LatentdexError
from latentdex.service.call_guard import checking

log = logging.getLogger(__name__)


def status_of(error: LatentdexError) -> grpc.StatusCode:
    """The gRPC status code a latentdex error is answered with: its kind's `status`."""
    return grpc.StatusCode[error.status]


@contextmanager
def answering(context: grpc.ServicerContext) -> Iterator[None]:
    """Map errors to statuses, and let long loops inside stop once the call is cancelled or late."""
    try:
        with checking(call_check(context)):
            yield
    except LatentdexError as exc:
        # the kind's name lets the client raise the same kind (and the CLI exit with its code)
        context.set_trailing_metadata(((ERROR_KIND_KEY, type(exc).__name__),))
        abort_with(context, status_of(exc), str(exc))
    except (ValueError, OverflowError) as exc:  # a proto value our checks did not foresee
        abort_with(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Exception:
        log.exception("unexpected error while answering a request")
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
