"""The FAISS half of a store: one vector index whose ids are the catalog's image ids.

Index types are factory strings kept in `FACTORIES`. Flat and HNSW are wrapped in `IDMap2`, so the ids
are ours (the catalog's primary keys) and survive removals. IVF-PQ stores our ids itself: `IDMap` over IVF
breaks on removal (IVF does not renumber the entries left, while `IDMap` compacts its id list). With the
"cosine" metric vectors are L2-normalised here, on add and on search alike, and searched by inner product.

HNSW cannot remove vectors. Removing from an HNSW index marks the vector's slot dead; searches skip dead
slots through a FAISS `IDSelector` over slots (not ids, so an id that is removed and added again keeps
only its new vector), and the index is rebuilt from its own vectors once a quarter of the slots are dead.
A saved file keeps dead slots: on load the last copy of an id wins, and the store's reconcile removes ids
that no longer have a row.

Not thread-safe: one writer, and no search while a write runs. `LatentStore` guards every call with a lock.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from latentdex.atomic_files import write_bytes_atomic
from latentdex.errors import BadLatent, DimensionMismatch, StoreError
from latentdex.indexer.rerank_rows import PendingRows

# Bytes per image are computed for d=128 float32 latents plus the 8-byte id, not measured; recall on our
# latents is not measured yet (tests: HNSW recall@10 > 0.95 on 2000 random 16-d vectors).
FACTORIES = {
    "flat": "IDMap2,Flat",  # exact brute force; ~520 B/image; the default
    "hnsw": "IDMap2,HNSW32",  # graph, approximate; ~780 B/image (links); removal marks slots dead
    "ivfpq": "IVF{nlist},PQ{m}",  # compressed, approximate; ~m+8 B/image; needs training; ids native
}
INDEX_TYPES = (*FACTORIES, "auto")
METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}

AUTO_FLAT_BELOW = 100_000  # "auto": exact search is fast enough below this many images
AUTO_HNSW_BELOW = 2_000_000  # "auto": HNSW's memory stays affordable below this; IVF-PQ above
IVF_POINTS_PER_LIST = 39  # FAISS warns when k-means gets fewer training points per centroid
IVF_MIN_TRAINING = 10_000  # below this IVF-PQ falls back to flat: too few points to train it well
EF_SEARCH = 64
NPROBE = 16
# IVF-PQ scores are approximate (recall@10 ~0.6 at 1M): the store asks it for this many candidates per
# wanted match and re-ranks them exactly with the stored latents (`rerank`).
IVF_REFINE = 10
HNSW_COMPACT_RATIO = 0.25
# A flat search of at least this many 128-d queries goes through BLAS, which reads the vectors once for
# the whole batch; below that FAISS scans them once per query. FAISS compares queries x dimensions with
# its threshold (128,000 in this build: a server's batches never reached BLAS). Measured at 1M x 128 on one
# thread: 32 queries 191 ms through BLAS against 688 ms; one query is 5x slower through BLAS, and the
# crossover is near 8 queries, so small batches keep the per-query scan (256-d: from 8 queries).
BLAS_MIN_QUERIES = 16
faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES * 128


def resolve_index_type(
    index_type: str, count: int, dim: int = 128, max_bytes: int | None = None
) -> tuple[str, str | None]:
    """The concrete index type for `count` vectors of `dim` and a note when it differs from the one asked
    for. "auto" picks by size (flat below AUTO_FLAT_BELOW, HNSW below AUTO_HNSW_BELOW, IVF-PQ above), then
    steps down to IVF-PQ when `max_bytes` (the RAM budget of the index) cannot hold the pick."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        pick = "flat" if count < AUTO_FLAT_BELOW else "hnsw" if count < AUTO_HNSW_BELOW else "ivfpq"
        if max_bytes is None or pick == "ivfpq" or index_bytes(pick, count, dim) <= max_bytes:
            return pick, None
        needed = f"{pick} needs {_size(index_bytes(pick, count, dim))} for {count:,} images"
        if count < IVF_MIN_TRAINING:
            return pick, f"{needed}, over the {_size(max_bytes)} budget; too few images for ivfpq"
        return "ivfpq", f"{needed}, over the {_size(max_bytes)} budget: ivfpq"
    if index_type == "ivfpq" and count < IVF_MIN_TRAINING:
        return "flat", (
            f"ivfpq needs at least {IVF_MIN_TRAINING} latents to train, the store has {count}: "
            "using an exact flat index; rebuild once the store is larger"
        )
    return index_type, None


