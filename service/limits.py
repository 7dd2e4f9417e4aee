"""What a server accepts, apart from the engine that enforces it (the CLI's option defaults read it)."""

from __future__ import annotations

from dataclasses import dataclass

from latentdex.indexer.load import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    """What a server accepts: the most matches, the largest preview side and image, the longest batch."""

    max_k: int = 1000
    max_preview_size: int = 1024
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 1024
