"""The `latentdex.v1.Latentdex` servicer: proto messages in, `QueryEngine` calls, proto messages out.

Every handler runs inside `_answering`, which turns each `LatentdexError` into its status code (see the
proto's header) and anything unexpected into INTERNAL with a log line, so no request takes the server down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NoReturn

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

from indexer.directions import Direction
from indexer.filters import SearchFilter
from indexer.store import ImageRecord
from models.errors import (
    BadImage,
    BadLatent,
    DimensionMismatch,
    LatentdexError,
    ModelMismatch,
    NotFound,
    StoreError,
)
from service.latent_features import (
    DEFAULT_STEPS,
    DEFAULT_TOP,
    DirectionExists,
    Frame,
    FrameSpec,
    ImageGroup,
    LatentExplorer,
)
from service.live_store import NoStore
from service.previews import EncodedPicture
from service.queries import (
    Answer,
    EmptyStore,
    Hit,
    IdQuery,
    ImageQuery,
    InvalidQuery,
    LatentQuery,
    PreviewSpec,
    Query,
    QueryEngine,
    QuerySpec,
)

log = logging.getLogger(__name__)

SERVER_VERSION = "0.1.0"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Latentdex"].full_name
_FORMAT_NAMES = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "PNG",
    pb.IMAGE_FORMAT_PNG: "PNG",
    pb.IMAGE_FORMAT_JPEG: "JPEG",
    pb.IMAGE_FORMAT_WEBP: "WEBP",
}
_FORMAT_ENUMS = {"PNG": pb.IMAGE_FORMAT_PNG, "JPEG": pb.IMAGE_FORMAT_JPEG, "WEBP": pb.IMAGE_FORMAT_WEBP}
_SOURCES = {
    pb.SAMPLE_SOURCE_UNSPECIFIED: "auto",
    pb.SAMPLE_SOURCE_PRIOR: "prior",
    pb.SAMPLE_SOURCE_LIBRARY: "library",
}
_METHODS = {
    pb.DIRECTION_METHOD_UNSPECIFIED: "auto",
    pb.DIRECTION_METHOD_AUTO: "auto",
    pb.DIRECTION_METHOD_MEAN_DIFFERENCE: "mean_difference",
    pb.DIRECTION_METHOD_PROBE: "probe",
}
_STATUS = (
    ((InvalidQuery, BadImage, DimensionMismatch, BadLatent), grpc.StatusCode.INVALID_ARGUMENT),
    ((NotFound,), grpc.StatusCode.NOT_FOUND),
    ((DirectionExists,), grpc.StatusCode.ALREADY_EXISTS),
    ((NoStore, EmptyStore, ModelMismatch), grpc.StatusCode.FAILED_PRECONDITION),
    ((StoreError,), grpc.StatusCode.UNAVAILABLE),
)


class DeadlinePassed(LatentdexError):
    """The caller's deadline passed while the answer was being computed."""


def status_of(error: LatentdexError) -> grpc.StatusCode:
    """The gRPC status code a latentdex error is answered with."""
    if isinstance(error, DeadlinePassed):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    for kinds, code in _STATUS:
        if isinstance(error, kinds):
            return code
    return grpc.StatusCode.INTERNAL


