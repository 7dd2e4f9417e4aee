"""The candidate pairs of images just indexed, for the region check to compare while their files are fresh.

Duplicate finding reads files only for candidate pairs: each image with one of its HASH_NEIGHBOURS nearest
in the duplicates' space, within the region rule's reach, that latents and hashes leave apart
(`indexer.duplicates`). What a pair's files gave is remembered by content hash (`indexer.region_memory`),
so comparing the new images' pairs when they are indexed leaves `latentdex duplicates`, the server and the
web app's review only remembered pairs to look up: a library's first duplicate report then costs what a
later one does, instead of reading files for an hour at a million images.

Neighbours are found as a report finds them: in the duplicates' space, through the same index over
every image of the store (exact up to `duplicates.EXACT_RANGE_MAX`, then IVF), for the new images alone:
each new image with its HASH_NEIGHBOURS nearest, and with any older image that has the new one among its
own HASH_NEIGHBOURS nearest (looked for among the new image's `REVERSE_REACH` nearest). Measuring every
image costs a large store tens of seconds (at a million images, reading the latents and building the
index), so a few images added to it (under `FEW_NEW_SHARE`) are looked up through the store's own index
instead, as one image's group is (`duplicates.duplicates_of`). Pairs the `near` preset's latents and
hashes link directly are left out (every preset's report skips them). A pair this misses (the IVF's
approximation, the shortcut's, or a filtered report's other neighbours) is compared by the report that
needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from latentdex.indexer.duplicates import (
    HASH_NEIGHBOURS,
    HASH_RULES,
    ONE_IMAGE_NEIGHBOURS,
    PRESETS,
    HashedVectors,
    range_index,
    score_distances,
)
from latentdex.indexer.store import LatentStore

REVERSE_REACH = 4 * HASH_NEIGHBOURS  # a new image's nearest searched for older images it is near to
BATCH = 4096  # new images searched at once
FEW_NEW_SHARE = 0.01  # fewer new images than this share of the store: found through the store's own index
Rows = np.ndarray


def new_image_pairs(
    store: LatentStore, image_ids: Sequence[int], reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, ids): the candidate pairs a report's region check would compare that involve `image_ids`
    (ok images of `store`): within `reach` in the duplicates' space, one among the other's HASH_NEIGHBOURS
    nearest, and not linked by the `near` preset's latents and hashes."""
    new_ids = np.unique(np.asarray(image_ids, dtype=np.int64))
    if len(new_ids) < FEW_NEW_SHARE * store.vector_count:
        return _few_new_pairs(store, new_ids, reach)
    found, vectors, metric = store.duplicate_vectors(store.select_ids())
    hashes, known = store.perceptual_hashes(found)
    is_new = np.isin(found, new_ids)
    rows = np.flatnonzero(is_new)
    if len(found) < 2 or not len(rows):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = range_index(vectors, metric)
    firsts, seconds = [], []
    for start in range(0, len(rows), BATCH):
        sources, others, distances, ranks = _nearest(index, vectors, rows[start : start + BATCH], metric)
        within = distances <= reach
        # a new image further down this one's list than a report looks is a pair if the older image has it
        # among its own nearest (a new one's own list covers it otherwise)
        further = within & (ranks >= HASH_NEIGHBOURS) & ~is_new[others]
        older = np.unique(others[further])
        kth = np.full(len(found), -np.inf)
        kth[older] = _kth_distance(index, vectors, older, metric)
        pair = within & ((ranks < HASH_NEIGHBOURS) | (distances <= kth[others]))
        sources, others, distances = sources[pair], others[pair], distances[pair]
        kept = ~_linked_by_near(store.distance_space, hashes, known, sources, others, distances)
        firsts.append(found[sources[kept]])
        seconds.append(found[others[kept]])
    return np.concatenate(firsts), np.concatenate(seconds)


