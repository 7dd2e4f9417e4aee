"""A decode function for the indexer's worker processes that dies like a crashing C decoder on "crash" files.

Kept apart from the test modules so a worker imports only this and the real decoder, not torch.
"""

from __future__ import annotations

import os
import signal

from latentdex.indexer.decoding import DecodedFile, decode_for_index


def decode_or_crash(path: str, image_size: int) -> DecodedFile:
    """`decode_for_index`, except that a file whose name starts with "crash" kills the worker (SIGSEGV)."""
    if os.path.basename(path).startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_for_index(path, image_size)
