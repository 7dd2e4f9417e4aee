"""The region check of duplicate finding: candidate pairs of a store's images verified by their files.

`indexer.duplicates` collects the candidates (each image's HASH_NEIGHBOURS nearest in latent space within
the rule's `max_distance`, not yet linked otherwise) and `RegionCheck.links` reads the two files of each,
finds their local features and keeps the pairs where one picture is a region of the other
(`indexer.region_match`). Which file belongs to a record is the caller's to say (`FeatureSource`: the
CLI and the server look under the indexed folder and skip a file changed since it was indexed); an image
whose file cannot be read is left to the other rules. Features are kept for the run in a cache bounded
by bytes, and pairs are visited in the order of their two content hashes, grouped by one file, so that
each file is read about once. With `remember`, what a pair's files gave is kept in the store's catalog by
those hashes (`indexer.region_memory`), and a later run reads only the files of pairs it has not seen
(`indexer.new_image_pairs` has `latentdex index` compare the new images' pairs while it runs).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.region_match import overlap
from latentdex.indexer.region_memory import OverlapMemory, PairKey, pair_key
from latentdex.indexer.region_rule import LocalFeatures, Overlap, RegionRule
from latentdex.indexer.store import LatentStore

FeatureSource = Callable[[ImageRecord], LocalFeatures | None]
CACHE_BYTES = 256 * 2**20  # features kept for a run (~40 KB an image: about 6,500 images)
RECORD_CHUNK = 512  # candidate pairs looked up in the memory, and whose records (and files) are read, at once
PROGRESS_EVERY = 32  # candidate pairs between progress reports


class Groups(Protocol):
    """The groups a duplicate search is building (`duplicates.UnionFind`)."""

    def same(self, a: int, b: int) -> bool: ...

    def same_many(self, first: np.ndarray, second: np.ndarray) -> np.ndarray: ...


@dataclass
class RegionCheck:
    """A `RegionRule` with where to read each image's features from; counts what one run checked."""

    rule: RegionRule
    features_of: FeatureSource
    cache_bytes: int = CACHE_BYTES
    progress: Callable[[int, int], None] | None = None  # (candidate pairs done, in all), now and then
    threads: int = 1  # files read at once (decoding and ORB release the GIL)
    remember: bool = False  # keep what pairs gave in the store's catalog, and reuse what it kept
    pairs_checked: int = 0
    pairs_remembered: int = 0  # pairs answered from what an earlier run kept, without reading files
    pairs_linked: int = 0
    files_read: int = 0
    files_unreadable: int = 0
    seconds: float = 0.0
    _cache: OrderedDict[int, LocalFeatures | None] = field(default_factory=OrderedDict, repr=False)
    _cached_bytes: int = field(default=0, repr=False)

    def links(
        self,
        store: LatentStore,
        first: np.ndarray,
        second: np.ndarray,
        groups: Groups | None = None,
    ) -> Iterator[tuple[int, int]]:
        """The (id, id) pairs among the candidates `first[i]`, `second[i]` that the rule links, skipping
        pairs already in one of the `groups` being built (the caller joins what this yields)."""
        linked = groups.same if groups is not None else lambda a, b: False
        started = time.perf_counter()
        pairs = _distinct_pairs(np.asarray(first, np.int64), np.asarray(second, np.int64))
        memory = store.region_memory if self.remember else None
        pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        try:
            ids = np.unique(pairs)
            hashes = store.content_hashes(ids.tolist())  # ok images only: read once
            pairs = _in_key_order(pairs, ids, hashes)
            for start in range(0, len(pairs), RECORD_CHUNK):
                if self.progress is not None:
                    self.progress(start, len(pairs))
                chunk = pairs[start : start + RECORD_CHUNK]
                if groups is not None:
                    chunk = chunk[~groups.same_many(chunk[:, 0], chunk[:, 1])]
                todo = [(a, b) for a, b in chunk.tolist() if a in hashes and b in hashes]
                keys = {(a, b): _key(hashes[a], hashes[b]) for a, b in todo}
                known = memory.recall(key for key in keys.values() if key) if memory else {}
                # Remembered pairs first: the links they make spare reading the files of pairs they join.
                yield from self._remembered(todo, keys, known, linked)
                fresh = [(a, b) for a, b in todo if keys[a, b] not in known and not linked(a, b)]
                progress = (start + len(todo) - len(fresh), len(pairs))
                yield from self._read_and_compared(store, fresh, keys, memory, pool, linked, progress)
            if self.progress is not None:
                self.progress(len(pairs), len(pairs))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            self._cache.clear()  # a report keeps its check (the counts): not the features
            self._cached_bytes = 0
            self.seconds += time.perf_counter() - started

    def _read_and_compared(
        self,
        store: LatentStore,
        fresh: list[tuple[int, int]],
        keys: dict[tuple[int, int], PairKey | None],
        memory: OverlapMemory | None,
        pool: ThreadPoolExecutor | None,
        linked: Callable[[int, int], bool],
        progress: tuple[int, int],
    ) -> Iterator[tuple[int, int]]:
        """`_compared` over a few fresh pairs, with their records (where the files are) read first and,
        with a pool, their files; what they gave is kept even when the run stops part-way."""
        wanted = sorted({image_id for pair in fresh for image_id in pair})
        hits = store.hits(wanted, with_latents=False)
        records = {image_id: record for image_id, (record, _) in hits.items()}
        fresh = [(a, b) for a, b in fresh if a in records and b in records]
        found: dict[PairKey, Overlap] = {}
        try:
            if pool is not None:
                self._prefetch(pool, fresh, records)
            yield from self._compared(fresh, records, keys, found, linked, progress)
        finally:  # a run stopped part-way (a cancelled call, a deadline) keeps what it compared
            if memory is not None:
                memory.remember(found)

    def _remembered(
        self,
        todo: list[tuple[int, int]],
        keys: dict[tuple[int, int], PairKey | None],
        known: dict[PairKey, Overlap],
        linked: Callable[[int, int], bool],
    ) -> Iterator[tuple[int, int]]:
        """The pairs of `todo` that what earlier runs kept (`known`) links."""
        for a, b in todo:
            result = known.get(keys[a, b]) if keys[a, b] else None
            if result is not None:
                self.pairs_remembered += 1
                if self.rule.links(result) and not linked(a, b):
                    self.pairs_linked += 1
                    yield a, b

    def _compared(
        self,
        fresh: list[tuple[int, int]],
        records: dict[int, ImageRecord],
        keys: dict[tuple[int, int], PairKey | None],
        found: dict[PairKey, Overlap],
        linked: Callable[[int, int], bool],
        progress: tuple[int, int],
    ) -> Iterator[tuple[int, int]]:
        """The pairs of `fresh` that their files link; what each pair gave goes into `found`. `progress`:
        (candidate pairs done before these, in all)."""
        for done, (a, b) in enumerate(fresh):
            if self.progress is not None and done % PROGRESS_EVERY == 0:
                self.progress(progress[0] + done, progress[1])
            if linked(a, b):  # joined since by a link found earlier in the chunk
                continue
            one = self._features(records[a])
            other = self._features(records[b]) if one is not None else None
            if one is None or other is None:
                continue
            self.pairs_checked += 1
            result = overlap(one, other)
            if keys[a, b]:
                found[keys[a, b]] = result
            if self.rule.links(result):
                self.pairs_linked += 1
                yield a, b

    def linked_to(self, store: LatentStore, image_id: int, others: np.ndarray) -> list[int]:
        """Those of `others` that the rule links to `image_id`."""
        found = self.links(store, np.full(len(others), image_id, dtype=np.int64), np.asarray(others))
        return [b if a == image_id else a for a, b in found]

    def _prefetch(
        self, pool: ThreadPoolExecutor, todo: list[tuple[int, int]], records: dict[int, ImageRecord]
    ) -> None:
        """Read, on the pool's threads, the files of the pairs to check that are not cached."""
        wanted = {image_id for pair in todo for image_id in pair if image_id not in self._cache}
        chosen = [records[image_id] for image_id in sorted(wanted)]
        for record, features in zip(chosen, pool.map(self.features_of, chosen), strict=True):
            self._remember(record, features)

    def _features(self, record: ImageRecord) -> LocalFeatures | None:
        key = int(record.id or 0)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        return self._remember(record, self.features_of(record))

    def _remember(self, record: ImageRecord, features: LocalFeatures | None) -> LocalFeatures | None:
        key = int(record.id or 0)
        self.files_read += 1
        if features is None:
            self.files_unreadable += 1
        self._cache[key] = features
        self._cached_bytes += 0 if features is None else features.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= 0 if dropped is None else dropped.nbytes
        return features


