"""Where the duplicate finder's region check reads an indexed image from: its file under the indexed folder.

A file that is gone, lies outside the folder, or no longer has the size it was indexed with (edited or
replaced since) is not read: the check then leaves that image to the latent and hash rules.

OpenCV, which comparing files needs, is loaded when a check is built or a file read, not when the CLI
or the server starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import resolve_region_rule
from latentdex.indexer.load import DEFAULT_MAX_PIXELS
from latentdex.indexer.region_rule import LocalFeatures
from latentdex.service.previews import original_file

if TYPE_CHECKING:
    from latentdex.indexer.region_links import FeatureSource, RegionCheck


def indexed_file_features(root: Path | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> FeatureSource:
    """Reads a record's features from its file under `root` (None: no folder, nothing is read)."""

    from latentdex.indexer.region_match import file_features

    def features(record: ImageRecord) -> LocalFeatures | None:
        path = None if root is None else original_file(root, record.path)
        if path is None:
            return None
        try:
            if path.stat().st_size != record.size:
                return None
        except OSError:
            return None
        return file_features(path, max_pixels)

    return features


def region_check(
    preset: str | None,
    threshold: float | None,
    space: str,
    root: Path | None,
    check_files: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    remember: bool = False,
) -> RegionCheck | None:
    """The preset's region check over the files under `root`, reading `threads` files at once and, with
    `remember`, keeping what pairs gave in the store's catalog for later runs; None when asked not to
    read files, for an explicit threshold or "exact", or without an indexed folder."""
    rule = resolve_region_rule(preset, threshold, space)
    if not check_files or rule is None or root is None:
        return None
    from latentdex.indexer.region_links import RegionCheck

    return RegionCheck(rule, indexed_file_features(root, max_pixels), threads=threads, remember=remember)
