"""Near-duplicate groups of a store: the same picture saved twice, re-encoded, resized, lightly edited or
cropped.

Two images are linked when their distance in the store's duplicate space (for the default "whitened"
metric: 1 - cosine of fully whitened latents, `VectorSpec.to_duplicate_space`; searches use the same fit
half-way whitened) is at most a threshold, or when their files have the same content hash
(always, whatever the threshold). A preset links by two signals where both images have perceptual hashes
(`indexer.perceptual_hash`: the whole picture's and five regions', kept since catalog revision 0004): a
latent distance under a tighter threshold, or pHashes within a few bits of one of the image's nearest
latent neighbours that is also loosely near in latent space. A crop, a caption strip or a small rotation
moves the 64-px latent further than it moves the hashes of the whole or of the regions it spares, while
neighbouring crops and burst frames differ in both; images indexed before hashes were kept fall back to
the latent threshold alone. A preset's region check (`RegionCheck`, `indexer.region_links`) then reads the
files of each image's nearest neighbours that are still apart and links those where one picture lies
inside the other (`indexer.region_match`): the crops and captions that both signals miss.

Groups are the connected parts of those links, found without an
all-pairs matrix: a FAISS range search at the threshold, in batches, over the library's vectors (exact up
to EXACT_RANGE_MAX images, then an IVF-Flat index built for the run, which finds every planted duplicate
pair where a k-nearest search through an HNSW index misses some, and at a million images is several
times faster); links go into a union-find. Nothing is deleted: a group names a suggested keeper.

Keeper rule, stated: the largest pixel count, then the oldest capture time (images without one come after
those with one), then the shortest path, then the lowest id.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import faiss
import numpy as np

from latentdex.errors import InvalidQuery
from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.perceptual_hash import closest_bits
from latentdex.indexer.region_rule import RegionRule
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore

Rule = TypeVar("Rule", "HashRule", RegionRule)

if TYPE_CHECKING:  # the check itself loads OpenCV, which finding groups without it does not need
    from latentdex.indexer.region_links import RegionCheck

# Thresholds on the store's distance, by the space it searches: "whitened" (1 - cosine of whitened latents)
# and "cosine" (1 - cosine of raw mu: a cosine store, or a whitened one too small to have fitted its
# whitening). Calibrated on the shipped model by `python -m bench --only duplicates_quality`
# (bench/results/duplicates_quality.json): "near" is the largest threshold with pair precision 0.98 on the
# calibration pairs, "similar" with 0.90. "exact": content hashes only. These hold between images that lack a
# perceptual hash; where both have one, HASH_RULES applies.
PRESETS: dict[str, dict[str, float] | None] = {
    "exact": None,
    "near": {"whitened": 0.0241, "cosine": 0.0036},
    "similar": {"whitened": 0.0704, "cosine": 0.0099},
}
HASH_NEIGHBOURS = 16  # latent neighbours of each image whose pHash is compared with its own
DEFAULT_PRESET = "near"
ONE_IMAGE_NEIGHBOURS = 256  # nearest images searched for one image's group
EXACT_RANGE_MAX = 20_000  # up to this many images the range search is exact (brute force)
IVF_PROBES = 4  # lists an IVF range search visits: every planted pair found at 1M (bench duplicates_scale)
IVF_TRAIN_PER_LIST = 64
MAX_THRESHOLD = 2.0  # the largest cosine distance; an l2 store may use larger thresholds
BATCH = 4096  # images searched per batch
PAIRWISE_LIMIT = (
    32  # groups up to this size list every pairwise distance; larger ones, distances to the keeper
)

Progress = Callable[[int, int], None]  # (images searched so far, images in all)


@dataclass(frozen=True)
class HashRule:
    """Where both images have pHashes: linked if their latent distance is at most `latent_threshold`, or if
    one is among the other's HASH_NEIGHBOURS nearest, their closest same-place pair of hashes (whole with
    whole, region with region: `perceptual_hash.closest_bits`) differs by at most `max_bits` and their
    latent distance is at most `max_distance`."""

    latent_threshold: float
    max_bits: int
    max_distance: float

    def links(self, distances: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Which pairs of hashed images (their distances and differing bits) the rule links."""
        return (distances <= self.latent_threshold) | (
            (bits <= self.max_bits) & (distances <= self.max_distance)
        )


