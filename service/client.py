"""A typed Python client for a latentdex server: plain dataclasses and numpy arrays in and out.

    from latentdex.service.client import connect
    with connect("127.0.0.1:50051") as client:
        result = client.query_by_image("holiday.jpg", k=12, options=QueryOptions(previews=True))
        for match in result.matches:
            print(match.path, match.distance)

Failed calls raise `ServerError` carrying the gRPC status code's name ("INVALID_ARGUMENT", "NOT_FOUND",
...) and the server's message; where the server names the kind, the exception is that kind too
(`NotFound`, `InvalidQuery`, ...). The client imports no torch: it runs wherever numpy and grpcio do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np

from latentdex.errors import ERROR_KIND_KEY, ERROR_KINDS, LatentdexError
from latentdex.indexer.search_filter import SearchFilter
from latentdex.service.previews import EncodedPicture
from latentdex.service.wire import (
    FORMAT_NUMBERS,
    LibraryMap,
    aware_utc,
    filter_message,
    latent_message,
    latent_values,
    library_map_of,
    naive_utc,
    picture_of,
)
from latentdex.service.wire import (
    MapCell as MapCell,  # re-exported: the cells of `LibraryMap`
)
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

ImageSource = str | os.PathLike[str] | bytes
QueryInput = ImageSource | np.ndarray | int
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class ServerError(LatentdexError):
    """A call the server answered with an error (or could not be reached: "UNAVAILABLE").

    Where the server names the error's kind, the exception raised is also that kind (a `NotFound`, an
    `InvalidQuery`, ...: see `latentdex.errors`), with its exit code; `code` is the gRPC status's name.
    """

    exit_code = 10

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def server_error(code: str, details: str, kind_name: str | None) -> ServerError:
    """The exception for a failed call: a ServerError that is also the named domain kind, if known."""
    kind = ERROR_KINDS.get(kind_name or "")
    return ServerError(code, details) if kind is None else _remote_kind(kind)(code, details)


@functools.cache
def _remote_kind(kind: type[LatentdexError]) -> type[ServerError]:
    attributes = {"status": kind.status, "exit_code": kind.exit_code, "__doc__": kind.__doc__}
    return type(kind.__name__, (ServerError, kind), attributes)


@dataclass(frozen=True)
class ImageMetadata:
    size_bytes: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    format: str
    capture_time: datetime | None  # EXIF time as written in the photo (naive: EXIF has no zone)
    camera_make: str
    camera_model: str
    model_id: str
    indexed_at: datetime | None  # aware, UTC


@dataclass(frozen=True)
class Match:
    """One stored image in a reply. A match from the server builds its `metadata` when it is first
    read: most callers of a query read ids, paths and distances, and the metadata was half of the
    client's time per reply."""

    id: int
    path: str
    distance: float
    similarity: float
    metadata: ImageMetadata
    preview: EncodedPicture | None
    latent: np.ndarray | None
    path_bytes: bytes
    thumbnail: EncodedPicture | None

    def __getattr__(self, name: str) -> object:
        # Called only for attributes the instance lacks: a match made by `_match` holds its metadata
        # as the message's bytes (not the message, which would keep the whole reply alive) until read.
        wire = self.__dict__.get(_METADATA_WIRE) if name == "metadata" else None
        if wire is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        metadata = _metadata(pb.ImageMetadata.FromString(wire))
        self.__dict__["metadata"] = metadata
        return metadata


_METADATA_WIRE = "_metadata_wire"


@dataclass(frozen=True)
class QueryResult:
    """Matches nearest first; `timings` are the server's, in seconds per stage ("total" included)."""

    matches: list[Match]
    query_latent: np.ndarray
    query_preview: EncodedPicture | None
    model_id: str
    timings: dict[str, float]


RUN_COUNTS = ("new", "changed", "unchanged", "moved", "deleted", "failed")


@dataclass(frozen=True)
class IndexRun:
    """One indexing run: its status ("running", "complete", "interrupted"), times and file counts."""

    id: int
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    counts: dict[str, int]