def index_bytes(kind: str, count: int, dim: int) -> int:
    """RAM the vector index of `kind` takes for `count` vectors of `dim` (measured at d=128, 100k:
    flat 520 B, HNSW32 792 B, IVF-PQ 47 B per image; bench: index_types)."""
    per_image = {"flat": 4 * dim + 8, "hnsw": 4 * dim + 280, "ivfpq": _pq_bytes(dim) + 15}[kind]
    return per_image * count


def describe_choice(index_type: str, count: int, dim: int, max_bytes: int | None) -> str:
    """Why a store of `count` images has the index it has: the rule, the estimate and the budget."""
    concrete, note = resolve_index_type(index_type, count, dim, max_bytes)
    estimate = f"{concrete}, about {_size(index_bytes(concrete, count, dim))} of RAM for {count:,} images"
    if index_type != "auto":
        return f"{estimate} (asked for {index_type})" + (f"; {note}" if note else "")
    rule = f"auto: flat below {AUTO_FLAT_BELOW:,} images, hnsw below {AUTO_HNSW_BELOW:,}, ivfpq above"
    budget = f"; budget {_size(max_bytes)}" if max_bytes is not None else "; no memory budget"
    return f"{estimate} ({rule}{budget})" + (f"; {note}" if note else "")


def parse_size(text: str) -> int:
    """Bytes in "2GB", "512MiB", "1.5G", "100000000" (decimal units; "i" for binary); ValueError else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 2GB, 512MiB)")
    number, unit, binary = match.groups()
    exponent = "KMGT".find(unit.upper()) + 1 if unit else 0
    value = float(number) * (1024 if binary else 1000) ** exponent
    if value < 1:
        raise ValueError(f"a size must be at least one byte, got {text!r}")
    return int(value)


def _size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _pq_bytes(dim: int) -> int:
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def ivfpq_factory(count: int, dim: int) -> str:
    """The IVF-PQ factory string for `count` training vectors of `dim` dimensions."""
    nlist = 2 ** max(4, round(math.log2(4 * math.sqrt(count))))
    while nlist > 16 and count < IVF_POINTS_PER_LIST * nlist:
        nlist //= 2
    return FACTORIES["ivfpq"].format(nlist=nlist, m=_pq_bytes(dim))


def check_vectors(vectors: np.ndarray, dim: int, metric: str = "l2") -> np.ndarray:
    """`vectors` as a C-contiguous float32 (n, dim) array; raises DimensionMismatch or BadLatent.

    NaN and infinite values are bad under any metric, all-zero rows under "cosine" (they have no direction).
    """
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise DimensionMismatch(f"expected latents of shape (n, {dim}), got {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():  # one reduction on the way every query takes; rows for the message
        finite = np.isfinite(array).all(axis=1)
        raise BadLatent(f"latent rows {np.flatnonzero(~finite)[:10].tolist()} hold NaN or infinite values")
    if metric == "cosine" and len(array):
        zero = ~array.any(axis=1)
        if zero.any():
            raise BadLatent(f"latent rows {np.flatnonzero(zero)[:10].tolist()} are zero: no cosine direction")
    return array


def prepare_vectors(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Checked float32 vectors as the index stores them: L2-normalised (a copy) for "cosine"."""
    if metric != "cosine":
        return vectors
    vectors = vectors.copy()
    faiss.normalize_L2(vectors)
    return vectors


