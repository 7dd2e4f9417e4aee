"""Every error kind latentdex raises on purpose, each with its gRPC status and its CLI exit code.

This is the one table: the server answers a kind with its `status` (and names the kind in the trailing
metadata `ERROR_KIND_KEY`, so the client raises the same kind again), and the CLI exits with its
`exit_code`. The module imports nothing, so every layer (models, indexer, service, client) may use it.

Exit codes: 0 success; 1 any other error; 2 bad usage or an invalid request; 3 bad image; 4 bad
checkpoint; 5 wrong latent shape or values; 6 not found; 7 `verify` found the store inconsistent; 8 store
error (missing, damaged, unwritable, locked, empty or not indexed yet); 9 a store built with another model
(pass `--reencode`); 10 a server could not answer (unreachable, refused, too slow, cancelled);
11 already exists; 130 interrupted.
"""

from __future__ import annotations

ERROR_KIND_KEY = "latentdex-error-kind"
VERIFY_FAILED = 7
INTERRUPTED = 130


class LatentdexError(Exception):
    """Base class of every error latentdex raises on purpose."""

    status = "INTERNAL"  # the gRPC status code's name
    exit_code = 1


class BadCheckpoint(LatentdexError):
    """A model directory or file that is not a valid latentdex checkpoint."""

    status, exit_code = "FAILED_PRECONDITION", 4


class DimensionMismatch(LatentdexError):
    """A latent or tensor whose shape does not match the model or store."""

    status, exit_code = "INVALID_ARGUMENT", 5


class BadImage(LatentdexError):
    """Bytes or a file that cannot be decoded into an image we accept; `reason` says why."""

    status, exit_code = "INVALID_ARGUMENT", 3

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(LatentdexError):
    """A requested item (image id, direction, file) that does not exist."""

    status, exit_code = "NOT_FOUND", 6


class BadLatent(LatentdexError):
    """A latent with the right shape but unusable values (NaN or infinite)."""

    status, exit_code = "INVALID_ARGUMENT", 5


class StoreError(LatentdexError):
    """A store folder or file that is missing, not a latentdex store, damaged, or used against its rules."""

    status, exit_code = "UNAVAILABLE", 8


class ModelMismatch(LatentdexError):
    """Latents from a different model than the one a store was built with."""

    status, exit_code = "FAILED_PRECONDITION", 9


class InvalidQuery(LatentdexError):
    """A request that cannot be answered as asked (k out of range, a bad preview size, an unknown enum...)."""

    status, exit_code = "INVALID_ARGUMENT", 2


class EmptyStore(LatentdexError):
    """The store holds no searchable image yet."""

    status, exit_code = "FAILED_PRECONDITION", 8


class NoStore(LatentdexError):
    """The server has no store to answer from (none configured, or none indexed yet at its folder)."""

    status, exit_code = "FAILED_PRECONDITION", 8


class DirectionExists(LatentdexError):
    """A direction of that name exists already (and replacing it was not asked for)."""

    status, exit_code = "ALREADY_EXISTS", 11


class DeadlinePassed(LatentdexError):
    """The caller's deadline passed while the answer was being computed."""

    status, exit_code = "DEADLINE_EXCEEDED", 10


class CallCancelled(LatentdexError):
    """The client cancelled the call (or went away) while it was being answered."""

    status, exit_code = "CANCELLED", 10


class CannotListen(LatentdexError, RuntimeError):
    """A server cannot bind its address (the port is held by another program, or the host is not one of
    this machine's addresses). Never sent over the wire."""


ERROR_KINDS: dict[str, type[LatentdexError]] = {
    kind.__name__: kind
    for kind in (
        BadCheckpoint,
        DimensionMismatch,
        BadImage,
        NotFound,
        BadLatent,
        StoreError,
        ModelMismatch,
        InvalidQuery,
        EmptyStore,
        NoStore,
        DirectionExists,
        DeadlinePassed,
        CallCancelled,
    )
}