@dataclass(frozen=True)
class ImagePage:
    """Stored images in id order (metadata only), the token of the next page ("" after the last) and how
    many images pass the filter in all."""

    images: list[Match]
    next_page_token: str
    total_count: int


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies of one picture: the suggested keeper first; each member's `distance` is to the keeper."""

    members: list[Match]
    exact: bool
    pairs: list[tuple[int, int, float]]

    @property
    def keeper(self) -> Match:
        return self.members[0]


@dataclass(frozen=True)
class DuplicateGroups:
    """A page of duplicate groups, largest first, and the totals over all pages."""

    groups: list[DuplicateGroup]
    next_page_token: str
    total_groups: int
    images_in_groups: int
    images_scanned: int
    threshold: float | None
    hash_rule: DuplicateHashRule | None = None  # the preset's rule where both images have a perceptual hash
    region_rule: DuplicateRegionRule | None = None  # the region check, where the server read the files


@dataclass(frozen=True)
class DuplicateHashRule:
    """Two images that both have a perceptual hash are duplicates when their distance is at most
    `threshold`, or when one is among the other's nearest images, their pHashes differ by at most
    `max_bits` bits and their distance is at most `max_distance`."""

    threshold: float
    max_bits: int
    max_distance: float


@dataclass(frozen=True)
class DuplicateRegionRule:
    """A pair where one image is among the other's nearest, at most `max_distance` apart, is a duplicate
    when their files show one picture inside the other: at least `min_inliers` RANSAC inliers, one frame
    at least `min_contained` inside the other, the aligned detail correlating by at least `min_agreement`."""

    max_distance: float
    min_inliers: int
    min_contained: float
    min_agreement: float


DUPLICATE_PRESETS = {
    "exact": pb.DUPLICATE_PRESET_EXACT,
    "near": pb.DUPLICATE_PRESET_NEAR,
    "similar": pb.DUPLICATE_PRESET_SIMILAR,
}


@dataclass(frozen=True)
class ServerInfo:
    model_id: str
    latent_dim: int
    image_size: int
    has_store: bool
    image_count: int
    metric: str
    index_type: str
    vector_kind: str
    store_updated_at: datetime | None
    server_version: str
    max_k: int
    max_preview_size: int
    max_image_pixels: int
    last_run: IndexRun | None = None


@dataclass(frozen=True)
class QueryOptions:
    """`where` filters on metadata; `previews` decodes every match's latent into an image (in
    `preview_format`, `preview_size` px; 0: the model's size) and `query_preview` the query's own;
    `thumbnails` also sends each match's original, shrunk to fit `preview_size` (0: 128);
    `include_latents` returns each match's stored latent; `ranking` "copies_first" (the server's default)
    puts the stored images holding a query's pixels first, "latent" orders by latent distance alone."""

    where: SearchFilter | None = None
    previews: bool = False
    query_preview: bool = False
    preview_format: str = "PNG"
    preview_size: int = 0
    include_latents: bool = False
    thumbnails: bool = False
    ranking: str = "copies_first"

    def message(self, k: int) -> pb.QueryOptions:
        options = pb.QueryOptions(
            k=k,
            preview=pb.PreviewOptions(
                matches=self.previews,
                query=self.query_preview,
                format=_format(self.preview_format),
                size=self.preview_size,
                thumbnails=self.thumbnails,
            ),
            include_latents=self.include_latents,
            ranking=_ranking(self.ranking),
        )
        if self.where is not None:
            options.filter.CopyFrom(filter_message(self.where))
        return options


@dataclass(frozen=True)
class Frame:
    """A decoded point of the latent space; `position`: the interpolation t, edit strength or sample index."""

    latent: np.ndarray
    picture: EncodedPicture  # the wire's `Frame.image`
    nearest: list[Match]
    position: float