def exact_search(
    queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force `VectorIndex.search` over `vectors` stored under `ids`: same scores, same padding."""
    dim = vectors.shape[1]
    queries = prepare_vectors(check_vectors(queries, dim, metric), metric)
    base = prepare_vectors(check_vectors(vectors, dim, metric), metric)
    if len(base) == 0:
        return np.full((len(queries), k), np.nan, np.float32), np.full((len(queries), k), -1, np.int64)
    scores, rows = faiss.knn(queries, base, min(k, len(base)), metric=METRICS[metric])
    found = np.where(rows >= 0, ids[np.clip(rows, 0, None)], -1)
    pad = k - found.shape[1]
    if pad:
        found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
    return scores, found.astype(np.int64)


def rerank(
    queries: np.ndarray,
    candidates: np.ndarray,
    vectors_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    k: int,
    metric: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of each query's `candidates` (ids, -1 = none), best `k` first, padded like `search`.

    `vectors_of(ids)` gives (ids, vectors) for the sorted unique candidate ids it can: the exact vectors,
    e.g. the stored latents; a candidate it leaves out is dropped.
    """
    dim = queries.shape[1]
    queries = prepare_vectors(check_vectors(queries, dim, metric), metric)
    known, vectors = vectors_of(np.unique(candidates[candidates >= 0]))
    order = np.argsort(known)
    known, vectors = known[order], prepare_vectors(check_vectors(vectors[order], dim, metric), metric)
    scores = np.full((len(queries), k), np.nan, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, wanted) in enumerate(zip(queries, candidates, strict=True)):
        wanted = wanted[wanted >= 0]
        places = np.searchsorted(known, wanted)
        found = places < len(known)
        found[found] = known[places[found]] == wanted[found]
        rows = vectors[places[found]]
        if metric == "cosine":
            exact = rows @ query
            best = np.argsort(-exact, kind="stable")[:k]
        else:
            exact = ((rows - query) ** 2).sum(axis=1)
            best = np.argsort(exact, kind="stable")[:k]
        scores[row, : len(best)], ids[row, : len(best)] = exact[best], wanted[found][best]
    return scores, ids


class VectorIndex:
    """A FAISS index keyed by our ids, with the metric applied consistently; see the module docstring."""

    def __init__(self, index: faiss.Index, metric: str) -> None:
        self.metric = metric
        self.digest: str | None = None  # sha256 of the file this index was last loaded from or saved to
        self._adopt(index)
        # IVF-PQ only: the exact vectors added since `take_unsynced` last ran, for the store's re-rank
        # rows; `fresh` while every vector of the index is among them (a new index, not a loaded one).
        self.unsynced = PendingRows(self.dim)
        self.fresh = True

    @classmethod
    def create(
        cls, index_type: str, dim: int, metric: str = "cosine", training: np.ndarray | None = None
    ) -> VectorIndex:
        """An empty index; "ivfpq" is trained on `training` (required, see `IVF_MIN_TRAINING`)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if index_type == "ivfpq":
            if training is None or len(training) < IVF_MIN_TRAINING:
                raise ValueError(f"ivfpq needs at least {IVF_MIN_TRAINING} training latents")
            factory = ivfpq_factory(len(training), dim)
        elif index_type in FACTORIES:
            factory = FACTORIES[index_type]
        else:
            raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(FACTORIES)}")
        index = cls(faiss.index_factory(dim, factory, METRICS[metric]), metric)
        if index_type == "ivfpq":
            index._inner.do_polysemous_training = False  # we never search polysemously; it costs 100x
            index._index.train(prepare_vectors(check_vectors(training, dim, metric), metric))
        return index

    @classmethod
    def build(
        cls,
        index_type: str,
        dim: int,
        metric: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        max_bytes: int | None = None,
    ) -> tuple[VectorIndex, list[str]]:
        """An index holding `vectors` under `ids`, of the type `resolve_index_type` picks; and its notes."""
        concrete, note = resolve_index_type(index_type, len(ids), dim, max_bytes)
        index = cls.create(concrete, dim, metric, training=vectors if concrete == "ivfpq" else None)
        index.add(ids, vectors)
        return index, [note] if note else []

    @property
    def kind(self) -> str:
        """The concrete type: "flat", "hnsw" or "ivfpq"."""
        if isinstance(self._inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(self._inner, faiss.IndexIVF):
            return "ivfpq"
        return "flat"

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        """How many live vectors the index holds."""
        return int(self._index.ntotal) - len(self._dead)

    def ids(self) -> np.ndarray:
        """The ids of the live vectors (int64; an id appears twice only in a damaged file)."""
        if not self._mapped:
            lists = self._inner.invlists
            sizes = [lists.list_size(i) for i in range(lists.nlist)]
            parts = [faiss.rev_swig_ptr(lists.get_ids(i), n).copy() for i, n in enumerate(sizes) if n]
            return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)
        slots = self._slots()
        if not self._dead:
            return slots.copy()
        alive = np.ones(len(slots), dtype=bool)
        alive[list(self._dead)] = False
        return slots[alive]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` under `ids`, replacing any vectors those ids had; ValueError on a repeated id."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = check_vectors(vectors, self.dim, self.metric)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("the same id appears twice in one add")
        if len(ids) == 0:
            return
        # remove_ids rewrites the whole flat index: pay for it only when an id really is being replaced.
        if self._index.ntotal and np.isin(ids, self.ids()).any():
            self.remove(ids)
        prepared = prepare_vectors(vectors, self.metric)
        self._index.add_with_ids(prepared, ids)
        self._slot_ids = None
        if not self._mapped:
            self.unsynced.add(ids, prepared)

    def take_unsynced(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(ids, exact vectors) added since the last call, and whether they are all the index holds."""
        ids, vectors = self.unsynced.take()
        complete, self.fresh = self.fresh, False
        return ids, vectors, complete

    def remove(self, ids: np.ndarray) -> int:
        """Remove the vectors of `ids` (unknown ids are ignored); return how many were removed."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0 or self._index.ntotal == 0:
            return 0
        if self.kind != "hnsw":
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            self._slot_ids = None
            return removed
        slots = set(np.flatnonzero(np.isin(self._slots(), ids)).tolist()) - self._dead
        self._dead |= slots
        if len(self._dead) > HNSW_COMPACT_RATIO * self._index.ntotal:
            self._compact()
        return len(slots)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest ids per query and FAISS's scores (inner product, or squared L2 for "l2").

        `allowed`: search only among these ids. Rows are padded with id -1 where fewer than `k` vectors
        (are allowed to) match; HNSW and IVF-PQ may also find fewer under a narrow `allowed`, so callers
        that need exactly k check and fall back to exact search. Raises DimensionMismatch, BadLatent.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = prepare_vectors(check_vectors(queries, self.dim, self.metric), self.metric)
        if self.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            empty = np.full((len(queries), k), -1, dtype=np.int64)
            return np.full((len(queries), k), np.nan, dtype=np.float32), empty
        # The C++ selectors only point at their arrays and at each other: keep every one in a local.
        selector: faiss.IDSelector | None = None
        if not self._mapped:  # IVF-PQ holds our ids itself
            batch = (
                faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                if allowed is not None
                else None
            )
            selector = batch
        elif allowed is not None:
            slots = np.flatnonzero(np.isin(self._slots(), allowed))
            if self._dead:
                slots = slots[~np.isin(slots, np.fromiter(self._dead, dtype=np.int64))]
            batch = faiss.IDSelectorBatch(slots.astype(np.int64))
            selector = batch
        elif self._dead:
            dead = faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
            selector = faiss.IDSelectorNot(dead)
        scores, labels = self._inner.search(queries, k, params=self._search_parameters(selector, k))
        if not self._mapped:
            return scores, labels.astype(np.int64)
        ids = np.where(labels >= 0, self._slots()[np.maximum(labels, 0)], -1)
        return scores, ids.astype(np.int64, copy=False)

    def _search_parameters(self, selector: faiss.IDSelector | None, k: int) -> faiss.SearchParameters | None:
        if isinstance(self._inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(EF_SEARCH, k))
        if isinstance(self._inner, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=NPROBE) if selector is not None else None
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors stored for `ids` (normalised, for "cosine"). Flat and HNSW only; KeyError if absent."""
        if self.kind == "ivfpq":
            raise ValueError("IVF-PQ keeps only compressed codes: its vectors cannot be read back exactly")
        alive = {int(i): s for s, i in enumerate(self._slots().tolist()) if s not in self._dead}
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for row, vector_id in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            out[row] = self._inner.reconstruct(alive[vector_id])
        return out

    def save(self, path: Path) -> str:
        """Write the index to `path` atomically; return the sha256 of the bytes written."""
        data = faiss.serialize_index(self._index).tobytes()
        write_bytes_atomic(path, data)
        self.digest = hashlib.sha256(data).hexdigest()
        return self.digest

    @classmethod
    def load(cls, path: Path, metric: str) -> VectorIndex:
        """Read an index saved by `save`; raises StoreError if the file is missing, damaged or foreign."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read the vectors file {path}: {exc}") from exc
        try:
            raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:
            raise StoreError(f"{path} is not a readable FAISS index ({len(data)} bytes)") from exc
        index = cls(raw, metric)
        if METRICS[metric] != raw.metric_type:
            raise StoreError(f"{path} uses FAISS metric {raw.metric_type}, the store says {metric}")
        index.digest = hashlib.sha256(data).hexdigest()
        index.fresh = False
        if index.kind == "hnsw":  # slots are append-only, so the last copy of an id is the newest
            slots = index._slots()
            _, last_from_end = np.unique(slots[::-1], return_index=True)
            keep = len(slots) - 1 - last_from_end
            index._dead = set(range(len(slots))) - set(keep.tolist())
        return index

    def _slots(self) -> np.ndarray:
        if self._slot_ids is None:
            self._slot_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return self._slot_ids

    def _adopt(self, index: faiss.Index) -> None:
        self._owner = index  # the wrapper that owns the C++ index; the downcast views below do not
        self._index = faiss.downcast_index(index)
        self._mapped = isinstance(self._index, faiss.IndexIDMap2)
        self._inner = faiss.downcast_index(self._index.index) if self._mapped else self._index
        kinds = (faiss.IndexFlat, faiss.IndexHNSW) if self._mapped else (faiss.IndexIVFPQ,)
        if not isinstance(self._inner, kinds):
            raise StoreError(f"the vectors file holds a {type(self._index).__name__}, not a latentdex index")
        self._dead: set[int] = set()  # dead HNSW slots
        self._slot_ids: np.ndarray | None = None
        if isinstance(self._inner, faiss.IndexHNSW):
            self._inner.hnsw.efSearch = EF_SEARCH
        elif isinstance(self._inner, faiss.IndexIVF):
            self._inner.nprobe = NPROBE

    def _compact(self) -> None:
        """Rebuild an HNSW index from its live vectors (already normalised), dropping dead slots."""
        slots = self._slots()
        live = np.array(sorted(set(range(len(slots))) - self._dead), dtype=np.int64)
        kept = self._inner.reconstruct_n(0, len(slots))[live] if len(live) else np.empty((0, self.dim))
        fresh = faiss.index_factory(self.dim, FACTORIES["hnsw"], METRICS[self.metric])
        if len(live):
            fresh.add_with_ids(np.ascontiguousarray(kept, dtype=np.float32), slots[live])
        self._adopt(fresh)
