"""The `latentdex.v1.Latentdex` servicer: proto messages in, `QueryEngine` and `LatentExplorer` calls,
proto messages out. Handlers stay thin: `service.convert` translates, `service.status` maps errors."""

from __future__ import annotations

import grpc

from latentdex.service.convert import (
    direction_message,
    direction_method,
    duplicate_options,
    duplicate_page_message,
    format_name,
    frame_message,
    frame_spec,
    group_spec,
    image_page_message,
    latent_message,
    match_message,
    path_method,
    picture_message,
    preview_spec,
    query_of,
    query_response,
    query_spec,
    run_message,
    sample_source,
    search_filter,
    timestamp_message,
)
from latentdex.service.duplicate_review import DuplicateReview
from latentdex.service.latent_features import DEFAULT_STEPS, DEFAULT_TOP, DecodedFrame, LatentExplorer
from latentdex.service.library import LibraryBrowser
from latentdex.service.queries import IdQuery, ImageQuery, InvalidQuery, LatentQuery, Query, QueryEngine
from latentdex.service.query_batcher import QueryBatcher, batchable
from latentdex.service.status import answering
from latentdex.service.wire import latent_values, library_map_message
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

SERVER_VERSION = "0.1.0"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Latentdex"].full_name


class LatentdexServicer(pb_grpc.LatentdexServicer):
    """Serves a `QueryEngine` over gRPC."""

    def __init__(self, engine: QueryEngine, batch_queries: bool = True) -> None:
        self.engine = engine
        # concurrent queries by latent or id share engine calls (see QueryBatcher); None: each alone
        self.batcher = QueryBatcher(engine) if batch_queries else None
        self.explorer = LatentExplorer(engine)
        self.library = LibraryBrowser(engine)
        self.duplicates = DuplicateReview(engine)

    def Encode(self, request: pb.EncodeRequest, context: grpc.ServicerContext) -> pb.EncodeResponse:
        with answering(context):
            mu, logvar = self.engine.encode(request.image)
            response = pb.EncodeResponse(mu=latent_message(mu), model_id=self.engine.codec.model_id)
            if request.include_logvar:
                response.logvar.CopyFrom(latent_message(logvar))
            return response

    def Decode(self, request: pb.DecodeRequest, context: grpc.ServicerContext) -> pb.DecodeResponse:
        with answering(context):
            picture = self.engine.decode(
                latent_values(request.latent), format_name(request.format), request.size
            )
            return pb.DecodeResponse(image=picture_message(picture), model_id=self.engine.codec.model_id)

    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.GetInfoResponse:
        with answering(context):
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
                response.store_updated_at.CopyFrom(timestamp_message(info.store.updated_at))
            last_run = self.library.last_run()
            if last_run is not None:
                response.last_run.CopyFrom(run_message(last_run))
            return response

    def GetImage(self, request: pb.GetImageRequest, context: grpc.ServicerContext) -> pb.Match:
        with answering(context):
            preview = preview_spec(request.preview)
            return match_message(self.library.image(request.id, preview, request.include_latent))

    def FindDuplicates(
        self, request: pb.FindDuplicatesRequest, context: grpc.ServicerContext
    ) -> pb.FindDuplicatesResponse:
        with answering(context):
            options = duplicate_options(request)
            if request.of_id:
                page = self.duplicates.group_of(request.of_id, options)
            else:
                page = self.duplicates.page(options, request.page_size, request.page_token)
            return duplicate_page_message(page)

    def ListImages(
        self, request: pb.ListImagesRequest, context: grpc.ServicerContext
    ) -> pb.ListImagesResponse:
        with answering(context):
            where = search_filter(request.filter) if request.HasField("filter") else None
            return image_page_message(self.library.page(request.page_size, request.page_token, where))

    def QueryByImage(
        self, request: pb.QueryByImageRequest, context: grpc.ServicerContext
    ) -> pb.QueryResponse:
        return self._one(ImageQuery(request.image), request.options, context)

    def QueryByLatent(
        self, request: pb.QueryByLatentRequest, context: grpc.ServicerContext
    ) -> pb.QueryResponse:
        return self._one(LatentQuery(latent_values(request.latent)), request.options, context)

    def QueryById(self, request: pb.QueryByIdRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        return self._one(IdQuery(request.id, request.include_self), request.options, context)

    def QueryBatch(
        self, request: pb.QueryBatchRequest, context: grpc.ServicerContext
    ) -> pb.QueryBatchResponse:
        with answering(context):
            queries = [query_of(index, item) for index, item in enumerate(request.queries)]
            answers = self.engine.query(queries, query_spec(request.options))
            return pb.QueryBatchResponse(results=[query_response(answer) for answer in answers])

    # --- the latent space ---------------------------------------------------------------------------

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with answering(context):
            frames = self.explorer.generate(
                request.count,
                temperature=request.temperature or 1.0,
                seed=request.seed if request.HasField("seed") else None,
                around=query_of(-1, request.around) if request.HasField("around") else None,
                spread=request.spread or 1.0,
                source=sample_source(request.source),
                frames=frame_spec(request.frames),
            )
            return self._frames(frames)

    def Interpolate(self, request: pb.InterpolateRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with answering(context):
            frames = self.explorer.interpolate(
                query_of(0, request.start, "start"),
                query_of(1, request.end, "end"),
                steps=request.steps or DEFAULT_STEPS,
                method=path_method(request.method),
                frames=frame_spec(request.frames),
            )
            return self._frames(frames)

    def Edit(self, request: pb.EditRequest, context: grpc.ServicerContext) -> pb.FramesResponse:
        with answering(context):
            if not request.direction:
                raise InvalidQuery("name the direction to edit along")
            frames = self.explorer.edit(
                query_of(0, request.source, "source"),
                request.direction,
                list(request.strengths),
                frames=frame_spec(request.frames),
            )
            return self._frames(frames)

    def CreateDirection(
        self, request: pb.CreateDirectionRequest, context: grpc.ServicerContext
    ) -> pb.DirectionInfo:
        with answering(context):
            direction = self.explorer.create_direction(
                request.name,
                group_spec(request.positive, "positive"),
                group_spec(request.negative, "negative"),
                method=direction_method(request.method),
                replace=request.replace,
                description=request.description,
            )
            return direction_message(direction, include_vector=True)

    def ListDirections(
        self, request: pb.ListDirectionsRequest, context: grpc.ServicerContext
    ) -> pb.ListDirectionsResponse:
        with answering(context):
            directions = self.explorer.list_directions()
            return pb.ListDirectionsResponse(
                directions=[direction_message(d, include_vector=request.include_vectors) for d in directions]
            )

    def DeleteDirection(
        self, request: pb.DeleteDirectionRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDirectionResponse:
        with answering(context):
            self.explorer.delete_direction(request.name)
            return pb.DeleteDirectionResponse()

    def Traverse(self, request: pb.TraverseRequest, context: grpc.ServicerContext) -> pb.TraverseResponse:
        with answering(context):
            rows = self.explorer.traverse(
                query_of(0, request.source, "source"),
                dimensions=list(request.dimensions),
                top=request.top or DEFAULT_TOP,
                values=list(request.values),
                image_format=format_name(request.format),
                size=request.size,
            )
            return pb.TraverseResponse(
                rows=[
                    pb.TraverseRow(dimension=d, frames=[frame_message(f) for f in frames])
                    for d, frames in rows
                ],
                model_id=self.engine.codec.model_id,
            )

    def GetLatentStats(
        self, request: pb.GetLatentStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetLatentStatsResponse:
        with answering(context):
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
        with answering(context):
            library_map = self.explorer.render_map(
                columns=request.columns or 16,
                rows=request.rows or 12,
                cell=request.cell or 64,
                decoded=request.decoded,
                where=search_filter(request.filter) if request.HasField("filter") else None,
                image_format=format_name(request.format),
            )
            return library_map_message(library_map)

    def _frames(self, frames: list[DecodedFrame]) -> pb.FramesResponse:
        return pb.FramesResponse(
            frames=[frame_message(f) for f in frames], model_id=self.engine.codec.model_id
        )

    def _one(self, query: Query, options: pb.QueryOptions, context: grpc.ServicerContext) -> pb.QueryResponse:
        with answering(context):
            spec = query_spec(options)
            if self.batcher is not None and not isinstance(query, ImageQuery) and batchable(spec):
                answer = self.batcher.answer(query, spec)
            else:
                [answer] = self.engine.query([query], spec)
            return query_response(answer)