@dataclass(frozen=True)
class FrameOptions:
    """How frames come back: picture format and size (0: the model's), and the `nearest_k` stored images
    nearest each frame (passing `where`), with thumbnails of their originals if `thumbnails`."""

    image_format: str = "PNG"
    size: int = 0
    nearest_k: int = 0
    where: SearchFilter | None = None
    thumbnails: bool = False

    def message(self) -> pb.FrameOptions:
        options = pb.FrameOptions(
            format=_format(self.image_format),
            size=self.size,
            nearest_k=self.nearest_k,
            thumbnails=self.thumbnails,
        )
        if self.where is not None:
            options.filter.CopyFrom(filter_message(self.where))
        return options


@dataclass(frozen=True)
class ImageGroup:
    """Stored images by id, by GLOB pattern on the relative path, and/or the `query_k` results of `query`."""

    ids: Sequence[int] = ()
    path_globs: Sequence[str] = ()
    query: QueryInput | None = None
    query_k: int = 0

    def message(self) -> pb.ImageGroup:
        group = pb.ImageGroup(ids=list(self.ids), path_globs=list(self.path_globs), query_k=self.query_k)
        if self.query is not None:
            group.query.CopyFrom(_query(self.query))
        return group


@dataclass(frozen=True)
class DirectionInfo:
    name: str
    model_id: str
    method: str
    separation: float  # held-out AUC; 0 when not measured
    positive_count: int
    negative_count: int
    norm: float
    description: str
    created_at: datetime | None
    vector: np.ndarray | None


@dataclass(frozen=True)
class TlsConfig:
    """PEM bytes: the CA that signed the server's certificate; with `cert_chain` and `private_key`, the
    client certificate for a server that requires one. `server_name` overrides the name checked."""

    root_certificates: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None


