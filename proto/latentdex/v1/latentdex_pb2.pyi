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
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_WEBP: ImageFormat

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
    __slots__ = ("model_id", "latent_dim", "image_size", "image_count", "metric", "index_type", "server_version", "has_store", "vector_kind", "store_updated_at", "max_k", "max_preview_size", "max_image_pixels")
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
    def __init__(self, model_id: _Optional[str] = ..., latent_dim: _Optional[int] = ..., image_size: _Optional[int] = ..., image_count: _Optional[int] = ..., metric: _Optional[str] = ..., index_type: _Optional[str] = ..., server_version: _Optional[str] = ..., has_store: _Optional[bool] = ..., vector_kind: _Optional[str] = ..., store_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_k: _Optional[int] = ..., max_preview_size: _Optional[int] = ..., max_image_pixels: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("k", "filter", "preview", "include_latents")
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATENTS_FIELD_NUMBER: _ClassVar[int]
    k: int
    filter: Filter
    preview: PreviewOptions
    include_latents: bool
    def __init__(self, k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., preview: _Optional[_Union[PreviewOptions, _Mapping]] = ..., include_latents: _Optional[bool] = ...) -> None: ...

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
