"""The retrieval benchmark's items: sources decoded into model inputs and altered queries, de-duplicated.

A `Source` is one image file; it gives one indexed item (the whole image) or several (square crops).
`plan_queries` picks the items to query and their alteration kinds, `load_sources` decodes every source
(in worker processes) and makes the altered copies, `build_index` and `gather_queries` stack the results.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from bench.alterations import QUERY_KINDS, alter, cap_source, choose_ops
from bench.datasets import MAX_SOURCE_PIXELS
from latentdex.errors import BadImage
from latentdex.indexer.load import load_for_model, load_image, model_square

SEED = 0  # every random choice of the retrieval benchmark derives from it
SOURCE_GROUPS = ("photo", "clipart", "stamp")  # the values of `Source.kind`


@dataclass(frozen=True)
class Source:
    """One image file and the indexed items it gives: whole (no crops) or several square crops."""

    path: str
    relative: str
    kind: str  # one of SOURCE_GROUPS
    category: str | None = None
    crops: tuple[tuple[float, float, float], ...] = ()  # (side share, left share, top share) per crop

    @property
    def items(self) -> int:
        """How many indexed items the source gives."""
        return len(self.crops) or 1


@dataclass(frozen=True)
class QuerySpec:
    """An altered copy to make of one indexed item (`offset` within its source)."""

    offset: int
    kind: str
    seed: int


@dataclass
class SourceResult:
    """What a worker decoded from one source: a model input per item, and the altered queries."""

    inputs: list[np.ndarray | None]
    queries: list[tuple[int, str, tuple[str, ...], np.ndarray | None]] = field(default_factory=list)
    error: str | None = None


def plan_queries(sources: Sequence[Source], count: int) -> dict[int, list[QuerySpec]]:
    """Pick `count` random items and give them alteration kinds in equal shares; keyed by source index."""
    owners = [(s, offset) for s, source in enumerate(sources) for offset in range(source.items)]
    rng = np.random.default_rng([SEED, 2])
    chosen = rng.choice(len(owners), min(count, len(owners)), replace=False)
    planned: dict[int, list[QuerySpec]] = {}
    for n, item in enumerate(chosen):
        source, offset = owners[int(item)]
        planned.setdefault(source, []).append(QuerySpec(offset, QUERY_KINDS[n % len(QUERY_KINDS)], int(item)))
    return planned


def load_sources(
    sources: Sequence[Source], queries: dict[int, list[QuerySpec]], size: int, workers: int | None = None
) -> list[SourceResult]:
    """Decode every source (in worker processes) into model inputs and its planned altered queries."""
    workers = workers or os.cpu_count() or 1
    jobs = [(s, queries.get(i, []), size) for i, s in enumerate(sources)]
    if workers == 1:
        return [_load_job(job) for job in jobs]
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_load_job, jobs, chunksize=4))


def _load_job(job: tuple[Source, list[QuerySpec], int]) -> SourceResult:
    source, queries, size = job
    try:
        return _load_source(source, queries, size)
    except BadImage as exc:
        return SourceResult(inputs=[None] * source.items, error=exc.reason)


def _load_source(source: Source, queries: list[QuerySpec], size: int) -> SourceResult:
    wanted = {q.offset for q in queries}
    originals: dict[int, np.ndarray] = {}
    if source.crops:
        pixels = load_image(source.path, max_pixels=MAX_SOURCE_PIXELS).pixels
        inputs: list[np.ndarray | None] = []
        for offset, box in enumerate(source.crops):
            crop = _crop(pixels, box, size)
            inputs.append(model_square(crop, size))
            if offset in wanted:
                originals[offset] = cap_source(crop)
    else:
        inputs = [load_for_model(source.path, size, max_pixels=MAX_SOURCE_PIXELS)]
        if wanted:
            originals[0] = cap_source(load_image(source.path, max_pixels=MAX_SOURCE_PIXELS).pixels)
    result = SourceResult(inputs=inputs)
    for query in queries:
        rng = np.random.default_rng([SEED, 3, query.seed])
        ops = choose_ops(query.kind, rng)
        encoded = alter(Image.fromarray(originals[query.offset]), ops, rng)
        try:
            result.queries.append((query.offset, query.kind, ops, load_for_model(encoded, size)))
        except BadImage:
            result.queries.append((query.offset, query.kind, ops, None))
    return result


def _crop(pixels: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    short = min(height, width)
    side = min(short, max(size, round(short * box[0])))
    left = round((width - side) * box[1])
    top = round((height - side) * box[2])
    return pixels[top : top + side, left : left + side]


@dataclass
class IndexSet:
    """The decoded, de-duplicated indexed items with their labels."""

    inputs: np.ndarray  # (N, S, S, 3) uint8 model inputs
    groups: list[str]  # source group (`Source.kind`) per row
    categories: list[str | None]
    first_item: list[int]  # per source: the planned item number of its first item
    kept_of: dict[int, int]  # planned item number -> row in `inputs` (duplicates map to the kept copy)
    duplicates: int


def build_index(sources: Sequence[Source], loaded: Sequence[SourceResult]) -> IndexSet:
    """Stack the decoded items, dropping failures and byte-identical model inputs (keeping the first)."""
    inputs: list[np.ndarray] = []
    groups: list[str] = []
    categories: list[str | None] = []
    first_item: list[int] = []
    kept_of: dict[int, int] = {}
    seen: dict[bytes, int] = {}
    duplicates = 0
    planned = 0
    for source, result in zip(sources, loaded, strict=True):
        first_item.append(planned)
        for pixels in result.inputs:
            if pixels is not None:
                digest = hashlib.sha256(pixels.tobytes()).digest()
                if digest in seen:
                    kept_of[planned] = seen[digest]
                    duplicates += 1
                else:
                    seen[digest] = kept_of[planned] = len(inputs)
                    inputs.append(pixels)
                    groups.append(source.kind)
                    categories.append(source.category)
            planned += 1
    if not inputs:
        raise RuntimeError("no benchmark image could be decoded")
    return IndexSet(np.stack(inputs), groups, categories, first_item, kept_of, duplicates)


@dataclass
class QuerySet:
    """The altered queries that decoded, with the index row of each one's original."""

    inputs: np.ndarray  # (Q, S, S, 3) uint8
    targets: np.ndarray  # (Q,) int64 rows of IndexSet.inputs
    kinds: np.ndarray  # (Q,) alteration kind names
    ops: np.ndarray  # (Q,) the applied operations joined by "+"


def gather_queries(index: IndexSet, loaded: Sequence[SourceResult], size: int) -> QuerySet:
    """Collect the decoded queries whose original made it into the index."""
    inputs, targets, kinds, ops = [], [], [], []
    for source_index, result in enumerate(loaded):
        base = index.first_item[source_index]
        for offset, kind, applied, pixels in result.queries:
            kept = index.kept_of.get(base + offset)
            if pixels is not None and kept is not None:
                inputs.append(pixels)
                targets.append(kept)
                kinds.append(kind)
                ops.append("+".join(applied))
    return QuerySet(
        inputs=np.stack(inputs) if inputs else np.empty((0, size, size, 3), np.uint8),
        targets=np.array(targets, dtype=np.int64),
        kinds=np.array(kinds, dtype=object),
        ops=np.array(ops, dtype=object),
    )
