"""The exact vectors an IVF-PQ store re-ranks its candidates with, in a memory-mapped file beside the index.

IVF-PQ keeps ~40 bytes of codes per image in RAM, too coarse to rank by (recall@10 ~0.6 at 1M), so the
store asks it for 10x the candidates and re-scores them with their exact vectors. Reading those from the
SQL catalog costs a query per search; this file holds them instead, as float32 rows in index space
(whitened and normalised as FAISS holds them), row i for image id i. The operating system pages in the rows
a search touches and may drop them again, so they cost RAM only while hot: the process keeps nothing per
image. Catalog ids are dense, so the file has few holes; the holes are sparse on disk and read as zero
rows, which no image has (every index-space vector is normalised or a usable latent), so a zero row means
"not here": the store then reads that latent from the catalog.

Rows change in place (a new or re-encoded image) and are synced before the catalog records the generation
they hold; a whole new set (a rebuild, a new whitening) is written to a new file and renamed over the old
one, so a reader that mapped the old file keeps a consistent copy. The file is derived data like the FAISS
file: a missing, short or stale one is rebuilt from the catalog on the next writable open.
"""

from __future__ import annotations

import mmap
import os
from contextlib import suppress
from pathlib import Path

import numpy as np

from latentdex.atomic_files import atomic_output

GROWTH = 1.25  # the file grows by this factor past the largest id, so adds rarely remap it
_ITEM = np.dtype(np.float32).itemsize


class RerankRows:
    """Float32 rows of `dim` values by image id, memory-mapped from `path`."""

    def __init__(self, path: Path, dim: int, *, writable: bool) -> None:
        self.path, self.dim, self.writable = Path(path), dim, writable
        self._mapping: mmap.mmap | None = None
        self._rows: np.ndarray | None = None
        self._map()

    @classmethod
    def write_all(cls, path: Path, dim: int, ids: np.ndarray, vectors: np.ndarray) -> RerankRows:
        """A new file holding exactly `vectors` under `ids`, written beside `path` and renamed over it."""
        capacity = int(ids.max()) + 1 if len(ids) else 0
        with atomic_output(path) as temporary:
            with open(temporary, "r+b") as out:
                out.truncate(capacity * dim * _ITEM)  # sparse: holes cost no disk
            if capacity:
                rows = np.memmap(temporary, dtype=np.float32, mode="r+", shape=(capacity, dim))
                rows[ids] = vectors
                rows.flush()
                del rows
        return cls(path, dim, writable=True)

    @property
    def capacity(self) -> int:
        """Rows the file holds room for (ids below this have a row, possibly a zero one)."""
        return 0 if self._rows is None else self._rows.shape[0]

    def write(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Put `vectors` in the rows of `ids`, growing the file as needed; `sync` makes them durable."""
        if not self.writable:
            raise PermissionError("the re-rank rows are open read-only")
        if len(ids) == 0:
            return
        largest = int(ids.max())
        if largest >= self.capacity:
            self._grow(max(largest + 1, int(self.capacity * GROWTH)))
        assert self._rows is not None
        self._rows[ids] = vectors

    def sync(self) -> None:
        """Flush written rows to the file and the file to the disk."""
        if self._mapping is not None and self.writable:
            self._mapping.flush()
            with open(self.path, "rb") as file:
                os.fsync(file.fileno())

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids of `ids` that have a row here, their rows); the others are absent."""
        ids = np.asarray(ids, dtype=np.int64)
        inside = ids[(ids >= 0) & (ids < self.capacity)]
        if len(inside) == 0 or self._rows is None:
            return inside[:0], np.empty((0, self.dim), np.float32)
        vectors = np.asarray(self._rows[inside], dtype=np.float32)
        present = vectors.any(axis=1)
        return inside[present], vectors[present]

    def close(self) -> None:
        self._rows = None  # views first: a mapping with views into it cannot close
        if self._mapping is not None:
            if self.writable:
                self._mapping.flush()
            with suppress(BufferError):  # a search still reads it: unmapped when its last view goes
                self._mapping.close()
            self._mapping = None

    def _grow(self, capacity: int) -> None:
        self.close()
        with open(self.path, "r+b") as file:
            file.truncate(capacity * self.dim * _ITEM)
        self._map()

    def _map(self) -> None:
        size = self.path.stat().st_size
        if size % (self.dim * _ITEM):
            raise ValueError(f"{self.path} is {size} bytes, not whole rows of {self.dim} float32 values")
        count = size // (self.dim * _ITEM)
        if count == 0:
            return
        with open(self.path, "r+b" if self.writable else "rb") as file:
            access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
            self._mapping = mmap.mmap(file.fileno(), size, access=access)
        # A search reads ~100 scattered rows: without this, each page fault reads ahead ~128 KB of
        # neighbours, and a few hundred queries pull the whole file into the page cache.
        self._mapping.madvise(mmap.MADV_RANDOM)
        self._rows = np.frombuffer(self._mapping, dtype=np.float32).reshape(count, self.dim)


class PendingRows:
    """Exact vectors added to an index since the re-rank rows were last synced, kept as the arrays they
    came in (a rebuild of millions of vectors holds no per-row objects); the latest vector of an id wins."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._chunks.append((ids, vectors))

    def latest(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids in ascending order, the latest vector of each)."""
        if not self._chunks:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        ids = np.concatenate([chunk_ids for chunk_ids, _ in self._chunks])
        vectors = np.concatenate([chunk_vectors for _, chunk_vectors in self._chunks])
        unique, last_from_end = np.unique(ids[::-1], return_index=True)
        return unique, vectors[len(ids) - 1 - last_from_end].astype(np.float32, copy=False)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """`latest()`, and forget them."""
        rows = self.latest()
        self._chunks = []
        return rows

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the ids of `ids` held here, their latest vectors)."""
        if not self._chunks:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        held, vectors = self.latest()
        found = np.isin(held, ids)
        return held[found], vectors[found]
