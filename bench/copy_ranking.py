"""The retrieval benchmark's searches ranked as the server ranks a query by image or id by default:
the nearest `pixel_alignment.DEPTH` by vector, re-ordered copies first (`indexer.pixel_alignment`)."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from latentdex.indexer.pixel_alignment import DEPTH, alignment_thumbnail, order_copies_first

SUFFIX = ", copies first"


def alignment_thumbnails(inputs: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 model inputs -> (N, SIDE, SIDE) uint8 alignment thumbnails."""
    return np.stack([alignment_thumbnail(pixels) for pixels in inputs])


def copies_first_search(
    base: np.ndarray,
    queries: np.ndarray,
    base_thumbnails: np.ndarray,
    query_thumbnails: np.ndarray,
    k: int,
    skip: Sequence[int] | None = None,
) -> np.ndarray:
    """Ids (Q, k) of each query's k best `base` rows: the DEPTH nearest by cosine, copies first.
    `skip[q]`: a row to leave out of query q's answer (the item itself, for a query by id)."""
    base = np.array(base, dtype=np.float32, order="C")
    queries = np.array(queries, dtype=np.float32, order="C")
    faiss.normalize_L2(base)
    if len(queries) == 0:
        return np.empty((0, k), np.int64)
    faiss.normalize_L2(queries)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    extra = 1 if skip is not None else 0
    similarities, ids = index.search(queries, min(max(k + extra, DEPTH), len(base)))
    found = np.full((len(queries), k), -1, np.int64)
    for row, (row_ids, row_similarities) in enumerate(zip(ids, similarities, strict=True)):
        keep = row_ids >= 0
        if skip is not None:
            keep &= row_ids != skip[row]
        row_ids, distances = row_ids[keep], 1.0 - row_similarities[keep]
        ordered = row_ids[order_copies_first(query_thumbnails[row], base_thumbnails[row_ids], distances)][:k]
        found[row, : len(ordered)] = ordered
    return found


def copies_first_precision(
    vectors: np.ndarray, thumbnails: np.ndarray, labels: Sequence[str], k: int
) -> float | None:
    """`retrieval_metrics.category_precision` for queries by id ranked copies first."""
    if len(vectors) < 2:
        return None
    found = copies_first_search(vectors, vectors, thumbnails, thumbnails, k, skip=range(len(vectors)))
    labels_array = np.array(labels, dtype=object)
    scores = [float(np.mean(labels_array[row[row >= 0]] == labels_array[i])) for i, row in enumerate(found)]
    return float(np.mean(scores))
