import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_WEBP: _ClassVar[ImageFormat]

class Ranking(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RANKING_UNSPECIFIED: _ClassVar[Ranking]
    RANKING_COPIES_FIRST: _ClassVar[Ranking]
    RANKING_LATENT: _ClassVar[Ranking]

class DuplicatePreset(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DUPLICATE_PRESET_UNSPECIFIED: _ClassVar[DuplicatePreset]
    DUPLICATE_PRESET_EXACT: _ClassVar[DuplicatePreset]
    DUPLICATE_PRESET_NEAR: _ClassVar[DuplicatePreset]
    DUPLICATE_PRESET_SIMILAR: _ClassVar[DuplicatePreset]

class SampleSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_SOURCE_UNSPECIFIED: _ClassVar[SampleSource]
    SAMPLE_SOURCE_PRIOR: _ClassVar[SampleSource]
    SAMPLE_SOURCE_LIBRARY: _ClassVar[SampleSource]

class PathMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATH_METHOD_UNSPECIFIED: _ClassVar[PathMethod]
    PATH_METHOD_LINEAR: _ClassVar[PathMethod]
    PATH_METHOD_SLERP: _ClassVar[PathMethod]

class DirectionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_METHOD_UNSPECIFIED: _ClassVar[DirectionMethod]
    DIRECTION_METHOD_AUTO: _ClassVar[DirectionMethod]
    DIRECTION_METHOD_MEAN_DIFFERENCE: _ClassVar[DirectionMethod]
    DIRECTION_METHOD_PROBE: _ClassVar[DirectionMethod]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat
RANKING_UNSPECIFIED: Ranking
RANKING_COPIES_FIRST: Ranking
RANKING_LATENT: Ranking
DUPLICATE_PRESET_UNSPECIFIED: DuplicatePreset
DUPLICATE_PRESET_EXACT: DuplicatePreset
DUPLICATE_PRESET_NEAR: DuplicatePreset
DUPLICATE_PRESET_SIMILAR: DuplicatePreset
SAMPLE_SOURCE_UNSPECIFIED: SampleSource
SAMPLE_SOURCE_PRIOR: SampleSource
SAMPLE_SOURCE_LIBRARY: SampleSource
PATH_METHOD_UNSPECIFIED: PathMethod
PATH_METHOD_LINEAR: PathMethod
PATH_METHOD_SLERP: PathMethod
DIRECTION_METHOD_UNSPECIFIED: DirectionMethod
DIRECTION_METHOD_AUTO: DirectionMethod
DIRECTION_METHOD_MEAN_DIFFERENCE: DirectionMethod
DIRECTION_METHOD_PROBE: DirectionMethod

class Latent(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EncodedImage(_message.Message):
    __slots__ = ("data", "format", "width", "height")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: ImageFormat
    width: int
    height: int
    def __init__(self, data: _Optional[bytes] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("image", "include_logvar")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOGVAR_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    include_logvar: bool
    def __init__(self, image: _Optional[bytes] = ..., include_logvar: _Optional[bool] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("mu", "logvar", "model_id")
    MU_FIELD_NUMBER: _ClassVar[int]
    LOGVAR_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    mu: Latent
    logvar: Latent
    model_id: str
    def __init__(self, mu: _Optional[_Union[Latent, _Mapping]] = ..., logvar: _Optional[_Union[Latent, _Mapping]] = ..., model_id: _Optional[str] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ("latent", "format", "size")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    latent: Latent
    format: ImageFormat
    size: int
    def __init__(self, latent: _Optional[_Union[Latent, _Mapping]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., size: _Optional[int] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ("image", "model_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    image: EncodedImage
    model_id: str
    def __init__(self, image: _Optional[_Union[EncodedImage, _Mapping]] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("model_id", "latent_dim", "image_size", "image_count", "metric", "index_type", "server_version", "has_store", "vector_kind", "store_updated_at", "max_k", "max_preview_size", "max_image_pixels", "last_run")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    HAS_STORE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    STORE_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_PREVIEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    latent_dim: int
    image_size: int
    image_count: int
    metric: str
    index_type: str
    server_version: str
    has_store: bool
    vector_kind: str
    store_updated_at: _timestamp_pb2.Timestamp
    max_k: int
    max_preview_size: int
    max_image_pixels: int
    last_run: IndexRun
    def __init__(self, model_id: _Optional[str] = ..., latent_dim: _Optional[int] = ..., image_size: _Optional[int] = ..., image_count: _Optional[int] = ..., metric: _Optional[str] = ..., index_type: _Optional[str] = ..., server_version: _Optional[str] = ..., has_store: _Optional[bool] = ..., vector_kind: _Optional[str] = ..., store_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_k: _Optional[int] = ..., max_preview_size: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., last_run: _Optional[_Union[IndexRun, _Mapping]] = ...) -> None: ...

class IndexRun(_message.Message):
    __slots__ = ("id", "status", "started_at", "ended_at", "new", "changed", "unchanged", "moved", "deleted", "failed")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    new: int
    changed: int
    unchanged: int
    moved: int
    deleted: int
    failed: int
    def __init__(self, id: _Optional[int] = ..., status: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., new: _Optional[int] = ..., changed: _Optional[int] = ..., unchanged: _Optional[int] = ..., moved: _Optional[int] = ..., deleted: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("path_prefix", "captured_after", "captured_before", "min_width", "min_height", "formats")
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MIN_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MIN_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    path_prefix: str
    captured_after: _timestamp_pb2.Timestamp
    captured_before: _timestamp_pb2.Timestamp
    min_width: int
    min_height: int
    formats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path_prefix: _Optional[str] = ..., captured_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., captured_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_width: _Optional[int] = ..., min_height: _Optional[int] = ..., formats: _Optional[_Iterable[str]] = ...) -> None: ...

class PreviewOptions(_message.Message):
    __slots__ = ("matches", "query", "format", "size", "thumbnails")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    matches: bool
    query: bool
    format: ImageFormat
    size: int
    thumbnails: bool
    def __init__(self, matches: _Optional[bool] = ..., query: _Optional[bool] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., size: _Optional[int] = ..., thumbnails: _Optional[bool] = ...) -> None: ...

class QueryOptions(_message.Message):
    __slots__ = ("k", "filter", "preview", "include_latents", "ranking")
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATENTS_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    k: int
    filter: Filter
    preview: PreviewOptions
    include_latents: bool
    ranking: Ranking
    def __init__(self, k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., preview: _Optional[_Union[PreviewOptions, _Mapping]] = ..., include_latents: _Optional[bool] = ..., ranking: _Optional[_Union[Ranking, str]] = ...) -> None: ...

class QueryByImageRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    options: QueryOptions
    def __init__(self, image: _Optional[bytes] = ..., options: _Optional[_Union[QueryOptions, _Mapping]] = ...) -> None: ...

class QueryByLatentRequest(_message.Message):
    __slots__ = ("latent", "options")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    latent: Latent
    options: QueryOptions
    def __init__(self, latent: _Optional[_Union[Latent, _Mapping]] = ..., options: _Optional[_Union[QueryOptions, _Mapping]] = ...) -> None: ...

class QueryByIdRequest(_message.Message):
    __slots__ = ("id", "options", "include_self")
    ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SELF_FIELD_NUMBER: _ClassVar[int]
    id: int
    options: QueryOptions
    include_self: bool
    def __init__(self, id: _Optional[int] = ..., options: _Optional[_Union[QueryOptions, _Mapping]] = ..., include_self: _Optional[bool] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("id", "preview", "include_latent")
    ID_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATENT_FIELD_NUMBER: _ClassVar[int]
    id: int
    preview: PreviewOptions
    include_latent: bool
    def __init__(self, id: _Optional[int] = ..., preview: _Optional[_Union[PreviewOptions, _Mapping]] = ..., include_latent: _Optional[bool] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: Filter
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token", "total_count")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Match]
    next_page_token: str
    total_count: int
    def __init__(self, images: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_count: _Optional[int] = ...) -> None: ...

class FindDuplicatesRequest(_message.Message):
    __slots__ = ("preset", "threshold", "filter", "of_id", "page_size", "page_token", "skip_file_check")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    OF_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SKIP_FILE_CHECK_FIELD_NUMBER: _ClassVar[int]
    preset: DuplicatePreset
    threshold: float
    filter: Filter
    of_id: int
    page_size: int
    page_token: str
    skip_file_check: bool
    def __init__(self, preset: _Optional[_Union[DuplicatePreset, str]] = ..., threshold: _Optional[float] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., of_id: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., skip_file_check: _Optional[bool] = ...) -> None: ...

class DuplicatePair(_message.Message):
    __slots__ = ("a", "b", "distance")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    a: int
    b: int
    distance: float
    def __init__(self, a: _Optional[int] = ..., b: _Optional[int] = ..., distance: _Optional[float] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("members", "exact", "pairs")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Match]
    exact: bool
    pairs: _containers.RepeatedCompositeFieldContainer[DuplicatePair]
    def __init__(self, members: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., exact: _Optional[bool] = ..., pairs: _Optional[_Iterable[_Union[DuplicatePair, _Mapping]]] = ...) -> None: ...

class FindDuplicatesResponse(_message.Message):
    __slots__ = ("groups", "next_page_token", "total_groups", "images_in_groups", "images_scanned", "threshold", "hash_rule", "region_rule")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_GROUPS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_IN_GROUPS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SCANNED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HASH_RULE_FIELD_NUMBER: _ClassVar[int]
    REGION_RULE_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    next_page_token: str
    total_groups: int
    images_in_groups: int
    images_scanned: int
    threshold: float
    hash_rule: DuplicateHashRule
    region_rule: DuplicateRegionRule
    def __init__(self, groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_groups: _Optional[int] = ..., images_in_groups: _Optional[int] = ..., images_scanned: _Optional[int] = ..., threshold: _Optional[float] = ..., hash_rule: _Optional[_Union[DuplicateHashRule, _Mapping]] = ..., region_rule: _Optional[_Union[DuplicateRegionRule, _Mapping]] = ...) -> None: ...

class DuplicateRegionRule(_message.Message):
    __slots__ = ("max_distance", "min_inliers", "min_contained", "min_agreement")
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_INLIERS_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTAINED_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    max_distance: float
    min_inliers: int
    min_contained: float
    min_agreement: float
    def __init__(self, max_distance: _Optional[float] = ..., min_inliers: _Optional[int] = ..., min_contained: _Optional[float] = ..., min_agreement: _Optional[float] = ...) -> None: ...

class DuplicateHashRule(_message.Message):
    __slots__ = ("threshold", "max_bits", "max_distance")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    max_bits: int
    max_distance: float
    def __init__(self, threshold: _Optional[float] = ..., max_bits: _Optional[int] = ..., max_distance: _Optional[float] = ...) -> None: ...

class ImageMetadata(_message.Message):
    __slots__ = ("size_bytes", "mtime_ns", "content_hash", "width", "height", "format", "capture_time", "camera_make", "camera_model", "model_id", "indexed_at")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    CAMERA_MAKE_FIELD_NUMBER: _ClassVar[int]
    CAMERA_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INDEXED_AT_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    format: str
    capture_time: _timestamp_pb2.Timestamp
    camera_make: str
    camera_model: str
    model_id: str
    indexed_at: _timestamp_pb2.Timestamp
    def __init__(self, size_bytes: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., content_hash: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[str] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., camera_make: _Optional[str] = ..., camera_model: _Optional[str] = ..., model_id: _Optional[str] = ..., indexed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("id", "path", "distance", "similarity", "metadata", "preview", "latent", "path_bytes", "thumbnail")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    path: str
    distance: float
    similarity: float
    metadata: ImageMetadata
    preview: EncodedImage
    latent: Latent
    path_bytes: bytes
    thumbnail: EncodedImage
    def __init__(self, id: _Optional[int] = ..., path: _Optional[str] = ..., distance: _Optional[float] = ..., similarity: _Optional[float] = ..., metadata: _Optional[_Union[ImageMetadata, _Mapping]] = ..., preview: _Optional[_Union[EncodedImage, _Mapping]] = ..., latent: _Optional[_Union[Latent, _Mapping]] = ..., path_bytes: _Optional[bytes] = ..., thumbnail: _Optional[_Union[EncodedImage, _Mapping]] = ...) -> None: ...

class QueryTimings(_message.Message):
    __slots__ = ("image_decode_us", "encode_us", "search_us", "metadata_us", "preview_us", "total_us", "thumbnail_us")
    IMAGE_DECODE_US_FIELD_NUMBER: _ClassVar[int]
    ENCODE_US_FIELD_NUMBER: _ClassVar[int]
    SEARCH_US_FIELD_NUMBER: _ClassVar[int]
    METADATA_US_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_US_FIELD_NUMBER: _ClassVar[int]
    TOTAL_US_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_US_FIELD_NUMBER: _ClassVar[int]
    image_decode_us: int
    encode_us: int
    search_us: int
    metadata_us: int
    preview_us: int
    total_us: int
    thumbnail_us: int
    def __init__(self, image_decode_us: _Optional[int] = ..., encode_us: _Optional[int] = ..., search_us: _Optional[int] = ..., metadata_us: _Optional[int] = ..., preview_us: _Optional[int] = ..., total_us: _Optional[int] = ..., thumbnail_us: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("matches", "query_latent", "query_preview", "model_id", "timings")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    QUERY_LATENT_FIELD_NUMBER: _ClassVar[int]
    QUERY_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    query_latent: Latent
    query_preview: EncodedImage
    model_id: str
    timings: QueryTimings
    def __init__(self, matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., query_latent: _Optional[_Union[Latent, _Mapping]] = ..., query_preview: _Optional[_Union[EncodedImage, _Mapping]] = ..., model_id: _Optional[str] = ..., timings: _Optional[_Union[QueryTimings, _Mapping]] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("image", "latent", "id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    latent: Latent
    id: int
    def __init__(self, image: _Optional[bytes] = ..., latent: _Optional[_Union[Latent, _Mapping]] = ..., id: _Optional[int] = ...) -> None: ...

class QueryBatchRequest(_message.Message):
    __slots__ = ("queries", "options")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    options: QueryOptions
    def __init__(self, queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ..., options: _Optional[_Union[QueryOptions, _Mapping]] = ...) -> None: ...

class QueryBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResponse, _Mapping]]] = ...) -> None: ...

class FrameOptions(_message.Message):
    __slots__ = ("format", "size", "nearest_k", "filter", "thumbnails")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NEAREST_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    format: ImageFormat
    size: int
    nearest_k: int
    filter: Filter
    thumbnails: bool
    def __init__(self, format: _Optional[_Union[ImageFormat, str]] = ..., size: _Optional[int] = ..., nearest_k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., thumbnails: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("latent", "image", "nearest", "position")
    LATENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NEAREST_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    latent: Latent
    image: EncodedImage
    nearest: _containers.RepeatedCompositeFieldContainer[Match]
    position: float
    def __init__(self, latent: _Optional[_Union[Latent, _Mapping]] = ..., image: _Optional[_Union[EncodedImage, _Mapping]] = ..., nearest: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., position: _Optional[float] = ...) -> None: ...

class FramesResponse(_message.Message):
    __slots__ = ("frames", "model_id")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    model_id: str
    def __init__(self, frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("count", "temperature", "seed", "around", "spread", "source", "frames")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    AROUND_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    count: int
    temperature: float
    seed: int
    around: Query
    spread: float
    source: SampleSource
    frames: FrameOptions
    def __init__(self, count: _Optional[int] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ..., around: _Optional[_Union[Query, _Mapping]] = ..., spread: _Optional[float] = ..., source: _Optional[_Union[SampleSource, str]] = ..., frames: _Optional[_Union[FrameOptions, _Mapping]] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("start", "end", "steps", "method", "frames")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    start: Query
    end: Query
    steps: int
    method: PathMethod
    frames: FrameOptions
    def __init__(self, start: _Optional[_Union[Query, _Mapping]] = ..., end: _Optional[_Union[Query, _Mapping]] = ..., steps: _Optional[int] = ..., method: _Optional[_Union[PathMethod, str]] = ..., frames: _Optional[_Union[FrameOptions, _Mapping]] = ...) -> None: ...

class EditRequest(_message.Message):
    __slots__ = ("source", "direction", "strengths", "frames")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STRENGTHS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    source: Query
    direction: str
    strengths: _containers.RepeatedScalarFieldContainer[float]
    frames: FrameOptions
    def __init__(self, source: _Optional[_Union[Query, _Mapping]] = ..., direction: _Optional[str] = ..., strengths: _Optional[_Iterable[float]] = ..., frames: _Optional[_Union[FrameOptions, _Mapping]] = ...) -> None: ...

class ImageGroup(_message.Message):
    __slots__ = ("ids", "path_globs", "query", "query_k")
    IDS_FIELD_NUMBER: _ClassVar[int]
    PATH_GLOBS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    QUERY_K_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    path_globs: _containers.RepeatedScalarFieldContainer[str]
    query: Query
    query_k: int
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., path_globs: _Optional[_Iterable[str]] = ..., query: _Optional[_Union[Query, _Mapping]] = ..., query_k: _Optional[int] = ...) -> None: ...

class CreateDirectionRequest(_message.Message):
    __slots__ = ("name", "positive", "negative", "method", "replace", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    positive: ImageGroup
    negative: ImageGroup
    method: DirectionMethod
    replace: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., positive: _Optional[_Union[ImageGroup, _Mapping]] = ..., negative: _Optional[_Union[ImageGroup, _Mapping]] = ..., method: _Optional[_Union[DirectionMethod, str]] = ..., replace: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class DirectionInfo(_message.Message):
    __slots__ = ("name", "model_id", "method", "separation", "positive_count", "negative_count", "norm", "description", "created_at", "vector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SEPARATION_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_id: str
    method: str
    separation: float
    positive_count: int
    negative_count: int
    norm: float
    description: str
    created_at: _timestamp_pb2.Timestamp
    vector: Latent
    def __init__(self, name: _Optional[str] = ..., model_id: _Optional[str] = ..., method: _Optional[str] = ..., separation: _Optional[float] = ..., positive_count: _Optional[int] = ..., negative_count: _Optional[int] = ..., norm: _Optional[float] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., vector: _Optional[_Union[Latent, _Mapping]] = ...) -> None: ...

class ListDirectionsRequest(_message.Message):
    __slots__ = ("include_vectors",)
    INCLUDE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    include_vectors: bool
    def __init__(self, include_vectors: _Optional[bool] = ...) -> None: ...

class ListDirectionsResponse(_message.Message):
    __slots__ = ("directions",)
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    directions: _containers.RepeatedCompositeFieldContainer[DirectionInfo]
    def __init__(self, directions: _Optional[_Iterable[_Union[DirectionInfo, _Mapping]]] = ...) -> None: ...

class DeleteDirectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDirectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TraverseRequest(_message.Message):
    __slots__ = ("source", "dimensions", "top", "values", "format", "size")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    source: Query
    dimensions: _containers.RepeatedScalarFieldContainer[int]
    top: int
    values: _containers.RepeatedScalarFieldContainer[float]
    format: ImageFormat
    size: int
    def __init__(self, source: _Optional[_Union[Query, _Mapping]] = ..., dimensions: _Optional[_Iterable[int]] = ..., top: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., size: _Optional[int] = ...) -> None: ...

class TraverseRow(_message.Message):
    __slots__ = ("dimension", "frames")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    dimension: int
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, dimension: _Optional[int] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class TraverseResponse(_message.Message):
    __slots__ = ("rows", "model_id")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TraverseRow]
    model_id: str
    def __init__(self, rows: _Optional[_Iterable[_Union[TraverseRow, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetLatentStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DimensionStats(_message.Message):
    __slots__ = ("dimension", "mean", "variance")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    dimension: int
    mean: float
    variance: float
    def __init__(self, dimension: _Optional[int] = ..., mean: _Optional[float] = ..., variance: _Optional[float] = ...) -> None: ...

class GetLatentStatsResponse(_message.Message):
    __slots__ = ("dimensions", "active_count", "image_count")
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    dimensions: _containers.RepeatedCompositeFieldContainer[DimensionStats]
    active_count: int
    image_count: int
    def __init__(self, dimensions: _Optional[_Iterable[_Union[DimensionStats, _Mapping]]] = ..., active_count: _Optional[int] = ..., image_count: _Optional[int] = ...) -> None: ...

class RenderMapRequest(_message.Message):
    __slots__ = ("columns", "rows", "cell", "decoded", "filter", "format")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CELL_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    columns: int
    rows: int
    cell: int
    decoded: bool
    filter: Filter
    format: ImageFormat
    def __init__(self, columns: _Optional[int] = ..., rows: _Optional[int] = ..., cell: _Optional[int] = ..., decoded: _Optional[bool] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., format: _Optional[_Union[ImageFormat, str]] = ...) -> None: ...

class RenderMapResponse(_message.Message):
    __slots__ = ("atlas", "cells", "explained_x", "explained_y")
    ATLAS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_X_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_Y_FIELD_NUMBER: _ClassVar[int]
    atlas: EncodedImage
    cells: _containers.RepeatedCompositeFieldContainer[MapCell]
    explained_x: float
    explained_y: float
    def __init__(self, atlas: _Optional[_Union[EncodedImage, _Mapping]] = ..., cells: _Optional[_Iterable[_Union[MapCell, _Mapping]]] = ..., explained_x: _Optional[float] = ..., explained_y: _Optional[float] = ...) -> None: ...

class MapCell(_message.Message):
    __slots__ = ("id", "column", "row", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: int
    column: int
    row: int
    path: str
    def __init__(self, id: _Optional[int] = ..., column: _Optional[int] = ..., row: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...
