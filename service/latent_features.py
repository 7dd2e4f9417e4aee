"""The latent space as a feature: generate, interpolate, edit along named directions, traverse, map.

`LatentExplorer` works on top of a `QueryEngine` (its model, live store and limits): inputs are queries
(image bytes, a latent, or a stored id), outputs are `DecodedFrame`s (a latent, its decoding, and
optionally the stored images nearest to it), so every point of the space can land on real photos of the
library. The math is in `models.latent_space`; directions are stored by `indexer.directions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from latentdex.errors import DimensionMismatch, DirectionExists, NoStore, NotFound
from latentdex.indexer.directions import Direction, DirectionBook, check_name, new_direction
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore
from latentdex.models import latent_space
from latentdex.service.call_guard import stop_if_abandoned
from latentdex.service.previews import EncodedPicture, encode_picture, thumbnail_image
from latentdex.service.queries import (
    EmptyStore,
    Hit,
    IdQuery,
    ImageQuery,
    InvalidQuery,
    PreviewSpec,
    Query,
    QueryEngine,
)
from latentdex.service.wire import LibraryMap, MapCell

MAX_SAMPLES = 64
MAX_STRENGTHS = 64
MAX_STRENGTH = 100.0
MAX_TRAVERSE_DIMENSIONS = 32
MAX_FRAMES = 512  # decoded frames in one call (traverse: dimensions x values)
MAX_NEAREST_HITS = 8192  # frames x nearest_k: each hit can carry a thumbnail read from disk
MAX_ATLAS_PIXELS = 4096 * 4096  # a map's (columns x cell) x (rows x cell)
DECODE_BATCH = 16  # frames decoded between two checks that the call is still wanted
DEFAULT_STEPS = 8
DEFAULT_TOP = 8
DEFAULT_VALUES = (-3.0, -1.5, 0.0, 1.5, 3.0)
MAP_GRID_LIMITS = (2, 64)
MAP_CELL_LIMITS = (16, 256)


@dataclass(frozen=True)
class FrameSpec:
    """How frames are decoded (format, size 0: the model's) and how many nearest images come with each."""

    format: str = "PNG"
    size: int = 0
    nearest_k: int = 0
    where: SearchFilter | None = None
    thumbnails: bool = False


@dataclass(frozen=True)
class DecodedFrame:
    """A point of the latent space with its decoded picture and the stored images nearest to it (as
    `Hit`s); `position` is the interpolation t, edit strength or sample index. The wire's `Frame`."""

    latent: np.ndarray
    picture: EncodedPicture
    nearest: list[Hit]
    position: float


@dataclass(frozen=True)
class GroupSpec:
    """Stored images chosen by id, by GLOB pattern on the path, and/or as a query's `query_k` results
    (the wire's `ImageGroup`, checked)."""

    ids: tuple[int, ...] = ()
    path_globs: tuple[str, ...] = ()
    query: Query | None = None
    query_k: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.ids or self.path_globs or (self.query is not None and self.query_k))


@dataclass(frozen=True)
class LibraryStats:
    """Per-dimension mean and standard deviation of the store's latents, and how active each dimension
    is (`latent_space.active_dimensions`, the one definition: variance of mu over the store)."""

    count: int
    mean: np.ndarray
    std: np.ndarray
    activity: latent_space.DimensionActivity

    @property
    def variance(self) -> np.ndarray:
        return self.activity.variance

    @property
    def order(self) -> np.ndarray:
        """Dimensions, most active first."""
        return self.activity.order

    @property
    def active_count(self) -> int:
        return len(self.activity.active())


@dataclass
class _StatsCache:
    """What the explorer keeps between calls: library statistics per store state."""

    key: tuple[str, str, int] | None = None
    stats: LibraryStats | None = None