# The two-signal rule of each preset, calibrated by the same benchmark (the latent threshold, the pHash
# bits and the loose latent distance jointly: the largest calibration recall at the preset's precision).
HASH_RULES: dict[str, dict[str, HashRule]] = {
    "near": {"whitened": HashRule(0.0038, 6, 0.282), "cosine": HashRule(0.0008, 6, 0.0395)},
    "similar": {"whitened": HashRule(0.0584, 12, 0.282), "cosine": HashRule(0.0091, 12, 0.0395)},
}

# The region check of each preset (`indexer.region_match`): a pair among one image's HASH_NEIGHBOURS
# nearest within `max_distance` is linked when its files show one picture inside the other. Calibrated by
# the same benchmark on top of the rules above, in both spaces.
REGION_RULES: dict[str, dict[str, RegionRule]] = {
    "near": {"whitened": RegionRule(0.704, 10, 0.97, 0.0), "cosine": RegionRule(0.138, 10, 0.97, 0.0)},
    "similar": {"whitened": RegionRule(0.704, 10, 0.97, 0.0), "cosine": RegionRule(0.138, 10, 0.97, 0.7)},
}


@dataclass(frozen=True)
class DuplicateGroup:
    """Images of one picture: the keeper first, then the others nearest to it first."""

    members: list[ImageRecord]
    distances: dict[int, float]  # member id -> its distance to the keeper (the keeper's own: 0)
    exact: bool  # every member's file has the keeper's content hash
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # (id, id, distance), small groups

    @property
    def keeper(self) -> ImageRecord:
        return self.members[0]

    @property
    def ids(self) -> list[int]:
        return [int(m.id or 0) for m in self.members]


@dataclass(frozen=True)
class DuplicateReport:
    groups: list[DuplicateGroup]  # largest first, then by keeper id
    threshold: float | None
    images_scanned: int
    seconds: float
    hash_rule: HashRule | None = None  # the two-signal rule used where images have perceptual hashes
    regions: RegionCheck | None = None  # the region check used, with what it read and linked

    @property
    def images_in_groups(self) -> int:
        return sum(len(g.members) for g in self.groups)


