"""Maps each domain exception to the CLI's exit code, in one place.

0 success; 1 any other domain error; 2 bad usage; 3 BadImage; 4 BadCheckpoint; 5 DimensionMismatch or
BadLatent; 6 NotFound; 7 `verify` found the store inconsistent; 8 StoreError (a store folder that is missing,
damaged, unwritable or locked by another writer); 9 ModelMismatch (a store built with another model: pass
`--reencode`); 10 a server answered with an error or could not be reached (`query`); 130 interrupted
(Ctrl-C).
"""

from __future__ import annotations

from models.errors import (
    BadCheckpoint,
    BadImage,
    BadLatent,
    DimensionMismatch,
    LatentdexError,
    ModelMismatch,
    NotFound,
    StoreError,
)
from service.client import ServerError

VERIFY_FAILED = 7
INTERRUPTED = 130

_CODES: tuple[tuple[type[LatentdexError], int], ...] = (
    (BadImage, 3),
    (BadCheckpoint, 4),
    (DimensionMismatch, 5),
    (BadLatent, 5),
    (NotFound, 6),
    (StoreError, 8),
    (ModelMismatch, 9),
    (ServerError, 10),
)


def exit_code_for(error: LatentdexError) -> int:
    """The process exit code for `error` (1 for domain errors without a specific code)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return 1