@dataclass
class LatentExplorer:
    """Generate, interpolate, edit, traverse and map, with `engine`'s model over its store."""

    engine: QueryEngine
    _cache: _StatsCache = field(default_factory=_StatsCache)

    # --- generate and interpolate --------------------------------------------------------------------

    def generate(
        self,
        count: int,
        *,
        temperature: float = 1.0,
        seed: int | None = None,
        around: Query | None = None,
        spread: float = 1.0,
        source: Literal["auto", "prior", "library"] = "auto",
        frames: FrameSpec | None = None,
    ) -> list[DecodedFrame]:
        """`count` new latents, decoded: from the prior, from a Gaussian fitted to the library, or around
        an image (its posterior for image bytes; the library's deviations for a latent or stored id)."""
        frames = self._check_frames(frames)
        if not 1 <= count <= MAX_SAMPLES:
            raise InvalidQuery(f"count must be between 1 and {MAX_SAMPLES}, got {count}")
        for name, value in (("temperature", temperature), ("spread", spread)):
            if not (math.isfinite(value) and 0 < value <= 10):
                raise InvalidQuery(f"{name} must be in (0, 10], got {value}")
        needs_store = frames.nearest_k > 0 or source == "library" or isinstance(around, IdQuery)
        with self._store(needs_store) as store:
            if around is not None:
                latents = self._around(around, store, count, spread, seed)
            elif source == "prior" or (source == "auto" and store is None):
                latents = latent_space.sample_prior(count, self.engine.codec.latent_dim, temperature, seed)
            else:
                assert store is not None
                stats = self.library_stats(store)
                latents = latent_space.sample_fitted(stats.mean, stats.std, count, temperature, seed)
            return self._frames(latents, [float(i) for i in range(count)], frames, store)

    def interpolate(
        self,
        start: Query,
        end: Query,
        *,
        steps: int = DEFAULT_STEPS,
        method: Literal["linear", "slerp"] = "slerp",
        frames: FrameSpec | None = None,
    ) -> list[DecodedFrame]:
        """`steps` frames from `start` to `end` (both included), linear or spherical."""
        frames = self._check_frames(frames)
        if not 2 <= steps <= latent_space.MAX_STEPS:
            raise InvalidQuery(f"steps must be between 2 and {latent_space.MAX_STEPS}, got {steps}")
        needs_store = frames.nearest_k > 0 or any(isinstance(q, IdQuery) for q in (start, end))
        with self._store(needs_store) as store:
            ends = self.engine.query_latents([start, end], store)
            path = latent_space.interpolate(ends[0], ends[1], steps, method)
            return self._frames(path, np.linspace(0.0, 1.0, steps).tolist(), frames, store)

    # --- directions ----------------------------------------------------------------------------------

    def create_direction(
        self,
        name: str,
        positive: GroupSpec,
        negative: GroupSpec,
        *,
        method: Literal["auto", "mean_difference", "probe"] = "auto",
        replace: bool = False,
        description: str = "",
    ) -> Direction:
        """Learn a direction from two groups of stored images and store it under `name`."""
        try:
            check_name(name)
        except ValueError as exc:
            raise InvalidQuery(str(exc)) from exc
        if method not in ("auto", "mean_difference", "probe"):
            raise InvalidQuery(f"unknown direction method {method!r}")
        with self.engine.searchable_store() as store:
            pos_ids = self._group_ids(positive, store, "positive")
            neg_ids = self._group_ids(negative, store, "negative")
            if overlap := sorted(set(pos_ids.tolist()) & set(neg_ids.tolist()))[:5]:
                raise InvalidQuery(f"images {overlap} are in both groups")
            pos, neg = store.all_latents(pos_ids)[1], store.all_latents(neg_ids)[1]
            if method == "auto":
                vector, chosen, auc = latent_space.choose_direction(pos, neg)
                separation: float | None = (
                    None if math.isnan(auc) else auc
                )  # NaN: groups too small to hold out
            else:
                if method == "probe":
                    vector = latent_space.probe_direction(pos, neg)
                else:
                    vector = latent_space.mean_difference_direction(pos, neg)
                chosen, separation = method, None
            direction = new_direction(
                name, store.model_id, vector, chosen, separation, (len(pos), len(neg)), description
            )
        with self._book() as (book, _):
            try:
                book.save(direction, replace=replace)
            except ValueError as exc:
                raise DirectionExists(str(exc)) from exc
        return direction

    def list_directions(self) -> list[Direction]:
        with self._book() as (book, latents_of):
            return book.list(latents_of)

    def delete_direction(self, name: str) -> None:
        with self._book() as (book, latents_of):
            book.delete(name, latents_of)

    def edit(
        self,
        source: Query,
        direction: str,
        strengths: Sequence[float] = (1.0,),
        *,
        frames: FrameSpec | None = None,
    ) -> list[DecodedFrame]:
        """`source` moved along the named direction by each strength, decoded (and its nearest images)."""
        frames = self._check_frames(frames)
        strengths = list(strengths) or [1.0]
        if len(strengths) > MAX_STRENGTHS:
            raise InvalidQuery(f"at most {MAX_STRENGTHS} strengths, got {len(strengths)}")
        if not all(math.isfinite(s) and abs(s) <= MAX_STRENGTH for s in strengths):
            raise InvalidQuery(f"strengths must be finite and within +-{MAX_STRENGTH:g}")
        with self._book() as (book, latents_of):
            vector = book.get(direction, latents_of).vector
        if vector.shape != (self.engine.codec.latent_dim,):
            raise DimensionMismatch(
                f"direction {direction!r} has {vector.size} values, the model's latents "
                f"{self.engine.codec.latent_dim}"
            )
        with self._store(frames.nearest_k > 0 or isinstance(source, IdQuery)) as store:
            latent = self.engine.query_latents([source], store)[0]
            edited = latent_space.apply_direction(latent, vector, strengths)
            return self._frames(edited, [float(s) for s in strengths], frames, store)

    # --- explore -------------------------------------------------------------------------------------

    def traverse(
        self,
        source: Query,
        *,
        dimensions: Sequence[int] = (),
        top: int = DEFAULT_TOP,
        values: Sequence[float] = DEFAULT_VALUES,
        image_format: str = "PNG",
        size: int = 0,
    ) -> list[tuple[int, list[DecodedFrame]]]:
        """Per dimension (given, or the `top` most active over the store), `source` with that dimension
        moved by each value (in the store's standard deviations of it), decoded."""
        self._check_frames(FrameSpec(image_format, size))
        values = list(values) or list(DEFAULT_VALUES)
        if len(values) > MAX_STRENGTHS or not all(
            math.isfinite(v) and abs(v) <= MAX_STRENGTH for v in values
        ):
            raise InvalidQuery(f"at most {MAX_STRENGTHS} values, each finite and within +-{MAX_STRENGTH:g}")
        dim = self.engine.codec.latent_dim
        if len(dimensions) > MAX_TRAVERSE_DIMENSIONS:
            raise InvalidQuery(f"at most {MAX_TRAVERSE_DIMENSIONS} dimensions, got {len(dimensions)}")
        if bad := [d for d in dimensions if not 0 <= d < dim]:
            raise InvalidQuery(f"dimensions must be in 0..{dim - 1}, got {bad[:5]}")
        if not dimensions and not 1 <= top <= MAX_TRAVERSE_DIMENSIONS:
            raise InvalidQuery(f"top must be between 1 and {MAX_TRAVERSE_DIMENSIONS}, got {top}")
        rows_wanted = len(dimensions) or top
        if rows_wanted * len(values) > MAX_FRAMES:
            raise InvalidQuery(
                f"dimensions x values = {rows_wanted} x {len(values)} frames; at most {MAX_FRAMES} a call"
            )
        with self.engine.searchable_store() as store:
            latent = self.engine.query_latents([source], store)[0]
            stats = self.library_stats(store)
        chosen = list(dimensions) or stats.order[:top].tolist()
        grid = latent_space.traversal(latent, chosen, values, stats.std)
        pictures = self._pictures(grid.reshape(-1, dim), FrameSpec(image_format, size))
        rows = []
        for row, dimension in enumerate(chosen):
            frames = [
                DecodedFrame(grid[row, col], pictures[row * len(values) + col], [], float(value))
                for col, value in enumerate(values)
            ]
            rows.append((int(dimension), frames))
        return rows

    def library_stats(self, store: LatentStore | None = None) -> LibraryStats:
        """Per-dimension statistics of the store's latents (cached until the store changes)."""
        holder = nullcontext(store) if store is not None else self.engine.searchable_store()
        with holder as opened:
            key = (str(opened.folder), opened.info.updated_at.isoformat(), opened.vector_count)
            if self._cache.key == key and self._cache.stats is not None:
                return self._cache.stats
            _, latents = opened.all_latents()
        if len(latents) == 0:
            raise NotFound("the store holds no usable latent")
        activity = latent_space.active_dimensions(latents)
        stats = LibraryStats(
            count=len(latents),
            mean=latents.mean(axis=0),
            std=np.sqrt(activity.variance) + 1e-6,
            activity=activity,
        )
        self._cache.key, self._cache.stats = key, stats
        return stats

    def render_map(
        self,
        *,
        columns: int = 16,
        rows: int = 12,
        cell: int = 64,
        decoded: bool = False,
        where: SearchFilter | None = None,
        image_format: str = "PNG",
    ) -> LibraryMap:
        """The library on its first two principal components: one image per grid cell (the one nearest
        the cell's centre), as thumbnails of the originals or decodings of the latents."""
        low, high = MAP_GRID_LIMITS
        if not (low <= columns <= high and low <= rows <= high):
            raise InvalidQuery(f"columns and rows must be between {low} and {high}, got {columns} x {rows}")
        if not MAP_CELL_LIMITS[0] <= cell <= MAP_CELL_LIMITS[1]:
            smallest, largest = MAP_CELL_LIMITS
            raise InvalidQuery(f"cell must be between {smallest} and {largest}, got {cell}")
        if (columns * cell) * (rows * cell) > MAX_ATLAS_PIXELS:
            raise InvalidQuery(
                f"a {columns * cell} x {rows * cell} px map is over the {MAX_ATLAS_PIXELS:,}-pixel cap: "
                "fewer cells or smaller ones"
            )
        self._check_frames(FrameSpec(image_format, 0))
        with self.engine.searchable_store() as store:
            ids, latents = store.all_latents(store.select_ids(where) if where is not None else None)
            if len(ids) < 2:
                held = "the filter admits" if where is not None else "the store holds"
                raise InvalidQuery(f"a map needs at least 2 images, {held} {len(ids)}")
            coords, explained = latent_space.pca_2d(latents)
            placed = latent_space.grid_layout(coords, columns, rows)
            chosen = [int(ids[index]) for index, _, _ in placed]
            records = {i: hit[0] for i, hit in store.hits(chosen, with_latents=False).items()}
            root = None if decoded else store.indexed_root()
        atlas = Image.new("RGB", (columns * cell, rows * cell), (255, 255, 255))
        if decoded:
            pixels = self.engine.codec.decode(latents[[index for index, _, _ in placed]])
            tiles = [Image.fromarray(p).resize((cell, cell), Image.Resampling.LANCZOS) for p in pixels]
        else:
            limit = self.engine.limits.max_image_pixels
            tiles = [
                thumbnail_image(root / records[image_id].path, cell, limit)
                if root is not None and image_id in records
                else None
                for image_id in chosen
            ]
        cells = []
        for (_, column, row), image_id, tile in zip(placed, chosen, tiles, strict=True):
            if tile is not None:
                left, top = column * cell + (cell - tile.width) // 2, row * cell + (cell - tile.height) // 2
                atlas.paste(tile, (left, top))
            record = records.get(image_id)
            cells.append(MapCell(image_id, column, row, record.display_path if record else ""))
        picture = encode_picture(np.asarray(atlas), image_format)
        return LibraryMap(picture, cells, (float(explained[0]), float(explained[1])))

    # --- internals -----------------------------------------------------------------------------------

    def _around(
        self, around: Query, store: LatentStore | None, count: int, spread: float, seed: int | None
    ) -> np.ndarray:
        if isinstance(around, ImageQuery):
            mu, logvar = self.engine.encode(around.image)
        else:
            mu = self.engine.query_latents([around], store)[0]
            if store is None:
                raise NoStore("sampling around a latent uses the library's deviations: it needs a store")
            logvar = 2 * np.log(self.library_stats(store).std)
        return latent_space.sample_around(mu, logvar, count, spread, seed)

    def _frames(
        self, latents: np.ndarray, positions: list[float], spec: FrameSpec, store: LatentStore | None
    ) -> list[DecodedFrame]:
        if len(latents) * spec.nearest_k > MAX_NEAREST_HITS:
            raise InvalidQuery(
                f"{len(latents)} frames x nearest_k {spec.nearest_k}: at most {MAX_NEAREST_HITS} nearest"
            )
        pictures = self._pictures(latents, spec)
        nearest: list[list[Hit]] = [[] for _ in positions]
        if spec.nearest_k:
            assert store is not None
            nearest = self.engine.nearest(store, latents, spec.nearest_k, spec.where)
            root = store.indexed_root() if spec.thumbnails else None
            if root is not None:
                thumbnails = PreviewSpec(format=spec.format, size=spec.size, thumbnails=True)
                nearest = self.engine.with_thumbnails(nearest, root, thumbnails)
        return [
            DecodedFrame(latent.copy(), picture, hits, position)
            for latent, picture, hits, position in zip(latents, pictures, nearest, positions, strict=True)
        ]

    def _pictures(self, latents: np.ndarray, spec: FrameSpec) -> list[EncodedPicture]:
        pictures: list[EncodedPicture] = []
        for start in range(0, len(latents), DECODE_BATCH):
            stop_if_abandoned()
            batch = np.ascontiguousarray(latents[start : start + DECODE_BATCH], dtype=np.float32)
            pictures += [
                encode_picture(pixels, spec.format, spec.size) for pixels in self.engine.codec.decode(batch)
            ]
        return pictures

    def _group_ids(self, group: GroupSpec, store: LatentStore, label: str) -> np.ndarray:
        if group.is_empty:
            raise InvalidQuery(f"the {label} group is empty: give ids, path patterns or a query")
        parts = []
        if group.ids:
            known = store.hits(list(group.ids))
            if missing := [i for i in group.ids if i not in known][:5]:
                raise NotFound(f"{label} group: no indexed image with id {missing}")
            parts.append(np.asarray(group.ids, dtype=np.int64))
        if group.path_globs:
            matched = store.select_ids(path_globs=group.path_globs)
            if len(matched) == 0:
                raise NotFound(f"{label} group: no indexed image matches {list(group.path_globs)}")
            parts.append(matched)
        if group.query is not None and group.query_k:
            if not 1 <= group.query_k <= self.engine.limits.max_k:
                raise InvalidQuery(f"query_k must be between 1 and {self.engine.limits.max_k}")
            # the images a query by image answers with, ranked as it is by default
            pictures: dict[int, np.ndarray] = {}
            latent = self.engine.query_latents([group.query], store, pictures=pictures)
            [hits] = self.engine.ranked_nearest(store, latent, group.query_k, "copies_first", pictures)
            parts.append(np.asarray([hit.id for hit in hits[: group.query_k]]))
        return np.unique(np.concatenate(parts))

    def _check_frames(self, frames: FrameSpec | None) -> FrameSpec:
        frames = frames or FrameSpec()
        self.engine.check_preview(frames.format, frames.size)
        if not 0 <= frames.nearest_k <= self.engine.limits.max_k:
            most = self.engine.limits.max_k
            raise InvalidQuery(f"nearest_k must be between 0 and {most}, got {frames.nearest_k}")
        return frames

    @contextmanager
    def _store(self, needed: bool) -> Iterator[LatentStore | None]:
        """The searchable store; when not `needed`, None if there is none (or it is empty)."""
        with ExitStack() as stack:
            try:
                store = stack.enter_context(self.engine.searchable_store())
            except (NoStore, EmptyStore):
                if needed:
                    raise
                store = None
            yield store

    @contextmanager
    def _book(self) -> Iterator[tuple[DirectionBook, str]]:
        """The directions of the current store's catalog, through the store itself, and the model id
        they are filed under: the store's (a model that shares its latents reads them too)."""
        if self.engine.store is None:
            raise NoStore("directions live in the store's database: start the server with --store")
        with self.engine.store.use() as store:
            yield store.directions, store.model_id
