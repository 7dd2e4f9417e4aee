"""Where the duplicate finder's region check reads an indexed image from: its file under the indexed folder.

A file that is gone, lies outside the folder, or no longer has the size it was indexed with (edited or
replaced since) is not read: the check then leaves that image to the latent and hash rules.

`compare_new_images` runs the check over the pairs of images just indexed (`indexer.new_image_pairs`), so
that a report later finds them remembered. OpenCV, which comparing files needs, is loaded when a check is
built or a file read, not when the CLI or the server starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import PRESETS, resolve_region_rule
from latentdex.indexer.load import DEFAULT_MAX_PIXELS
from latentdex.indexer.new_image_pairs import new_image_pairs
from latentdex.indexer.region_rule import LocalFeatures
from latentdex.indexer.store import LatentStore
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


def compare_new_images(
    store: LatentStore,
    image_ids: Sequence[int],
    threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> RegionCheck | None:
    """Compare the files of the candidate pairs of `image_ids` (just indexed into `store`) and keep what
    they gave in its catalog, for every preset's later report; the check, with its counts, or None where
    there is nothing to keep it for (no preset's region rule in the store's space, no indexed folder, or
    a catalog without the region memory)."""
    space = store.distance_space
    rules = [rule for name in PRESETS if (rule := resolve_region_rule(name, None, space)) is not None]
    check = region_check("near", None, space, store.indexed_root(), threads=threads, remember=True)
    if check is None or not rules or not store.region_memory.usable:
        return None
    first, second = new_image_pairs(store, image_ids, max(rule.max_distance for rule in rules))
    check.progress = progress
    for _ in check.links(store, first, second):
        pass
    return check