class LatentdexServicer(pb_grpc.LatentdexServicer):
    """Serves a `QueryEngine` over gRPC."""

    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine
        self.explorer = LatentExplorer(engine)

    def Encode(self, request: pb.EncodeRequest, context: grpc.ServicerContext) -> pb.EncodeResponse:
        with _answering(context):
            mu, logvar = self.engine.encode(request.image, _deadline_check(context))
            response = pb.EncodeResponse(mu=_latent(mu), model_id=self.engine.codec.model_id)
            if request.include_logvar:
                response.logvar.CopyFrom(_latent(logvar))
            return response

    def Decode(self, request: pb.DecodeRequest, context: grpc.ServicerContext) -> pb.DecodeResponse:
        with _answering(context):
            picture = self.engine.decode(_values(request.latent), _format_name(request.format), request.size)
            return pb.DecodeResponse(image=_picture(picture), model_id=self.engine.codec.model_id)

    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.GetInfoResponse:
        with _answering(context):
            info = self.engine.info()
            response = pb.GetInfoResponse(
                model_id=info.model_id,
                latent_dim=info.latent_dim,
                image_size=info.image_size,
                server_version=SERVER_VERSION,
                has_store=info.store is not None,
                max_k=info.limits.max_k,
                max_preview_size=info.limits.max_preview_size,
                max_image_pixels=info.limits.max_image_pixels,
            )
            if info.store is not None:
                response.image_count = info.store.image_count
                response.metric = info.store.metric
                response.index_type = info.store.index_type
                response.vector_kind = info.vector_kind or ""
                response.store_updated_at.CopyFrom(_timestamp(info.store.updated_at))
            return response

    def QueryByImage(
        self, request: pb.QueryByImageRequest, context: grpc.ServicerContext
    ) -> pb.QueryResponse:
        return self._one(ImageQuery(request.image), request.options, context)

    def QueryByLatent(
        self, request: pb.QueryByLatentRequest, context: grpc.ServicerContext
    ) -> pb.QueryResponse:
        return self._one(LatentQuery(_values(request.latent)), request.options, context)

    def QueryById(self, request: pb.QueryByIdRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        return self._one(IdQuery(request.id, request.include_self), request.options, context)

    def QueryBatch(
        self, request: pb.QueryBatchRequest, context: grpc.ServicerContext
    ) -> pb.QueryBatchResponse:
        with _answering(context):
            queries = [_query(index, item) for index, item in enumerate(request.queries)]
            answers = self.engine.query(queries, _spec(request.options), _deadline_check(context))
            return pb.QueryBatchResponse(results=[_response(answer) for answer in answers])

    # --- the latent space ---------------------------------------------------------------------------

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with _answering(context):
            frames = self.explorer.generate(
                request.count,
                temperature=request.temperature or 1.0,
                seed=request.seed if request.HasField("seed") else None,
                around=_query(-1, request.around) if request.HasField("around") else None,
                spread=request.spread or 1.0,
                source=_SOURCES[request.source],
                frames=_frame_spec(request.frames),
            )
            return self._frames(frames)

    def Interpolate(self, request: pb.InterpolateRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with _answering(context):
            frames = self.explorer.interpolate(
                _query(0, request.start, "start"),
                _query(1, request.end, "end"),
                steps=request.steps or DEFAULT_STEPS,
                method="linear" if request.method == pb.PATH_METHOD_LINEAR else "slerp",
                frames=_frame_spec(request.frames),
            )
            return self._frames(frames)

    def Edit(self, request: pb.EditRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with _answering(context):
            if not request.direction:
                raise InvalidQuery("name the direction to edit along")
            frames = self.explorer.edit(
                _query(0, request.source, "source"),
                request.direction,
                list(request.strengths),
                frames=_frame_spec(request.frames),
            )
            return self._frames(frames)

    def CreateDirection(
        self, request: pb.CreateDirectionRequest, context: grpc.ServicerContext
    ) -> pb.DirectionInfo:
        with _answering(context):
            direction = self.explorer.create_direction(
                request.name,
                _group(request.positive, "positive"),
                _group(request.negative, "negative"),
                method=_METHODS[request.method],
                replace=request.replace,
                description=request.description,
            )
            return _direction(direction, include_vector=True)

    def ListDirections(
        self, request: pb.ListDirectionsRequest, context: grpc.ServicerContext
    ) -> pb.ListDirectionsResponse:
        with _answering(context):
            directions = self.explorer.list_directions()
            return pb.ListDirectionsResponse(
                directions=[_direction(d, include_vector=request.include_vectors) for d in directions]
            )

    def DeleteDirection(
        self, request: pb.DeleteDirectionRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDirectionResponse:
        with _answering(context):
            self.explorer.delete_direction(request.name)
            return pb.DeleteDirectionResponse()

    def Traverse(self, request: pb.TraverseRequest, context: grpc.ServicerContext) -> pb.TraverseResponse:
        with _answering(context):
            rows = self.explorer.traverse(
                _query(0, request.source, "source"),
                dimensions=list(request.dimensions),
                top=request.top or DEFAULT_TOP,
                values=list(request.values),
                image_format=_format_name(request.format),
                size=request.size,
            )
            return pb.TraverseResponse(
                rows=[pb.TraverseRow(dimension=d, frames=[_frame(f) for f in frames]) for d, frames in rows],
                model_id=self.engine.codec.model_id,
            )

    def GetLatentStats(
        self, request: pb.GetLatentStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetLatentStatsResponse:
        with _answering(context):
            stats = self.explorer.library_stats()
            return pb.GetLatentStatsResponse(
                dimensions=[
                    pb.DimensionStats(
                        dimension=int(d), mean=float(stats.mean[d]), variance=float(stats.variance[d])
                    )
                    for d in stats.order
                ],
                active_count=stats.active_count,
                image_count=stats.count,
            )

    def RenderMap(self, request: pb.RenderMapRequest, context: grpc.ServicerContext) -> pb.RenderMapResponse:
        with _answering(context):
            library_map = self.explorer.render_map(
                columns=request.columns or 16,
                rows=request.rows or 12,
                cell=request.cell or 64,
                decoded=request.decoded,
                where=_filter(request.filter) if request.HasField("filter") else None,
                image_format=_format_name(request.format),
            )
            return pb.RenderMapResponse(
                atlas=_picture(library_map.atlas),
                cells=[
                    pb.MapCell(id=c.id, column=c.column, row=c.row, path=c.path) for c in library_map.cells
                ],
                explained_x=library_map.explained[0],
                explained_y=library_map.explained[1],
            )

    def _frames(self, frames: list[Frame]) -> pb.FramesResponse:
        return pb.FramesResponse(frames=[_frame(f) for f in frames], model_id=self.engine.codec.model_id)

    def _one(self, query: Query, options: pb.QueryOptions, context: grpc.ServicerContext) -> pb.QueryResponse:
        with _answering(context):
            [answer] = self.engine.query([query], _spec(options), _deadline_check(context))
            return _response(answer)


@contextmanager
def _answering(context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except LatentdexError as exc:
        _abort(context, status_of(exc), str(exc))
    except (ValueError, OverflowError) as exc:  # a proto value our checks did not foresee
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Exception:
        log.exception("unexpected error while answering a request")
        _abort(context, grpc.StatusCode.INTERNAL, "internal error (logged by the server)")


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _deadline_check(context: grpc.ServicerContext) -> Callable[[], None]:
    def check() -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlinePassed("the call's deadline passed before the answer was ready")

    return check


# --- proto -> engine ---------------------------------------------------------------------------------


def _values(latent: pb.Latent) -> np.ndarray:
    return np.asarray(latent.values, dtype=np.float32)


def _format_name(image_format: int) -> str:
    if image_format not in _FORMAT_NAMES:
        raise InvalidQuery(f"unknown image format {image_format}")
    return _FORMAT_NAMES[image_format]


def _query(index: int, item: pb.Query, name: str | None = None) -> Query:
    kind = item.WhichOneof("query")
    if kind == "image":
        return ImageQuery(item.image)
    if kind == "latent":
        return LatentQuery(_values(item.latent))
    if kind == "id":
        return IdQuery(item.id)
    raise InvalidQuery(f"{name or f'queries[{index}]'} is empty: set image, latent or id")


def _frame_spec(message: pb.FrameOptions) -> FrameSpec:
    return FrameSpec(
        format=_format_name(message.format),
        size=message.size,
        nearest_k=message.nearest_k,
        where=_filter(message.filter) if message.HasField("filter") else None,
        thumbnails=message.thumbnails,
    )


def _group(message: pb.ImageGroup, name: str) -> ImageGroup:
    return ImageGroup(
        ids=tuple(message.ids),
        path_globs=tuple(message.path_globs),
        query=_query(0, message.query, f"{name}.query") if message.HasField("query") else None,
        query_k=message.query_k,
    )


def _spec(options: pb.QueryOptions) -> QuerySpec:
    preview = options.preview
    return QuerySpec(
        k=options.k,
        where=_filter(options.filter) if options.HasField("filter") else None,
        preview=PreviewSpec(
            preview.matches, preview.query, _format_name(preview.format), preview.size, preview.thumbnails
        ),
        include_latents=options.include_latents,
    )


def _filter(message: pb.Filter) -> SearchFilter:
    try:
        return SearchFilter(
            path_prefix=message.path_prefix or None,
            captured_after=_naive(message.captured_after) if message.HasField("captured_after") else None,
            captured_before=_naive(message.captured_before) if message.HasField("captured_before") else None,
            min_width=message.min_width or None,
            min_height=message.min_height or None,
            formats=frozenset(message.formats),
        )
    except ValueError as exc:
        raise InvalidQuery(f"bad filter: {exc}") from exc


def _naive(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime()  # naive UTC: how EXIF times (which have no zone) are compared


# --- engine -> proto ---------------------------------------------------------------------------------


def _latent(values: np.ndarray) -> pb.Latent:
    return pb.Latent(values=np.asarray(values, dtype=np.float32).tolist())


def _picture(picture: EncodedPicture) -> pb.EncodedImage:
    return pb.EncodedImage(
        data=picture.data, format=_FORMAT_ENUMS[picture.format], width=picture.width, height=picture.height
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None))
    return stamp


def _metadata(record: ImageRecord) -> pb.ImageMetadata:
    metadata = pb.ImageMetadata(
        size_bytes=max(record.size, 0),
        mtime_ns=record.mtime_ns,
        content_hash=record.content_hash or "",
        width=record.width or 0,
        height=record.height or 0,
        format=record.format or "",
        camera_make=record.camera_make or "",
        camera_model=record.camera_model or "",
        model_id=record.model_id or "",
    )
    if record.capture_time is not None:
        metadata.capture_time.CopyFrom(_timestamp(record.capture_time))
    if record.indexed_at is not None:
        metadata.indexed_at.CopyFrom(_timestamp(record.indexed_at))
    return metadata


def _match(hit: Hit) -> pb.Match:
    match = pb.Match(
        id=hit.id,
        path=hit.record.display_path,
        path_bytes=hit.record.path.encode("utf-8", "surrogateescape"),
        distance=hit.distance,
        similarity=hit.similarity,
        metadata=_metadata(hit.record),
    )
    if hit.preview is not None:
        match.preview.CopyFrom(_picture(hit.preview))
    if hit.latent is not None:
        match.latent.CopyFrom(_latent(hit.latent))
    if hit.thumbnail is not None:
        match.thumbnail.CopyFrom(_picture(hit.thumbnail))
    return match


def _frame(frame: Frame) -> pb.Frame:
    return pb.Frame(
        latent=_latent(frame.latent),
        image=_picture(frame.picture),
        nearest=[_match(hit) for hit in frame.nearest],
        position=frame.position,
    )


def _direction(direction: Direction, include_vector: bool) -> pb.DirectionInfo:
    info = pb.DirectionInfo(
        name=direction.name,
        model_id=direction.model_id,
        method=direction.method,
        separation=direction.separation or 0.0,
        positive_count=direction.positive_count,
        negative_count=direction.negative_count,
        norm=float(np.linalg.norm(direction.vector)),
        description=direction.description,
        created_at=_timestamp(direction.created_at),
    )
    if include_vector:
        info.vector.CopyFrom(_latent(direction.vector))
    return info


def _response(answer: Answer) -> pb.QueryResponse:
    seconds = answer.timings.seconds
    response = pb.QueryResponse(
        matches=[_match(hit) for hit in answer.hits],
        query_latent=_latent(answer.query_latent),
        model_id=answer.model_id,
        timings=pb.QueryTimings(
            image_decode_us=round(seconds["image_decode"] * 1e6),
            encode_us=round(seconds["encode"] * 1e6),
            search_us=round(seconds["search"] * 1e6),
            metadata_us=round(seconds["metadata"] * 1e6),
            preview_us=round(seconds["preview"] * 1e6),
            total_us=round(answer.timings.total * 1e6),
            thumbnail_us=round(seconds["thumbnail"] * 1e6),
        ),
    )
    if answer.query_preview is not None:
        response.query_preview.CopyFrom(_picture(answer.query_preview))
    return response
