"""Near-duplicate groups for the server: the store's groups a page at a time, and one image's group.

Finding every group reads the whole library (minutes at a million images), so the last few answers are
kept, keyed by the store's state and the options, and a page token names the answer it pages through. A
token from before the store changed is refused rather than paged on a different list.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latentdex.errors import InvalidQuery
from latentdex.indexer.duplicates import (
    DuplicateGroup,
    DuplicateReport,
    HashRule,
    duplicates_of,
    find_duplicates,
    resolve_hash_rule,
    resolve_threshold,
)
from latentdex.indexer.region_rule import RegionRule
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore
from latentdex.service.call_guard import stop_if_abandoned
from latentdex.service.duplicate_files import region_check
from latentdex.service.queries import QueryEngine

if TYPE_CHECKING:
    from latentdex.indexer.region_links import RegionCheck

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
CACHED_ANSWERS = 4


@dataclass(frozen=True)
class DuplicateOptions:
    preset: str | None = None
    threshold: float | None = None
    where: SearchFilter | None = None
    check_files: bool = True  # the region check reads the files of candidate pairs (`region_check`)


@dataclass(frozen=True)
class DuplicatePage:
    groups: list[DuplicateGroup]
    next_page_token: str
    total_groups: int
    images_in_groups: int
    images_scanned: int
    threshold: float | None
    space: str  # what the distances measure: "whitened", "cosine" or "l2" (LatentStore.distance_space)
    hash_rule: HashRule | None = None  # the rule for images that both have a perceptual hash
    region_rule: RegionRule | None = None  # the region check, where files were read


class DuplicateReview:
    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine
        self._answers: OrderedDict[str, DuplicateReport] = OrderedDict()
        self._lock = threading.Lock()

    def page(self, options: DuplicateOptions, page_size: int, page_token: str) -> DuplicatePage:
        """One page of the store's duplicate groups, largest first."""
        size = page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidQuery(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        with self.engine.current_store() as store:
            space = store.distance_space
            threshold = resolve_threshold(options.preset, options.threshold, space)
            hash_rule = resolve_hash_rule(options.preset, options.threshold, space)
            key = _answer_key(store.info.updated_at.isoformat(), store.folder, threshold, options)
            start = _token_offset(page_token, key)
            report = self._cached(key)
            if report is None:
                report = find_duplicates(
                    store,
                    threshold,
                    options.where,
                    progress=lambda done, total: stop_if_abandoned(),
                    hash_rule=hash_rule,
                    regions=self._regions(store, options, space),
                )
                self._remember(key, report)
        groups = report.groups[start : start + size]
        more = start + size < len(report.groups)
        return DuplicatePage(
            groups,
            _token(key, start + size) if more else "",
            len(report.groups),
            report.images_in_groups,
            report.images_scanned,
            report.threshold,
            space,
            report.hash_rule,
            None if report.regions is None else report.regions.rule,
        )

    def group_of(self, image_id: int, options: DuplicateOptions) -> DuplicatePage:
        """The group of one image (no group: an empty page). NotFound for an unknown id."""
        with self.engine.current_store() as store:
            space = store.distance_space
            threshold = resolve_threshold(options.preset, options.threshold, space)
            hash_rule = resolve_hash_rule(options.preset, options.threshold, space)
            regions = self._regions(store, options, space)
            group = duplicates_of(store, image_id, threshold, hash_rule=hash_rule, regions=regions)
        groups = [] if group is None else [group]
        in_groups = sum(len(g.members) for g in groups)
        region_rule = None if regions is None else regions.rule
        return DuplicatePage(groups, "", len(groups), in_groups, 1, threshold, space, hash_rule, region_rule)

    def _regions(self, store: LatentStore, options: DuplicateOptions, space: str) -> RegionCheck | None:
        root = store.indexed_root() if options.check_files else None  # no catalog read when unused
        max_pixels = self.engine.limits.max_image_pixels
        check = region_check(
            options.preset, options.threshold, space, root, max_pixels=max_pixels, remember=True
        )
        if check is not None:  # a cancelled or timed-out call stops reading files too
            check.progress = lambda done, total: stop_if_abandoned()
        return check

    def _cached(self, key: str) -> DuplicateReport | None:
        with self._lock:
            report = self._answers.get(key)
            if report is not None:
                self._answers.move_to_end(key)
            return report

    def _remember(self, key: str, report: DuplicateReport) -> None:
        with self._lock:
            self._answers[key] = report
            while len(self._answers) > CACHED_ANSWERS:
                self._answers.popitem(last=False)


def _answer_key(state: str, folder: object, threshold: float | None, options: DuplicateOptions) -> str:
    text = repr((state, str(folder), threshold, options.where, options.check_files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _token(key: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{key}:{offset}".encode()).decode()


def _token_offset(token: str, key: str) -> int:
    """The group a page token starts at (0 for none); InvalidQuery for a token of another answer."""
    if not token:
        return 0
    try:
        token_key, offset = base64.urlsafe_b64decode(token.encode("ascii")).decode().split(":")
        start = int(offset)
    except (ValueError, UnicodeError):
        raise InvalidQuery("page_token is not one this server handed out") from None
    if token_key != key:
        raise InvalidQuery("page_token is from before the library or the options changed: start again")
    if start < 0:
        raise InvalidQuery("page_token is not one this server handed out")
    return start