def resolve_threshold(preset: str | None, threshold: float | None, space: str) -> float | None:
    """The distance threshold asked for: an explicit `threshold`, else the preset's (default "near") for
    the store's distance `space` ("whitened", "cosine" or "l2"). InvalidQuery for an unknown preset, a
    threshold out of range, both given, or a distance preset on an "l2" store."""
    if preset is not None and threshold is not None:
        raise InvalidQuery("give a preset or a threshold, not both")
    if threshold is not None:
        limit = float("inf") if space == "l2" else MAX_THRESHOLD
        if not (0 <= threshold <= limit):  # also refuses NaN
            raise InvalidQuery(f"threshold must be between 0 and {limit:g}, got {threshold}")
        return float(threshold)
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise InvalidQuery(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    by_space = PRESETS[name]
    if by_space is None:
        return None
    if space not in by_space:
        raise InvalidQuery(
            f"the presets are calibrated for cosine distances; this store searches by {space}: give a "
            "threshold, or switch it with `latentdex rebuild STORE --metric whitened`"
        )
    return by_space[space]


def resolve_hash_rule(preset: str | None, threshold: float | None, space: str) -> HashRule | None:
    """The two-signal rule of a preset (default "near") for the store's distance `space`; None for an
    explicit threshold (it is the whole rule), "exact", or a space without a calibrated rule. Call after
    `resolve_threshold`, which refuses what is invalid."""
    return _preset_rule(HASH_RULES, preset, threshold, space)


def resolve_region_rule(preset: str | None, threshold: float | None, space: str) -> RegionRule | None:
    """The region check of a preset (default "near") for the store's distance `space`; None for an
    explicit threshold, "exact", or a space without a calibrated rule (as `resolve_hash_rule`)."""
    return _preset_rule(REGION_RULES, preset, threshold, space)


def _preset_rule(
    rules: dict[str, dict[str, Rule]], preset: str | None, threshold: float | None, space: str
) -> Rule | None:
    if threshold is not None:
        return None
    return rules.get(preset or DEFAULT_PRESET, {}).get(space)


def find_duplicates(
    store: LatentStore,
    threshold: float | None,
    where: SearchFilter | None = None,
    *,
    progress: Progress | None = None,
    hash_rule: HashRule | None = None,
    regions: RegionCheck | None = None,
) -> DuplicateReport:
    """Every group of two or more ok images (passing `where`) linked by a distance at most `threshold`
    (None: same content hash only), or, where both have a perceptual hash, by `hash_rule`, or by
    `regions`: one picture's file a region of the other's."""
    started = time.perf_counter()
    where = None if where is None or where.is_empty else where
    ids = store.select_ids(where)
    links = UnionFind(ids)
    for group in store.same_hash_groups(where):
        for other in group[1:]:
            links.union(group[0], other)
    if threshold is not None and len(ids) > 1:
        found, vectors, metric = store.duplicate_vectors(ids)
        hashed = None
        if hash_rule is not None:
            hashes, known = store.perceptual_hashes(found)
            hashed = HashedVectors(hashes, known, hash_rule) if known.any() else None
        slots = np.searchsorted(ids, found)
        candidates = None if regions is None else CandidatePairs(regions.rule.max_distance)
        for first, second in linked_pairs(vectors, metric, threshold, progress, hashed, candidates):
            for a, b in zip(slots[first].tolist(), slots[second].tolist(), strict=True):
                links.union_slots(a, b)
        if regions is not None and candidates is not None:
            first, second = candidates.rows()
            for a, b in regions.links(store, found[first], found[second], links):
                links.union(a, b)
    groups = [_group(store, members) for members in links.groups()]
    groups.sort(key=lambda g: (-len(g.members), g.keeper.id or 0))
    return DuplicateReport(groups, threshold, len(ids), time.perf_counter() - started, hash_rule, regions)


@dataclass(frozen=True)
class HashedVectors:
    """The perceptual hashes of the rows of a vector array ((n, HASHES) uint64; `known` False where an
    image has none) and the rule that links rows by them."""

    hashes: np.ndarray
    known: np.ndarray
    rule: HashRule

    def filter_range(
        self, first: np.ndarray, second: np.ndarray, distances: np.ndarray, threshold: float
    ) -> np.ndarray:
        """Which range-search pairs stay linked: those the rule links where both have a hash, those
        within the latent-only `threshold` where one has none."""
        both = self.known[first] & self.known[second]
        bits = closest_bits(self.hashes[first], self.hashes[second])
        return np.where(both, self.rule.links(distances, bits), distances <= threshold)

    def neighbour_pairs(
        self, sources: np.ndarray, rows: np.ndarray, distances: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of hashed rows linked by the rule among rows and their nearest latent neighbours."""
        both = self.known[sources] & self.known[rows]
        sources, rows, distances = sources[both], rows[both], distances[both]
        linked = self.rule.links(distances, closest_bits(self.hashes[sources], self.hashes[rows]))
        return sources[linked], rows[linked]


@dataclass
class CandidatePairs:
    """Collects the pairs of rows, each row with one of its HASH_NEIGHBOURS nearest, within `reach`."""

    reach: float
    _first: list[np.ndarray] = field(default_factory=list)
    _second: list[np.ndarray] = field(default_factory=list)

    def add(self, sources: np.ndarray, rows: np.ndarray, distances: np.ndarray) -> None:
        near = distances <= self.reach
        self._first.append(sources[near])
        self._second.append(rows[near])

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._first:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self._first).astype(np.int64), np.concatenate(self._second).astype(np.int64)


def linked_pairs(
    vectors: np.ndarray,
    metric: str,
    threshold: float,
    progress: Progress | None = None,
    hashed: HashedVectors | None = None,
    candidates: CandidatePairs | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, rows) of the vector pairs at most `threshold` apart: `metric` "cosine" (vectors
    L2-normalised; distance 1 - dot) or "l2". With `hashed`, pairs of rows that both have a hash are
    linked by its rule instead (a pair may then come twice). With `candidates`, each row's nearest
    neighbours within its reach are collected there for a region check."""
    index = range_index(vectors, metric)
    reach = threshold if hashed is None else max(threshold, hashed.rule.latent_threshold)
    # FAISS keeps inner products above the radius, squared L2 distances below it
    radius = 1.0 - reach if metric == "cosine" else reach**2
    total = len(vectors)
    for start in range(0, total, BATCH):
        batch = vectors[start : start + BATCH]
        limits, scores, rows = index.range_search(batch, radius)
        sources = np.repeat(np.arange(start, start + len(batch)), np.diff(limits).astype(np.int64))
        later = rows > sources
        sources, rows, scores = sources[later], rows[later], scores[later]
        if hashed is not None:
            kept = hashed.filter_range(sources, rows, score_distances(scores, metric), threshold)
            sources, rows = sources[kept], rows[kept]
        yield sources, rows
        if hashed is not None or candidates is not None:
            near = _neighbours(index, batch, start, metric)
            if hashed is not None:
                yield hashed.neighbour_pairs(*near)
            if candidates is not None:
                candidates.add(*near)
        if progress is not None:
            progress(min(start + BATCH, total), total)


def _neighbours(
    index: faiss.Index, batch: np.ndarray, start: int, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, neighbour rows, distances): each batch row (numbered from `start`) with each of its
    HASH_NEIGHBOURS nearest other rows."""
    k = min(HASH_NEIGHBOURS + 1, index.ntotal)
    scores, rows = index.search(batch, k)
    sources = np.repeat(np.arange(start, start + len(batch)), k)
    rows, scores = rows.ravel(), scores.ravel()
    distances = score_distances(scores, metric)
    usable = (rows >= 0) & (rows != sources)
    return sources[usable], rows[usable], distances[usable]


def score_distances(scores: np.ndarray, metric: str) -> np.ndarray:
    """FAISS scores as distances: 1 - inner product ("cosine") or the root of squared L2 ("l2")."""
    return 1.0 - scores if metric == "cosine" else np.sqrt(np.maximum(scores, 0.0))


def range_index(vectors: np.ndarray, metric: str) -> faiss.Index:
    """A FAISS index of duplicate-space `vectors` for a run: exact up to EXACT_RANGE_MAX, else IVF-Flat."""
    dim = vectors.shape[1]
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if len(vectors) <= EXACT_RANGE_MAX:
        index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    else:
        lists = 2 ** round(math.log2(math.sqrt(len(vectors))))
        quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss_metric)
        sample = np.random.default_rng(0).choice(
            len(vectors), min(len(vectors), lists * IVF_TRAIN_PER_LIST), replace=False
        )
        index.train(vectors[np.sort(sample)])
        index.nprobe = IVF_PROBES
    index.add(vectors)
    return index


def duplicates_of(
    store: LatentStore,
    image_id: int,
    threshold: float | None,
    neighbours: int = ONE_IMAGE_NEIGHBOURS,
    hash_rule: HashRule | None = None,
    regions: RegionCheck | None = None,
) -> DuplicateGroup | None:
    """The images within `threshold` of `image_id`, linked to it by `hash_rule` where both have a
    perceptual hash, by `regions` among its HASH_NEIGHBOURS nearest, or with its content hash, as a group
    with it (None if it has none). NotFound for an unknown id."""
    [record] = store.get([image_id])
    members = {image_id}
    members.update(
        r.id for r in store.find_by_hash(record.content_hash) if r.id is not None and r.status == "ok"
    )
    if threshold is not None:
        latent = store.latents([image_id])
        k = min(neighbours + 1, store.vector_count)
        near = [m.id for m in store.search(latent, k)[0] if m.id != image_id]
        ids, distances = _nearest_by_duplicate_distance(store, image_id, near)
        linked = distances <= threshold
        nearest = np.arange(len(distances)) < HASH_NEIGHBOURS
        if hash_rule is not None and len(distances):
            hashes, known = store.perceptual_hashes(ids)
            bits = closest_bits(hashes[1:], hashes[:1])
            in_reach = nearest | (distances <= hash_rule.latent_threshold)
            by_rule = hash_rule.links(distances, bits) & in_reach
            linked = np.where(known[0] & known[1:], by_rule, linked)
        members.update(int(i) for i in ids[1:][linked])
        if regions is not None:
            unlinked = ids[1:][nearest & ~linked & (distances <= regions.rule.max_distance)]
            members.update(regions.linked_to(store, image_id, unlinked))
    return _group(store, sorted(members)) if len(members) > 1 else None


def _nearest_by_duplicate_distance(
    store: LatentStore, image_id: int, near: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """`image_id` then the ids of `near` nearest first in the duplicates' space (the search found them
    in its own), and their distances to it there."""
    found, vectors, metric = store.duplicate_vectors(np.array(sorted({image_id, *near}), dtype=np.int64))
    slot = {int(i): row for row, i in enumerate(found.tolist())}
    if image_id not in slot:
        return np.array([image_id], dtype=np.int64), np.zeros(0)
    others = np.array([i for i in near if i in slot], dtype=np.int64)
    rows = np.array([slot[int(i)] for i in others], dtype=np.int64)
    own = vectors[slot[image_id]]
    # scored as FAISS scores them (inner product, or squared L2), read as distances the one way
    scores = vectors[rows] @ own if metric == "cosine" else ((vectors[rows] - own) ** 2).sum(axis=1)
    distances = score_distances(scores, metric)
    order = np.argsort(distances, kind="stable")
    return np.r_[np.int64(image_id), others[order]], distances[order].astype(np.float64)


def keeper_order(record: ImageRecord) -> tuple:
    """Sort key of the keeper rule: most pixels, then oldest capture time, then shortest path, then id."""
    pixels = (record.width or 0) * (record.height or 0)
    captured = record.capture_time or datetime.max
    return (-pixels, record.capture_time is None, captured, len(record.path), record.id or 0)


def _group(store: LatentStore, member_ids: Sequence[int]) -> DuplicateGroup:
    records = sorted(store.get(list(member_ids)), key=keeper_order)
    ids = [int(r.id or 0) for r in records]
    matrix = store.duplicate_distances(ids)
    to_keeper = {image_id: float(matrix[0, i]) for i, image_id in enumerate(ids)}
    to_keeper[ids[0]] = 0.0
    order = [0, *sorted(range(1, len(ids)), key=lambda i: (to_keeper[ids[i]], ids[i]))]
    records = [records[i] for i in order]
    exact = len({r.content_hash for r in records}) == 1
    pairs = []
    if len(ids) <= PAIRWISE_LIMIT:
        pairs = [
            (ids[a], ids[b], float(matrix[a, b])) for a in range(len(ids)) for b in range(a + 1, len(ids))
        ]
    return DuplicateGroup(records, {r.id or 0: to_keeper[r.id or 0] for r in records}, exact, pairs)


class UnionFind:
    """Disjoint sets over a fixed array of ids (union by size, path halving)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.parent = np.arange(len(self.ids))
        self.size = np.ones(len(self.ids), dtype=np.int64)
        self._id_list: list[int] | None = None  # for looking one id up: bisect is ~10x numpy's scalar call

    def union_slots(self, slot_a: int, slot_b: int) -> None:
        """Link the ids at two positions of the id array."""
        root_a, root_b = self._root(slot_a), self._root(slot_b)
        if root_a == root_b:
            return
        if self.size[root_a] < self.size[root_b]:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        self.size[root_a] += self.size[root_b]

    def _slot(self, image_id: int) -> int | None:
        if self._id_list is None:
            self._id_list = self.ids.tolist()
        slot = bisect.bisect_left(self._id_list, image_id)
        return slot if slot < len(self._id_list) and self._id_list[slot] == image_id else None

    def _root(self, slot: int) -> int:
        parent = self.parent
        while parent[slot] != slot:
            parent[slot] = parent[parent[slot]]
            slot = parent[slot]
        return slot

    def same(self, a: int, b: int) -> bool:
        """Whether two ids are already in one set (False for an id outside it)."""
        slot_a, slot_b = self._slot(a), self._slot(b)
        return slot_a is not None and slot_b is not None and self._root(slot_a) == self._root(slot_b)

    def same_many(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """`same` for arrays of id pairs."""
        slot_a, slot_b = self._slots(first), self._slots(second)
        inside = (slot_a >= 0) & (slot_b >= 0)
        roots_a, roots_b = self._roots(slot_a[inside]), self._roots(slot_b[inside])
        out = np.zeros(len(slot_a), dtype=bool)
        out[inside] = roots_a == roots_b
        return out

    def _slots(self, ids: np.ndarray) -> np.ndarray:
        """The positions of `ids` in the id array (-1 for an id outside it)."""
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        slots = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[slots] == ids, slots, -1)

    def _roots(self, slots: np.ndarray) -> np.ndarray:
        """The roots of many slots at once, halving their paths as `_root` does."""
        parent = self.parent
        while True:
            up = parent[slots]
            moving = up != slots
            if not moving.any():
                return slots
            parent[slots[moving]] = parent[up[moving]]
            slots = np.where(moving, parent[slots], slots)

    def union(self, a: int, b: int) -> None:
        """Link two ids; an id outside the set (filtered out, or removed meanwhile) is ignored."""
        slot_a, slot_b = self._slot(a), self._slot(b)
        if slot_a is not None and slot_b is not None:
            self.union_slots(slot_a, slot_b)

    def groups(self) -> list[list[int]]:
        """The sets of two or more ids, each sorted."""
        roots = np.array([self._root(slot) for slot in range(len(self.ids))], dtype=np.int64)
        order = np.argsort(roots, kind="stable")
        boundaries = np.flatnonzero(np.diff(roots[order])) + 1
        return [self.ids[part].tolist() for part in np.split(order, boundaries) if len(part) > 1]