class LatentdexClient:
    """One channel to a server; thread-safe, reuse it. See `connect`."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsConfig | None = None,
        timeout: float | None = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            credentials = grpc.ssl_channel_credentials(tls.root_certificates, tls.private_key, tls.cert_chain)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.LatentdexStub(self.channel)

    def __enter__(self) -> LatentdexClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # --- model ---------------------------------------------------------------------------------------

    def info(self) -> ServerInfo:
        reply = self._call(self._stub.GetInfo, pb.GetInfoRequest())
        return ServerInfo(
            model_id=reply.model_id,
            latent_dim=reply.latent_dim,
            image_size=reply.image_size,
            has_store=reply.has_store,
            image_count=reply.image_count,
            metric=reply.metric,
            index_type=reply.index_type,
            vector_kind=reply.vector_kind,
            store_updated_at=aware_utc(reply.store_updated_at)
            if reply.HasField("store_updated_at")
            else None,
            server_version=reply.server_version,
            max_k=reply.max_k,
            max_preview_size=reply.max_preview_size,
            max_image_pixels=reply.max_image_pixels,
            last_run=_run(reply.last_run) if reply.HasField("last_run") else None,
        )

    # --- the library ---------------------------------------------------------------------------------

    def get_image(
        self,
        image_id: int,
        *,
        preview: bool = False,
        thumbnail: bool = False,
        size: int = 0,
        image_format: str = "PNG",
        include_latent: bool = False,
    ) -> Match:
        """One stored image by id: its metadata, and as asked the decoding of its latent (`preview`), its
        original shrunk to fit `size` (`thumbnail`) and its latent."""
        request = pb.GetImageRequest(
            id=image_id,
            preview=pb.PreviewOptions(
                matches=preview, thumbnails=thumbnail, size=size, format=_format(image_format)
            ),
            include_latent=include_latent,
        )
        return _match(self._call(self._stub.GetImage, request))

    def find_duplicates(
        self,
        preset: str | None = None,
        threshold: float | None = None,
        where: SearchFilter | None = None,
        page_size: int = 50,
        page_token: str = "",
        check_files: bool = True,
    ) -> DuplicateGroups:
        """A page of the library's near-duplicate groups (`preset` "exact", "near" (the default) or
        "similar", or a distance `threshold`); pass `next_page_token` for the next page. `check_files`
        False: the server does not read candidate pairs' files (no region check)."""
        request = _duplicates_request(preset, threshold, where)
        request.page_size, request.page_token = page_size, page_token
        request.skip_file_check = not check_files
        return _duplicate_groups(self._call(self._stub.FindDuplicates, request))

    def duplicates_of(
        self,
        image_id: int,
        preset: str | None = None,
        threshold: float | None = None,
        check_files: bool = True,
    ) -> DuplicateGroup | None:
        """The group of `image_id`: it and the images within the threshold of it or with its content hash;
        None when it has no duplicate."""
        request = _duplicates_request(preset, threshold, None)
        request.of_id = image_id
        request.skip_file_check = not check_files
        groups = _duplicate_groups(self._call(self._stub.FindDuplicates, request)).groups
        return groups[0] if groups else None

    def list_images(
        self, page_size: int = 100, page_token: str = "", where: SearchFilter | None = None
    ) -> ImagePage:
        """A page of the stored images passing `where`, in id order; pass `next_page_token` for the next."""
        request = pb.ListImagesRequest(page_size=page_size, page_token=page_token)
        if where is not None:
            request.filter.CopyFrom(filter_message(where))
        reply = self._call(self._stub.ListImages, request)
        return ImagePage([_match(m) for m in reply.images], reply.next_page_token, reply.total_count)

    def encode(self, image: ImageSource) -> np.ndarray:
        """The image's latent (the encoder's posterior mean), float32 (D,)."""
        reply = self._call(self._stub.Encode, pb.EncodeRequest(image=_image_bytes(image)))
        return latent_values(reply.mu)

    def encode_posterior(self, image: ImageSource) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) of the image's posterior, float32 (D,) each."""
        request = pb.EncodeRequest(image=_image_bytes(image), include_logvar=True)
        reply = self._call(self._stub.Encode, request)
        return latent_values(reply.mu), latent_values(reply.logvar)

    def decode(self, latent: np.ndarray, image_format: str = "PNG", size: int = 0) -> EncodedPicture:
        """A latent decoded by the server's VAE into an encoded image (size 0: the model's size)."""
        request = pb.DecodeRequest(latent=latent_message(latent), format=_format(image_format), size=size)
        return picture_of(self._call(self._stub.Decode, request).image)

    # --- queries -------------------------------------------------------------------------------------

    def query_by_image(
        self, image: ImageSource, k: int = 10, options: QueryOptions | None = None
    ) -> QueryResult:
        """The `k` stored images nearest to `image` (a path or encoded bytes)."""
        request = pb.QueryByImageRequest(image=_image_bytes(image), options=_message(options, k))
        return _result(self._call(self._stub.QueryByImage, request))

    def query_by_latent(
        self, latent: np.ndarray, k: int = 10, options: QueryOptions | None = None
    ) -> QueryResult:
        """The `k` stored images nearest to `latent`."""
        request = pb.QueryByLatentRequest(latent=latent_message(latent), options=_message(options, k))
        return _result(self._call(self._stub.QueryByLatent, request))

    def query_by_id(
        self, image_id: int, k: int = 10, options: QueryOptions | None = None, include_self: bool = False
    ) -> QueryResult:
        """The `k` stored images nearest to the indexed image `image_id` (itself left out by default)."""
        request = pb.QueryByIdRequest(id=image_id, include_self=include_self, options=_message(options, k))
        return _result(self._call(self._stub.QueryById, request))

    def query_batch(
        self, queries: Sequence[QueryInput], k: int = 10, options: QueryOptions | None = None
    ) -> list[QueryResult]:
        """Many queries in one call: each an image (path or bytes), a latent (ndarray) or an id (int)."""
        request = pb.QueryBatchRequest(queries=[_query(q) for q in queries], options=_message(options, k))
        return [_result(reply) for reply in self._call(self._stub.QueryBatch, request).results]

    # --- the latent space ---------------------------------------------------------------------------

    def generate(
        self,
        count: int = 8,
        *,
        temperature: float = 1.0,
        seed: int | None = None,
        around: QueryInput | None = None,
        spread: float = 1.0,
        source: str = "auto",
        frames: FrameOptions | None = None,
    ) -> list[Frame]:
        """`count` new images: from the prior ("prior"), like the library ("library"; "auto" prefers it),
        or around an image, latent or stored id."""
        sources = {"auto": pb.SAMPLE_SOURCE_UNSPECIFIED, "prior": pb.SAMPLE_SOURCE_PRIOR}
        sources["library"] = pb.SAMPLE_SOURCE_LIBRARY
        request = pb.GenerateRequest(
            count=count,
            temperature=temperature,
            spread=spread,
            source=sources[source],
            frames=(frames or FrameOptions()).message(),
        )
        if seed is not None:
            request.seed = seed
        if around is not None:
            request.around.CopyFrom(_query(around))
        return _frames(self._call(self._stub.Generate, request))

    def interpolate(
        self,
        start: QueryInput,
        end: QueryInput,
        steps: int = 8,
        *,
        method: str = "slerp",
        frames: FrameOptions | None = None,
    ) -> list[Frame]:
        """`steps` frames from `start` to `end` (images, latents or stored ids), "slerp" or "linear"."""
        request = pb.InterpolateRequest(
            start=_query(start),
            end=_query(end),
            steps=steps,
            method=pb.PATH_METHOD_LINEAR if method == "linear" else pb.PATH_METHOD_SLERP,
            frames=(frames or FrameOptions()).message(),
        )
        return _frames(self._call(self._stub.Interpolate, request))

    def edit(
        self,
        source: QueryInput,
        direction: str,
        strengths: Sequence[float] = (1.0,),
        *,
        frames: FrameOptions | None = None,
    ) -> list[Frame]:
        """`source` moved along the named direction by each strength."""
        request = pb.EditRequest(
            source=_query(source),
            direction=direction,
            strengths=list(strengths),
            frames=(frames or FrameOptions()).message(),
        )
        return _frames(self._call(self._stub.Edit, request))

    def create_direction(
        self,
        name: str,
        positive: ImageGroup,
        negative: ImageGroup,
        *,
        method: str = "auto",
        replace: bool = False,
        description: str = "",
    ) -> DirectionInfo:
        """Learn and store a direction from two groups ("auto", "mean_difference" or "probe")."""
        methods = {"auto": pb.DIRECTION_METHOD_AUTO, "probe": pb.DIRECTION_METHOD_PROBE}
        methods["mean_difference"] = pb.DIRECTION_METHOD_MEAN_DIFFERENCE
        request = pb.CreateDirectionRequest(
            name=name,
            positive=positive.message(),
            negative=negative.message(),
            method=methods[method],
            replace=replace,
            description=description,
        )
        return _direction(self._call(self._stub.CreateDirection, request))

    def list_directions(self, include_vectors: bool = False) -> list[DirectionInfo]:
        request = pb.ListDirectionsRequest(include_vectors=include_vectors)
        return [_direction(d) for d in self._call(self._stub.ListDirections, request).directions]

    def delete_direction(self, name: str) -> None:
        self._call(self._stub.DeleteDirection, pb.DeleteDirectionRequest(name=name))

    def traverse(
        self,
        source: QueryInput,
        *,
        dimensions: Sequence[int] = (),
        top: int = 8,
        values: Sequence[float] = (),
        image_format: str = "PNG",
        size: int = 0,
    ) -> list[tuple[int, list[Frame]]]:
        """Per latent dimension (given, or the `top` most active), `source` moved by each value (in the
        store's standard deviations): (dimension, frames) rows."""
        request = pb.TraverseRequest(
            source=_query(source),
            dimensions=list(dimensions),
            top=top,
            values=list(values),
            format=_format(image_format),
            size=size,
        )
        reply = self._call(self._stub.Traverse, request)
        return [(row.dimension, [_frame(f) for f in row.frames]) for row in reply.rows]

    def latent_stats(self) -> tuple[list[tuple[int, float, float]], int, int]:
        """((dimension, mean, variance) most active first, active dimension count, image count)."""
        reply = self._call(self._stub.GetLatentStats, pb.GetLatentStatsRequest())
        dims = [(d.dimension, d.mean, d.variance) for d in reply.dimensions]
        return dims, reply.active_count, reply.image_count

    def render_map(
        self,
        columns: int = 16,
        rows: int = 12,
        cell: int = 64,
        *,
        decoded: bool = False,
        where: SearchFilter | None = None,
        image_format: str = "PNG",
    ) -> LibraryMap:
        """The library laid out on its two main latent axes, one image per cell."""
        request = pb.RenderMapRequest(
            columns=columns, rows=rows, cell=cell, decoded=decoded, format=_format(image_format)
        )
        if where is not None:
            request.filter.CopyFrom(filter_message(where))
        reply = self._call(self._stub.RenderMap, request)
        return library_map_of(reply)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _server_error_of(exc) from exc