def _distinct_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The distinct pairs of two different ids among `first[i]`, `second[i]`, as (n, 2) (smaller id
    first), sorted."""
    low, high = np.minimum(first, second), np.maximum(first, second)
    apart = low != high
    low, high = low[apart], high[apart]
    if len(high) and (high.max() >= 2**31 or low.min() < 0):
        return np.unique(np.c_[low, high], axis=0)
    codes = np.unique(low << 32 | high)  # one sort of int64, where a unique over rows is many times slower
    return np.c_[codes >> 32, codes & 0xFFFFFFFF]


def _in_key_order(pairs: np.ndarray, ids: np.ndarray, hashes: dict[int, str | None]) -> np.ndarray:
    """(n, 2) id pairs (sorted, over the sorted `ids`) ordered by their remembered key, those without one
    (an image without a content hash) last: a chunk then asks the memory for all the rows of few first
    hashes, not a few rows of many, and still holds few images, so the files it compares are read about
    once."""
    text = np.array([hashes.get(i) or "" for i in ids.tolist()], dtype="S64")
    _, rank = np.unique(text, return_inverse=True)  # ordered as the hashes are (hex: bytes as text)
    rows_a, rows_b = np.searchsorted(ids, pairs[:, 0]), np.searchsorted(ids, pairs[:, 1])
    first, second = rank[rows_a].astype(np.int64), rank[rows_b].astype(np.int64)
    keyless = (text[rows_a] == b"") | (text[rows_b] == b"")
    span = int(rank.max(initial=0)) + 1
    code = (np.minimum(first, second) * span + np.maximum(first, second)) + keyless * span * span
    return pairs[np.argsort(code, kind="stable")]  # equal keys stay in id order


def _key(first_hash: str | None, second_hash: str | None) -> PairKey | None:
    """The remembered pair's key: both files' content hashes (None if one has none)."""
    if not first_hash or not second_hash:
        return None
    return pair_key(first_hash, second_hash)
