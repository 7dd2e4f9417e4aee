"""The query engine behind the server: encode, decode and search a store, in plain Python types.

Everything the gRPC layer answers is computed here, so it is tested without gRPC and usable in-process.
A query batch goes through the stages the server reports timings for: image decode, encode (one batch),
search (one FAISS call; for queries by image or id, also the copies-first re-ranking of the nearest
`pixel_alignment.DEPTH`), metadata fetch (one SQL query for every match), preview decode (one VAE batch
for every preview of the reply). Errors are `LatentdexError`s the server maps to status codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from latentdex.errors import (
    BadImage,
    BadLatent,
    DimensionMismatch,
    EmptyStore,
    InvalidQuery,
    ModelMismatch,
    NoStore,
    NotFound,
)
from latentdex.indexer.load import load_for_model
from latentdex.indexer.pixel_alignment import DEPTH as ALIGNMENT_DEPTH
from latentdex.indexer.pixel_alignment import alignment_thumbnail, order_copies_first
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import ImageRecord, LatentStore, StoreInfo
from latentdex.indexer.vectors import check_vectors
from latentdex.models.inference import LatentCodec
from latentdex.service.call_guard import stop_if_abandoned
from latentdex.service.limits import Limits
from latentdex.service.live_store import LiveStore
from latentdex.service.previews import (
    DEFAULT_THUMBNAIL_SIZE,
    FORMATS,
    EncodedPicture,
    encode_picture,
    original_file,
    thumbnail_picture,
)

DEFAULT_K = 10
STAGES = ("image_decode", "encode", "search", "metadata", "preview", "thumbnail")


@dataclass(frozen=True)
class PreviewSpec:
    """Which previews to decode, in which format ("PNG", "JPEG", "WEBP") and size (0: the model's);
    `thumbnails`: also the matches' original files, shrunk to fit `size` (0: DEFAULT_THUMBNAIL_SIZE)."""

    matches: bool = False
    query: bool = False
    format: str = "PNG"
    size: int = 0
    thumbnails: bool = False


RANKINGS = ("copies_first", "latent")


@dataclass(frozen=True)
class QuerySpec:
    """What every query of a call shares. `k` 0 means DEFAULT_K. `ranking` "copies_first" puts the
    stored images that hold a query's pixels first (`indexer.pixel_alignment`; queries by image or id),
    "latent" orders every match by latent distance."""

    k: int = DEFAULT_K
    where: SearchFilter | None = None
    preview: PreviewSpec = PreviewSpec()
    include_latents: bool = False
    ranking: str = "copies_first"


@dataclass(frozen=True)
class ImageQuery:
    image: bytes


@dataclass(frozen=True)
class LatentQuery:
    latent: np.ndarray


@dataclass(frozen=True)
class IdQuery:
    id: int
    include_self: bool = False


Query = ImageQuery | LatentQuery | IdQuery


@dataclass(frozen=True)
class Hit:
    """One match: the stored image's record, how near it is, and what was asked for besides."""

    record: ImageRecord
    distance: float
    similarity: float
    latent: np.ndarray | None = None
    preview: EncodedPicture | None = None
    thumbnail: EncodedPicture | None = None

    @property
    def id(self) -> int:
        return int(self.record.id or 0)


@dataclass
class Timings:
    """Seconds per stage (see STAGES) and in total; for a batch, the whole batch's."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    total: float = 0.0

    def stage(self, name: str) -> _StageTimer:
        """A block whose seconds are added to stage `name`."""
        return _StageTimer(self.seconds, name)


class _StageTimer:
    # a class rather than @contextmanager: a query passes through several stages, and a generator-based
    # context manager costs several times as much to enter and leave
    __slots__ = ("_name", "_seconds", "_started")

    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self._seconds, self._name = seconds, name

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self._seconds[self._name] += time.perf_counter() - self._started


@dataclass(frozen=True)
class Answer:
    """The matches of one query, nearest first, with the latent searched with."""

    hits: list[Hit]
    query_latent: np.ndarray
    query_preview: EncodedPicture | None
    model_id: str
    timings: Timings


@dataclass(frozen=True)
class EngineInfo:
    """What the engine serves: its model, its limits and its store (None: no store yet). The wire's
    `ServerInfo` adds the server's version."""

    model_id: str
    latent_dim: int
    image_size: int
    limits: Limits
    store: StoreInfo | None
    vector_kind: str | None


class QueryEngine:
    """Answers encode, decode and query requests with one model over a live store (or none)."""

    def __init__(self, codec: LatentCodec, store: LiveStore | None, limits: Limits | None = None) -> None:
        self.codec = codec
        self.store = store
        self.limits = limits or Limits()
        # Called with each answered query's (or batch's) seconds per stage, e.g. to feed metrics.
        self.stage_observer: Callable[[dict[str, float]], None] | None = None

    # --- model only ----------------------------------------------------------------------------------

    def encode(self, image: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Encoded image bytes -> (mu, logvar), each (D,) float32; BadImage for what is not an image."""
        pixels = self._load(image)
        stop_if_abandoned()
        mu, logvar = self.codec.encode_posterior(pixels[None])
        return mu[0], logvar[0]

    def decode(self, latent: np.ndarray, image_format: str = "PNG", size: int = 0) -> EncodedPicture:
        """A latent -> an encoded picture; DimensionMismatch / BadLatent / InvalidQuery for bad input."""
        self.check_preview(image_format, size)
        pixels = self.codec.decode(self._check_latent(latent)[None])
        return encode_picture(pixels[0], image_format, size)

    def info(self) -> EngineInfo:
        store_info, kind = None, None
        if self.store is not None:
            try:
                with self.store.use() as store:
                    store_info, kind = store.info, store.vector_kind
            except NoStore:
                pass
        return EngineInfo(
            self.codec.model_id, self.codec.latent_dim, self.codec.image_size, self.limits, store_info, kind
        )

    # --- queries -------------------------------------------------------------------------------------

    def query(self, queries: Sequence[Query], spec: QuerySpec) -> list[Answer]:
        """The matches of each query, in order. Raises InvalidQuery, BadImage, DimensionMismatch,
        BadLatent (naming the query's index in a batch), NotFound, NoStore, EmptyStore, ModelMismatch."""
        started = time.perf_counter()
        k = self._check_spec(spec, len(queries))
        timings = Timings()
        with self.searchable_store() as store:
            pictures: dict[int, np.ndarray] = {}
            latents = self.query_latents(queries, store, timings, pictures)
            stop_if_abandoned()
            # a query by id leaves out the image itself: ask for one more match and drop it
            extra = int(any(isinstance(q, IdQuery) and not q.include_self for q in queries))
            needs_latents = spec.include_latents or spec.preview.matches
            by_id = {i: q.id for i, q in enumerate(queries) if isinstance(q, IdQuery)}
            found = self.ranked_nearest(
                store,
                latents,
                k + extra,
                spec.ranking,
                pictures,
                by_id,
                spec.where,
                timings,
                with_latents=needs_latents,
                extra=extra,
            )
            root = store.indexed_root() if spec.preview.thumbnails else None
        hits_per_query = []
        for query, hits in zip(queries, found, strict=True):
            if isinstance(query, IdQuery) and not query.include_self:
                hits = [hit for hit in hits if hit.id != query.id]
            hits_per_query.append(hits[:k])
        stop_if_abandoned()
        if root is not None:
            with timings.stage("thumbnail"):
                hits_per_query = self.with_thumbnails(hits_per_query, root, spec.preview)
        decodes = spec.preview.matches or spec.preview.query
        # a stage a query does not need stays at 0 s, so metrics skip it
        with timings.stage("preview") if decodes else nullcontext():
            answers = self._with_previews(hits_per_query, latents, spec, timings)
        timings.total = time.perf_counter() - started
        if self.stage_observer is not None:
            self.stage_observer(timings.seconds)
        return answers

    def nearest(
        self,
        store: LatentStore,
        latents: np.ndarray,
        k: int,
        where: SearchFilter | None = None,
        timings: Timings | None = None,
        with_latents: bool = False,
    ) -> list[list[Hit]]:
        """The `k` stored images nearest to each latent, with their records (and stored latents)."""
        timings = timings or Timings()
        with timings.stage("search"):
            found = store.search(latents, k, where=where) if len(latents) else []
        with timings.stage("metadata"):
            ids = sorted({m.id for matches in found for m in matches})
            rows = store.hits(ids, with_latents=with_latents)
        # an id missing from `rows` was removed after the vectors file this reader loaded was saved
        return [
            [Hit(rows[m.id][0], m.distance, m.similarity, rows[m.id][1]) for m in matches if m.id in rows]
            for matches in found
        ]

    def ranked_nearest(
        self,
        store: LatentStore,
        latents: np.ndarray,
        k: int,
        ranking: str,
        pictures: dict[int, np.ndarray],
        by_id: dict[int, int] | None = None,
        where: SearchFilter | None = None,
        timings: Timings | None = None,
        with_latents: bool = False,
        extra: int = 0,
    ) -> list[list[Hit]]:
        """`nearest`, ranked as `ranking` asks: "copies_first" re-orders the first ALIGNMENT_DEPTH hits
        of each query with pixels (its model input in `pictures`, by index, or its stored image in
        `by_id`) by pixel alignment, on a store of cosine distances; "latent" keeps the latent's order.
        `extra`: hits the caller will drop (a query by id leaving itself out), counted in `k` and added
        to the re-ranked depth."""
        timings = timings or Timings()
        ranked = ranking == "copies_first" and store.distance_space != "l2"
        pictures = pictures if ranked else {}
        by_id = (by_id or {}) if ranked else {}
        if not (pictures or by_id):
            return self.nearest(store, latents, k, where, timings, with_latents)
        found = self.nearest(store, latents, max(k, ALIGNMENT_DEPTH), where, timings, with_latents)
        with timings.stage("search"):
            return _copies_first(found, pictures, by_id, store, ALIGNMENT_DEPTH + extra)

    def query_latents(
        self,
        queries: Sequence[Query],
        store: LatentStore | None,
        timings: Timings | None = None,
        pictures: dict[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The latent of each query: image bytes encoded in one batch, latents checked, ids looked up
        in `store` (NoStore without one). `pictures`, when given, receives the model input of each query
        by image, by its index."""
        timings = timings or Timings()
        latents = np.empty((len(queries), self.codec.latent_dim), dtype=np.float32)
        images: dict[int, np.ndarray] = {}
        if any(isinstance(query, ImageQuery) for query in queries):
            with timings.stage("image_decode"):
                for index, query in enumerate(queries):
                    if isinstance(query, ImageQuery):
                        images[index] = _naming(index, len(queries), lambda q=query: self._load(q.image))
        stop_if_abandoned()
        if pictures is not None:
            pictures.update(images)
        if images:
            with timings.stage("encode"):
                latents[list(images)] = self.codec.encode(np.stack(list(images.values())))
        for index, query in enumerate(queries):
            if isinstance(query, LatentQuery):
                latents[index] = _naming(index, len(queries), lambda q=query: self._check_latent(q.latent))
        by_id = {index: query.id for index, query in enumerate(queries) if isinstance(query, IdQuery)}
        if by_id and store is None:
            raise NoStore("a query by id needs a store: start the server with --store")
        if by_id and store is not None:
            with timings.stage("metadata"):
                try:
                    latents[list(by_id)] = store.latents(list(by_id.values()))
                except NotFound as exc:
                    raise NotFound(f"no indexed image with that id ({exc})") from exc
        return latents

    def _with_previews(
        self, hits_per_query: list[list[Hit]], latents: np.ndarray, spec: QuerySpec, timings: Timings
    ) -> list[Answer]:
        preview = spec.preview
        # every preview of the reply in one decoder batch: match latents first, then the queries'
        stored = {hit.id: hit.latent for hits in hits_per_query for hit in hits} if preview.matches else {}
        wanted = sorted(stored)
        stacked = [stored[i] for i in wanted] + (list(latents) if preview.query else [])
        decoded = self.codec.decode(np.stack(stacked)) if stacked else None
        pictures: dict[int, EncodedPicture] = {}
        for slot, image_id in enumerate(wanted):
            assert decoded is not None
            pictures[image_id] = encode_picture(decoded[slot], preview.format, preview.size)
        answers = []
        for index, hits in enumerate(hits_per_query):
            if preview.matches:
                hits = [replace(hit, preview=pictures[hit.id]) for hit in hits]
            if preview.matches and not spec.include_latents:  # fetched for the previews alone
                hits = [hit if hit.latent is None else replace(hit, latent=None) for hit in hits]
            query_preview = None
            if preview.query:
                assert decoded is not None
                query_preview = encode_picture(decoded[len(wanted) + index], preview.format, preview.size)
            answers.append(Answer(hits, latents[index].copy(), query_preview, self.codec.model_id, timings))
        return answers

    def with_thumbnails(
        self, hits_per_query: list[list[Hit]], root: Path, preview: PreviewSpec
    ) -> list[list[Hit]]:
        """The hits with thumbnails of their originals under `root` (read once per image)."""
        size = preview.size or DEFAULT_THUMBNAIL_SIZE
        pictures: dict[int, EncodedPicture | None] = {}
        for hit in (hit for hits in hits_per_query for hit in hits):
            if hit.id not in pictures:
                path = original_file(root, hit.record.path)
                pictures[hit.id] = (
                    None
                    if path is None
                    else thumbnail_picture(path, preview.format, size, self.limits.max_image_pixels)
                )
        return [[replace(hit, thumbnail=pictures[hit.id]) for hit in hits] for hits in hits_per_query]

    # --- checks --------------------------------------------------------------------------------------

    def current_store(self) -> AbstractContextManager[LatentStore]:
        """The live store, held open for a block; NoStore when the server runs without one (or none is
        indexed yet at its folder)."""
        if self.store is None:
            raise NoStore("this server runs without a store: start it with --store")
        return self.store.use()

    @contextmanager
    def searchable_store(self) -> Iterator[LatentStore]:
        """The current store, checked to hold searchable latents of this engine's model."""
        if self.store is None:
            raise NoStore("this server runs without a store: start it with --store to query")
        with self.store.use() as store:
            if not self.codec.reads_latents_of(store.model_id):
                raise ModelMismatch(
                    f"the store now holds latents of {store.model_id}, this server encodes with "
                    f"{self.codec.model_id}: restart the server with that model"
                )
            if store.vector_count == 0:
                raise EmptyStore(f"the store at {self.store.folder} holds no indexed image yet")
            yield store

    def _check_spec(self, spec: QuerySpec, count: int) -> int:
        k = spec.k or DEFAULT_K
        if not 1 <= k <= self.limits.max_k:
            raise InvalidQuery(f"k must be between 1 and {self.limits.max_k}, got {spec.k}")
        if count == 0:
            raise InvalidQuery("no query given")
        if count > self.limits.max_batch:
            raise InvalidQuery(f"at most {self.limits.max_batch} queries per batch, got {count}")
        if spec.ranking not in RANKINGS:
            raise InvalidQuery(f"unknown ranking {spec.ranking!r}; choose one of {', '.join(RANKINGS)}")
        if spec.preview.matches or spec.preview.query or spec.preview.thumbnails:
            self.check_preview(spec.preview.format, spec.preview.size)
        return k

    def check_preview(self, image_format: str, size: int) -> None:
        """InvalidQuery for an unknown picture format or a size outside 0..max_preview_size."""
        if image_format.upper() not in FORMATS:
            raise InvalidQuery(f"unknown preview format {image_format!r}; choose one of {', '.join(FORMATS)}")
        if not 0 <= size <= self.limits.max_preview_size:
            most = self.limits.max_preview_size
            raise InvalidQuery(f"preview size must be between 0 and {most}, got {size}")

    def _check_latent(self, latent: np.ndarray) -> np.ndarray:
        latent = np.asarray(latent, dtype=np.float32)
        if latent.ndim != 1 or latent.shape[0] != self.codec.latent_dim:
            dim, model = self.codec.latent_dim, self.codec.model_id
            raise DimensionMismatch(f"a latent has {dim} values for model {model}, got {latent.size}")
        return check_vectors(latent[None], self.codec.latent_dim)[0]

    def _load(self, image: bytes) -> np.ndarray:
        if not image:
            raise BadImage("no image bytes given")
        return load_for_model(image, self.codec.image_size, max_pixels=self.limits.max_image_pixels)


def _copies_first(
    found: list[list[Hit]],
    pictures: dict[int, np.ndarray],
    by_id: dict[int, int],
    store: LatentStore,
    depth: int,
) -> list[list[Hit]]:
    """The first `depth` hits of each query by image (its model input in `pictures`) or by id (`by_id`:
    the image whose stored thumbnail it aligns) re-ordered by `pixel_alignment.copies_first`; the rest
    follow as they were, so a large k costs no more alignment. A query whose first hits are not all
    thumbnailed (an image indexed before thumbnails were kept) keeps the latent's order. The queries'
    and candidates' stored thumbnails come in one read."""
    wanted = [hit.id for index in (*pictures, *by_id) for hit in found[index][:depth]]
    stored = store.alignment_thumbnails([*wanted, *by_id.values()])
    thumbnails = {index: alignment_thumbnail(pixels) for index, pixels in pictures.items()}
    thumbnails |= {index: stored[image_id] for index, image_id in by_id.items() if image_id in stored}
    reordered = list(found)
    for index, thumbnail in thumbnails.items():
        head, tail = found[index][:depth], found[index][depth:]
        if not head or any(hit.id not in stored for hit in head):
            continue
        candidates = np.stack([stored[hit.id] for hit in head])
        order = order_copies_first(thumbnail, candidates, np.array([hit.distance for hit in head]))
        reordered[index] = [head[i] for i in order] + tail
    return reordered


def _naming(index: int, count: int, action: Callable[[], np.ndarray]) -> np.ndarray:
    """Run `action`; in a batch, prefix an input error with the query's index."""
    try:
        return action()
    except (BadImage, BadLatent, DimensionMismatch) as exc:
        if count == 1:
            raise
        message = f"queries[{index}]: {exc}"
        raise (BadImage(message) if isinstance(exc, BadImage) else type(exc)(message)) from exc
