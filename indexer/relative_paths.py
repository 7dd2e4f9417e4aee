"""An image's path as the catalog keys it: relative to the indexed root, its exact bytes."""

from __future__ import annotations


def path_key(path: str) -> bytes:
    """The exact bytes of a relative path; raises ValueError for an empty or absolute one."""
    if not path or path.startswith("/") or "\x00" in path:
        raise ValueError(f"image paths are relative to the indexed root, got {path!r}")
    return path.encode("utf-8", "surrogateescape")