def connect(
    target: str = "127.0.0.1:50051",
    *,
    token: str | None = None,
    tls: TlsConfig | None = None,
    timeout: float | None = 30.0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> LatentdexClient:
    """A client for the server at `target` ("host:port"); use it as a context manager or `close` it."""
    return LatentdexClient(target, token=token, tls=tls, timeout=timeout, max_message_bytes=max_message_bytes)


def _server_error_of(exc: grpc.RpcError) -> ServerError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    kind = dict(trailing or ()).get(ERROR_KIND_KEY)
    return server_error(code.name, details or "", kind)


def _message(options: QueryOptions | None, k: int) -> pb.QueryOptions:
    options = options or _DEFAULT_OPTIONS
    try:
        return _options_message(options, k)
    except TypeError:  # a value that cannot be hashed (a set given for a frozenset): built each time
        return options.message(k)


_DEFAULT_OPTIONS = QueryOptions()


@functools.lru_cache(maxsize=256)
def _options_message(options: QueryOptions, k: int) -> pb.QueryOptions:
    # built once per (options, k): every request copies it in, and nothing writes to it
    return options.message(k)


def _image_bytes(image: ImageSource) -> bytes:
    if isinstance(image, bytes):
        return image
    return Path(image).read_bytes()


def _query(item: QueryInput) -> pb.Query:
    if isinstance(item, np.ndarray):
        return pb.Query(latent=latent_message(item))
    if isinstance(item, int):
        return pb.Query(id=item)
    return pb.Query(image=_image_bytes(item))


def _format(name: str) -> int:
    try:
        return FORMAT_NUMBERS[name.upper()]
    except KeyError:
        raise ValueError(
            f"unknown image format {name!r}; choose one of {', '.join(FORMAT_NUMBERS)}"
        ) from None


RANKING_NUMBERS = {"copies_first": pb.RANKING_COPIES_FIRST, "latent": pb.RANKING_LATENT}


def _ranking(name: str) -> int:
    try:
        return RANKING_NUMBERS[name]
    except KeyError:
        raise ValueError(f"unknown ranking {name!r}; choose one of {', '.join(RANKING_NUMBERS)}") from None


def _metadata(message: pb.ImageMetadata) -> ImageMetadata:
    has = message.HasField
    return ImageMetadata(
        size_bytes=message.size_bytes,
        mtime_ns=message.mtime_ns,
        content_hash=message.content_hash,
        width=message.width,
        height=message.height,
        format=message.format,
        capture_time=naive_utc(message.capture_time) if has("capture_time") else None,
        camera_make=message.camera_make,
        camera_model=message.camera_model,
        model_id=message.model_id,
        indexed_at=aware_utc(message.indexed_at) if has("indexed_at") else None,
    )


def _frame(message: pb.Frame) -> Frame:
    return Frame(
        latent_values(message.latent),
        picture_of(message.image),
        [_match(m) for m in message.nearest],
        message.position,
    )


def _frames(reply: pb.FramesResponse) -> list[Frame]:
    return [_frame(f) for f in reply.frames]


def _direction(message: pb.DirectionInfo) -> DirectionInfo:
    return DirectionInfo(
        name=message.name,
        model_id=message.model_id,
        method=message.method,
        separation=message.separation,
        positive_count=message.positive_count,
        negative_count=message.negative_count,
        norm=message.norm,
        description=message.description,
        created_at=aware_utc(message.created_at) if message.HasField("created_at") else None,
        vector=latent_values(message.vector) if message.HasField("vector") else None,
    )


def _match(m: pb.Match) -> Match:
    # Filled in place rather than through the frozen dataclass's __init__ (five times the cost here), with
    # the metadata left as bytes for `Match.__getattr__` to build when read.
    has = m.HasField
    match = object.__new__(Match)
    fields = match.__dict__
    fields["id"] = m.id
    fields["path"] = m.path
    fields["distance"] = m.distance
    fields["similarity"] = m.similarity
    fields[_METADATA_WIRE] = m.metadata.SerializeToString()
    fields["preview"] = picture_of(m.preview) if has("preview") else None
    fields["latent"] = latent_values(m.latent) if has("latent") else None
    fields["path_bytes"] = m.path_bytes
    fields["thumbnail"] = picture_of(m.thumbnail) if has("thumbnail") else None
    return match


def _result(reply: pb.QueryResponse) -> QueryResult:
    matches = [_match(m) for m in reply.matches]
    t = reply.timings
    timings = {
        "image_decode": t.image_decode_us / 1e6,
        "encode": t.encode_us / 1e6,
        "search": t.search_us / 1e6,
        "metadata": t.metadata_us / 1e6,
        "preview": t.preview_us / 1e6,
        "thumbnail": t.thumbnail_us / 1e6,
        "total": t.total_us / 1e6,
    }
    return QueryResult(
        matches=matches,
        query_latent=latent_values(reply.query_latent),
        query_preview=picture_of(reply.query_preview) if reply.HasField("query_preview") else None,
        model_id=reply.model_id,
        timings=timings,
    )


def _run(message: pb.IndexRun) -> IndexRun:
    counts = {
        name: getattr(message, name) for name in ("new", "changed", "unchanged", "moved", "deleted", "failed")
    }
    return IndexRun(
        id=message.id,
        status=message.status,
        started_at=aware_utc(message.started_at) if message.HasField("started_at") else None,
        ended_at=aware_utc(message.ended_at) if message.HasField("ended_at") else None,
        counts=counts,
    )


def _duplicates_request(
    preset: str | None, threshold: float | None, where: SearchFilter | None
) -> pb.FindDuplicatesRequest:
    request = pb.FindDuplicatesRequest()
    if preset is not None:
        if preset not in DUPLICATE_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(DUPLICATE_PRESETS)}")
        request.preset = DUPLICATE_PRESETS[preset]
    if threshold is not None:
        request.threshold = threshold
    if where is not None:
        request.filter.CopyFrom(filter_message(where))
    return request


def _duplicate_groups(reply: pb.FindDuplicatesResponse) -> DuplicateGroups:
    groups = [
        DuplicateGroup(
            [_match(m) for m in group.members], group.exact, [(p.a, p.b, p.distance) for p in group.pairs]
        )
        for group in reply.groups
    ]
    threshold = reply.threshold if reply.HasField("threshold") else None
    rule = reply.hash_rule
    hash_rule = (
        DuplicateHashRule(rule.threshold, rule.max_bits, rule.max_distance)
        if reply.HasField("hash_rule")
        else None
    )
    region = reply.region_rule
    region_rule = (
        DuplicateRegionRule(
            region.max_distance, region.min_inliers, region.min_contained, region.min_agreement
        )
        if reply.HasField("region_rule")
        else None
    )
    return DuplicateGroups(
        groups,
        reply.next_page_token,
        reply.total_groups,
        reply.images_in_groups,
        reply.images_scanned,
        threshold,
        hash_rule,
        region_rule,
    )
