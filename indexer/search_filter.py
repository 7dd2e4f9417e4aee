"""Which stored images a search may return: conditions on their metadata, as a value.

The value alone, for the client and the command line; `indexer.filters` turns it into SQL over the
catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from latentdex.indexer.relative_paths import path_key


@dataclass(frozen=True)
class SearchFilter:
    """Conditions on stored metadata; every one that is set must hold.

    `path_prefix`: the relative path starts with it ("2023/" for a folder; compared byte for byte).
    `captured_after` (inclusive) and `captured_before` (exclusive): EXIF capture time, which has no time
    zone; naive datetimes, compared as written in the photo. Images without one never pass a time bound.
    `min_width`, `min_height`: the original's pixel size after EXIF rotation.
    `formats`: the decoder's format names ("JPEG", "PNG", "WEBP", ...), case-insensitive.
    """

    path_prefix: str | None = None
    captured_after: datetime | None = None
    captured_before: datetime | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.path_prefix is not None:
            path_key(self.path_prefix)  # ValueError for an absolute or empty prefix
        for name in ("captured_after", "captured_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is not None:
                raise ValueError(f"{name} must be a naive datetime: EXIF capture times have no time zone")
        for name in ("min_width", "min_height"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        object.__setattr__(self, "formats", frozenset(f.upper() for f in self.formats))

    @property
    def is_empty(self) -> bool:
        """True if the filter admits every ok image (it sets no condition)."""
        bounds = (self.path_prefix, self.captured_after, self.captured_before)
        return all(b is None for b in bounds) and not (self.min_width or self.min_height or self.formats)
