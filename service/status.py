"""Domain errors to gRPC status codes, in one place, and the guard every handler runs inside.

`answering` turns each `LatentdexError` into its status code (see the proto's header) and anything
unexpected into INTERNAL with a log line, so no request takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc

from models.errors import (
    BadImage,
    BadLatent,
    DimensionMismatch,
    LatentdexError,
    ModelMismatch,
    NotFound,
    StoreError,
)
from service.call_guard import CallCancelled, checking
from service.latent_features import DirectionExists
from service.live_store import NoStore
from service.queries import EmptyStore, InvalidQuery

log = logging.getLogger(__name__)

_STATUS = (
    ((InvalidQuery, BadImage, DimensionMismatch, BadLatent), grpc.StatusCode.INVALID_ARGUMENT),
    ((NotFound,), grpc.StatusCode.NOT_FOUND),
    ((DirectionExists,), grpc.StatusCode.ALREADY_EXISTS),
    ((NoStore, EmptyStore, ModelMismatch), grpc.StatusCode.FAILED_PRECONDITION),
    ((StoreError,), grpc.StatusCode.UNAVAILABLE),
)


class DeadlinePassed(LatentdexError):
    """The caller's deadline passed while the answer was being computed."""


def status_of(error: LatentdexError) -> grpc.StatusCode:
    """The gRPC status code a latentdex error is answered with."""
    if isinstance(error, DeadlinePassed):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(error, CallCancelled):
        return grpc.StatusCode.CANCELLED
    for kinds, code in _STATUS:
        if isinstance(error, kinds):
            return code
    return grpc.StatusCode.INTERNAL


@contextmanager
def answering(context: grpc.ServicerContext) -> Iterator[None]:
    """Map errors to statuses, and let long loops inside stop once the call is cancelled or late."""
    try:
        with checking(call_check(context)):
            yield
    except LatentdexError as exc:
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
    deadline = deadline_check(context)

    def check() -> None:
        if not context.is_active():
            raise CallCancelled("the client cancelled the call")
        deadline()

    return check


def deadline_check(context: grpc.ServicerContext) -> Callable[[], None]:
    def check() -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlinePassed("the call's deadline passed before the answer was ready")

    return check
