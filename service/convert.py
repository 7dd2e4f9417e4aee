"""Protobuf messages to the query engine's plain types and back: the whole wire format in one place."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import asdict
from functools import lru_cache
from operator import attrgetter

import numpy as np

from latentdex.indexer.catalog import RECORD_FIELDS, RunRecord, printable_path
from latentdex.indexer.directions import Direction
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import ImageRecord
from latentdex.service import wire
from latentdex.service.duplicate_review import DuplicateOptions, DuplicatePage
from latentdex.service.latent_features import DecodedFrame, FrameSpec, GroupSpec
from latentdex.service.library import LibraryPage
from latentdex.service.queries import (
    Answer,
    Hit,
    IdQuery,
    ImageQuery,
    InvalidQuery,
    LatentQuery,
    PreviewSpec,
    Query,
    QuerySpec,
)
from latentdex.service.wire import (
    FORMAT_NAMES,
    latent_message,
    latent_values,
    picture_message,
    set_timestamp,
    timestamp_message,
)
from latentdex.v1 import latentdex_pb2 as pb

SOURCES = {
    pb.SAMPLE_SOURCE_UNSPECIFIED: "auto",
    pb.SAMPLE_SOURCE_PRIOR: "prior",
    pb.SAMPLE_SOURCE_LIBRARY: "library",
}
METHODS = {
    pb.DIRECTION_METHOD_UNSPECIFIED: "auto",
    pb.DIRECTION_METHOD_AUTO: "auto",
    pb.DIRECTION_METHOD_MEAN_DIFFERENCE: "mean_difference",
    pb.DIRECTION_METHOD_PROBE: "probe",
}
DUPLICATE_PRESETS = {
    pb.DUPLICATE_PRESET_UNSPECIFIED: "near",
    pb.DUPLICATE_PRESET_EXACT: "exact",
    pb.DUPLICATE_PRESET_NEAR: "near",
    pb.DUPLICATE_PRESET_SIMILAR: "similar",
}
PATH_METHODS = {
    pb.PATH_METHOD_UNSPECIFIED: "slerp",
    pb.PATH_METHOD_LINEAR: "linear",
    pb.PATH_METHOD_SLERP: "slerp",
}
# Repeated fields that set how much work a call does; `Limits` caps the rest (k, batch, previews).
MAX_GROUP_IDS = 100_000
MAX_GROUP_GLOBS = 64
MAX_GLOB_LENGTH = 1024
# --- proto -> engine ---------------------------------------------------------------------------------


def enum_value(table: dict[int, str], number: int, field: str, enum: str) -> str:
    """The domain value of a proto enum number; InvalidQuery naming `field` and the allowed names.

    proto3 enums are open: a client can send any number, so every enum is checked here, at the wire.
    """
    if number in table:
        return table[number]
    descriptor = pb.DESCRIPTOR.enum_types_by_name[enum]
    allowed = ", ".join(f"{value.name} ({value.number})" for value in descriptor.values)
    raise InvalidQuery(f"{field}: unknown {enum} value {number}; allowed: {allowed}")


def format_name(image_format: int, field: str = "format") -> str:
    return enum_value(FORMAT_NAMES, image_format, field, "ImageFormat")


def sample_source(number: int) -> str:
    return enum_value(SOURCES, number, "source", "SampleSource")


RANKINGS = {
    pb.RANKING_UNSPECIFIED: "copies_first",
    pb.RANKING_COPIES_FIRST: "copies_first",
    pb.RANKING_LATENT: "latent",
}


def path_method(number: int) -> str:
    return enum_value(PATH_METHODS, number, "method", "PathMethod")


def direction_method(number: int) -> str:
    return enum_value(METHODS, number, "method", "DirectionMethod")


def query_of(index: int, item: pb.Query, name: str | None = None) -> Query:
    kind = item.WhichOneof("query")
    if kind == "image":
        return ImageQuery(item.image)
    if kind == "latent":
        return LatentQuery(latent_values(item.latent))
    if kind == "id":
        return IdQuery(item.id)
    raise InvalidQuery(f"{name or f'queries[{index}]'} is empty: set image, latent or id")


def duplicate_options(request: pb.FindDuplicatesRequest) -> DuplicateOptions:
    has_threshold = request.HasField("threshold")
    preset = None if has_threshold and not request.preset else _duplicate_preset(request.preset)
    if has_threshold and request.preset:
        raise InvalidQuery("give a preset or a threshold, not both")
    return DuplicateOptions(
        preset=preset,
        threshold=request.threshold if has_threshold else None,
        where=search_filter(request.filter) if request.HasField("filter") else None,
        check_files=not request.skip_file_check,
    )


def _duplicate_preset(number: int) -> str:
    return enum_value(DUPLICATE_PRESETS, number, "preset", "DuplicatePreset")


def frame_spec(message: pb.FrameOptions) -> FrameSpec:
    return FrameSpec(
        format=format_name(message.format, "frames.format"),
        size=message.size,
        nearest_k=message.nearest_k,
        where=search_filter(message.filter) if message.HasField("filter") else None,
        thumbnails=message.thumbnails,
    )


def group_spec(message: pb.ImageGroup, name: str) -> GroupSpec:
    if len(message.ids) > MAX_GROUP_IDS:
        raise InvalidQuery(f"{name}.ids: at most {MAX_GROUP_IDS} ids, got {len(message.ids)}")
    if len(message.path_globs) > MAX_GROUP_GLOBS:
        raise InvalidQuery(
            f"{name}.path_globs: at most {MAX_GROUP_GLOBS} patterns, got {len(message.path_globs)}"
        )
    if any(len(glob) > MAX_GLOB_LENGTH for glob in message.path_globs):
        raise InvalidQuery(f"{name}.path_globs: each pattern at most {MAX_GLOB_LENGTH} characters")
    return GroupSpec(
        ids=tuple(message.ids),
        path_globs=tuple(message.path_globs),
        query=query_of(0, message.query, f"{name}.query") if message.HasField("query") else None,
        query_k=message.query_k,
    )


def query_spec(options: pb.QueryOptions) -> QuerySpec:
    return QuerySpec(
        k=options.k,
        where=search_filter(options.filter) if options.HasField("filter") else None,
        preview=preview_spec(options.preview, "options.preview"),
        include_latents=options.include_latents,
        ranking=enum_value(RANKINGS, options.ranking, "options.ranking", "Ranking"),
    )


def preview_spec(preview: pb.PreviewOptions, name: str = "preview") -> PreviewSpec:
    return PreviewSpec(
        preview.matches,
        preview.query,
        format_name(preview.format, f"{name}.format"),
        preview.size,
        preview.thumbnails,
    )


def search_filter(message: pb.Filter) -> SearchFilter:
    try:
        return wire.search_filter(message)
    except ValueError as exc:
        raise InvalidQuery(f"bad filter: {exc}") from exc


# --- engine -> proto ---------------------------------------------------------------------------------


def metadata_message(record: ImageRecord) -> pb.ImageMetadata:
    metadata = pb.ImageMetadata()
    _fill_metadata(metadata, record)
    return metadata


def _fill_metadata(metadata: pb.ImageMetadata, record: ImageRecord | _RecordKey) -> None:
    metadata.size_bytes = max(record.size, 0)
    metadata.mtime_ns = record.mtime_ns
    metadata.content_hash = record.content_hash or ""
    metadata.width = record.width or 0
    metadata.height = record.height or 0
    metadata.format = record.format or ""
    metadata.camera_make = record.camera_make or ""
    metadata.camera_model = record.camera_model or ""
    metadata.model_id = record.model_id or ""
    if record.capture_time is not None:
        set_timestamp(metadata.capture_time, record.capture_time)
    if record.indexed_at is not None:
        set_timestamp(metadata.indexed_at, record.indexed_at)


# Every field of a record that its match message shows, by name: equal keys, equal messages.
_RecordKey = namedtuple("_RecordKey", ("id", "path", *RECORD_FIELDS))
_record_values = attrgetter(*_RecordKey._fields)
MATCH_CACHE_SIZE = 32_768  # about 0.6 KB each with the record values the key holds


@lru_cache(maxsize=MATCH_CACHE_SIZE)
def _record_part(key: _RecordKey) -> bytes:
    """A match's id, path and metadata, serialized: built once per record a server returns again and
    again (a Match built field by field costs ~10x more than parsing these bytes)."""
    match = pb.Match(
        id=int(key.id or 0),
        path=printable_path(key.path),
        path_bytes=key.path.encode("utf-8", "surrogateescape"),
    )
    _fill_metadata(match.metadata, key)
    return match.SerializeToString()


def fill_match(match: pb.Match, hit: Hit) -> pb.Match:
    """Write `hit` into an empty `match` (e.g. one just added to a reply's repeated field)."""
    match.MergeFromString(_record_part(_RecordKey._make(_record_values(hit.record))))
    match.distance = hit.distance
    match.similarity = hit.similarity
    if hit.preview is not None:
        match.preview.CopyFrom(picture_message(hit.preview))
    if hit.latent is not None:
        match.latent.CopyFrom(latent_message(hit.latent))
    if hit.thumbnail is not None:
        match.thumbnail.CopyFrom(picture_message(hit.thumbnail))
    return match


def match_message(hit: Hit) -> pb.Match:
    return fill_match(pb.Match(), hit)


def frame_message(frame: DecodedFrame) -> pb.Frame:
    return pb.Frame(
        latent=latent_message(frame.latent),
        image=picture_message(frame.picture),
        nearest=[match_message(hit) for hit in frame.nearest],
        position=frame.position,
    )


def direction_message(direction: Direction, include_vector: bool) -> pb.DirectionInfo:
    info = pb.DirectionInfo(
        name=direction.name,
        model_id=direction.model_id,
        method=direction.method,
        separation=direction.separation or 0.0,
        positive_count=direction.positive_count,
        negative_count=direction.negative_count,
        norm=float(np.linalg.norm(direction.vector)),
        description=direction.description,
        created_at=timestamp_message(direction.created_at),
    )
    if include_vector:
        info.vector.CopyFrom(latent_message(direction.vector))
    return info


def query_response(answer: Answer) -> pb.QueryResponse:
    response = pb.QueryResponse(model_id=answer.model_id)
    response.query_latent.values.extend(answer.query_latent.tolist())
    seconds = answer.timings.seconds
    timings = response.timings  # written in place: no message of its own to copy in
    timings.image_decode_us = round(seconds["image_decode"] * 1e6)
    timings.encode_us = round(seconds["encode"] * 1e6)
    timings.search_us = round(seconds["search"] * 1e6)
    timings.metadata_us = round(seconds["metadata"] * 1e6)
    timings.preview_us = round(seconds["preview"] * 1e6)
    timings.total_us = round(answer.timings.total * 1e6)
    timings.thumbnail_us = round(seconds["thumbnail"] * 1e6)
    for hit in answer.hits:
        fill_match(response.matches.add(), hit)
    if answer.query_preview is not None:
        response.query_preview.CopyFrom(picture_message(answer.query_preview))
    return response


def run_message(run: RunRecord) -> pb.IndexRun:
    message = pb.IndexRun(
        id=run.id, status=run.status, started_at=timestamp_message(run.started_at), **asdict(run.counts)
    )
    if run.ended_at is not None:
        message.ended_at.CopyFrom(timestamp_message(run.ended_at))
    return message


def image_page_message(page: LibraryPage) -> pb.ListImagesResponse:
    return pb.ListImagesResponse(
        images=[match_message(hit) for hit in page.images],
        next_page_token=page.next_page_token,
        total_count=page.total_count,
    )


def duplicate_page_message(page: DuplicatePage) -> pb.FindDuplicatesResponse:
    def similarity(distance: float) -> float:
        return 1.0 / (1.0 + distance) if page.space == "l2" else max(0.0, 1.0 - distance)

    response = pb.FindDuplicatesResponse(
        next_page_token=page.next_page_token,
        total_groups=page.total_groups,
        images_in_groups=page.images_in_groups,
        images_scanned=page.images_scanned,
    )
    if page.threshold is not None:
        response.threshold = page.threshold
    if page.hash_rule is not None:
        response.hash_rule.threshold = page.hash_rule.latent_threshold
        response.hash_rule.max_bits = page.hash_rule.max_bits
        response.hash_rule.max_distance = page.hash_rule.max_distance
    if page.region_rule is not None:
        rule = page.region_rule
        response.region_rule.max_distance = rule.max_distance
        response.region_rule.min_inliers = rule.min_inliers
        response.region_rule.min_contained = rule.min_contained
        response.region_rule.min_agreement = rule.min_agreement
    for group in page.groups:
        members = [
            match_message(
                Hit(record, group.distances[record.id or 0], similarity(group.distances[record.id or 0]))
            )
            for record in group.members
        ]
        pairs = [pb.DuplicatePair(a=a, b=b, distance=d) for a, b, d in group.pairs]
        response.groups.append(pb.DuplicateGroup(members=members, exact=group.exact, pairs=pairs))
    return response