def _few_new_pairs(store: LatentStore, new_ids: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """`new_image_pairs` for a few images added to a large store, without measuring all of it: each new
    image's ONE_IMAGE_NEIGHBOURS nearest through the store's own index, measured in the duplicates' space,
    of which its REVERSE_REACH // 2 nearest are kept (an older image that has the new one among its own
    nearest is almost always among them; a pair missed is compared by the report that needs it)."""
    found, latents = store.all_latents(new_ids)
    if not len(found) or store.vector_count < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    matches = store.search(latents, min(ONE_IMAGE_NEIGHBOURS + 1, store.vector_count))
    sources = np.repeat(found, [len(row) for row in matches])
    others = np.array([match.id for row in matches for match in row], dtype=np.int64)
    measured, vectors, metric = store.duplicate_vectors(np.unique(np.r_[found, others]))
    hashes, known = store.perceptual_hashes(measured)
    a, b = np.searchsorted(measured, sources), np.searchsorted(measured, others)
    usable = (sources != others) & np.isin(sources, measured) & np.isin(others, measured)
    sources, others, a, b = sources[usable], others[usable], a[usable], b[usable]
    # scored as FAISS scores them (inner product, or squared L2), read as distances the one way
    pairwise = vectors[a] * vectors[b] if metric == "cosine" else (vectors[a] - vectors[b]) ** 2
    distances = score_distances(pairwise.sum(axis=1), metric)
    order = np.lexsort((distances, sources))  # each new image's list, nearest first
    sources, others, a, b, distances = sources[order], others[order], a[order], b[order], distances[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sources)) + 1]
    ranks = np.arange(len(sources)) - np.repeat(starts, np.diff(np.r_[starts, len(sources)]))
    pair = (ranks < REVERSE_REACH // 2) & (distances <= reach)
    pair &= ~_linked_by_near(store.distance_space, hashes, known, a, b, distances)
    return sources[pair], others[pair]


def _nearest(
    index: faiss.Index, vectors: np.ndarray, rows: Rows, metric: str, k: int = REVERSE_REACH
) -> tuple[Rows, Rows, np.ndarray, np.ndarray]:
    """(rows, neighbour rows, distances, ranks): each of `rows` with its `k` nearest other rows, the
    nearest ranked 0."""
    k = min(k + 1, index.ntotal)
    scores, neighbours = index.search(vectors[rows], k)
    sources, others = np.repeat(rows, k), neighbours.ravel()
    valid = (others >= 0) & (others != sources)
    ranks = np.cumsum(valid.reshape(len(rows), k), axis=1).ravel() - 1
    distances = score_distances(scores.ravel(), metric)
    return sources[valid], others[valid], distances[valid], ranks[valid]


def _kth_distance(index: faiss.Index, vectors: np.ndarray, rows: Rows, metric: str) -> np.ndarray:
    """For each of `rows`, the distance of its HASH_NEIGHBOURS-th nearest other row (inf with fewer)."""
    if not len(rows):
        return np.zeros(0)
    sources, _, distances, ranks = _nearest(index, vectors, rows, metric, HASH_NEIGHBOURS)
    kth = np.full(len(rows), np.inf)
    last = ranks == HASH_NEIGHBOURS - 1
    kth[np.searchsorted(rows, sources[last])] = distances[last]
    return kth


def _linked_by_near(
    space: str, hashes: np.ndarray, known: np.ndarray, first: Rows, second: Rows, distances: np.ndarray
) -> np.ndarray:
    """Which pairs of rows the `near` preset links by latents and hashes alone, as a report's range
    search decides them (`duplicates.HashedVectors`)."""
    threshold = (PRESETS["near"] or {}).get(space)
    if threshold is None:
        return np.zeros(len(first), bool)
    rule = HASH_RULES["near"].get(space)
    if rule is None:
        return distances <= threshold
    return HashedVectors(hashes, known, rule).filter_range(first, second, distances, threshold)
