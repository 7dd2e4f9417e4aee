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
    __slots__ = ("model_id", "latent_dim", "image_size", "image_count", "metric", "index_type", "server_version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    latent_dim: int
    image_size: int
    image_count: int
    metric: str
    index_type: str
    server_version: str
    def __init__(self, model_id: _Optional[str] = ..., latent_dim: _Optional[int] = ..., image_size: _Optional[int] = ..., image_count: _Optional[int] = ..., metric: _Optional[str] = ..., index_type: _Optional[str] = ..., server_version: _Optional[str] = ...) -> None: ...
