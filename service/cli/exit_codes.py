"""Maps each domain exception to the CLI's exit code, in one place."""

from __future__ import annotations

from models.errors import BadCheckpoint, BadImage, BadLatent, DimensionMismatch, LatentdexError, NotFound

_CODES: tuple[tuple[type[LatentdexError], int], ...] = (
    (BadImage, 3),
    (BadCheckpoint, 4),
    (DimensionMismatch, 5),
    (BadLatent, 5),
    (NotFound, 6),
)


def exit_code_for(error: LatentdexError) -> int:
    """The process exit code for `error` (1 for domain errors without a specific code)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return 1
