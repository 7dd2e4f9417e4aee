"""Walks a photo folder and yields the image files in it, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".gif",
        ".tif",
        ".tiff",
        ".bmp",
        ".heic",
        ".heif",
        ".avif",
        ".mpo",
    }
)


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield image files under `root` (recursively, sorted, hidden entries skipped).

    Symlinked folders are not followed, so a link loop cannot trap the walk; symlinked files are
    yielded like any other file. Raises `NotADirectoryError` if `root` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    for folder, dirs, files in os.walk(base, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(folder) / name
