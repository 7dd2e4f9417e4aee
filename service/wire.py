"""What the server and the client both say on the wire, said once: image formats, latents, pictures,
filters and timestamps between their protobuf messages and plain Python values.

`service.convert` (the server's side) and `service.client` use these; neither keeps a copy. Torch-free.

Names: the client's public types take the wire's message names (`Match`, `Frame`, `ImageGroup`,
`ServerInfo`, ...); the server's own types never reuse one for another shape (`Hit`, `DecodedFrame`,
`GroupSpec`, `EngineInfo`). An `EncodedPicture` is a `picture` on both sides, whatever the message field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from latentdex.indexer.search_filter import SearchFilter
from latentdex.service.previews import EncodedPicture
from latentdex.v1 import latentdex_pb2 as pb

FORMAT_NUMBERS = {"PNG": pb.IMAGE_FORMAT_PNG, "JPEG": pb.IMAGE_FORMAT_JPEG, "WEBP": pb.IMAGE_FORMAT_WEBP}
# Requests may leave the format unset: PNG.
FORMAT_NAMES = {pb.IMAGE_FORMAT_UNSPECIFIED: "PNG"} | {
    number: name for name, number in FORMAT_NUMBERS.items()
}
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
# The range a Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def latent_message(values: np.ndarray) -> pb.Latent:
    """A latent (any shape, flattened) as its message."""
    return pb.Latent(values=np.asarray(values, dtype=np.float32).ravel().tolist())


def latent_values(message: pb.Latent) -> np.ndarray:
    """A latent message's values as a float32 vector."""
    return np.asarray(message.values, dtype=np.float32)


def picture_message(picture: EncodedPicture) -> pb.EncodedImage:
    return pb.EncodedImage(
        data=picture.data, format=FORMAT_NUMBERS[picture.format], width=picture.width, height=picture.height
    )


def picture_of(message: pb.EncodedImage) -> EncodedPicture:
    name = FORMAT_NAMES.get(message.format, "PNG")
    return EncodedPicture(message.data, name, message.width, message.height)


def timestamp_message(moment: datetime) -> Timestamp:
    """A datetime as a Timestamp: aware ones converted to UTC, naive ones taken as UTC already.

    Computed from the time since the epoch: the same seconds and nanos as `Timestamp.FromDatetime` in about
    half its time (it goes through a time tuple); every match a server builds has two times."""
    stamp = Timestamp()
    set_timestamp(stamp, moment)
    return stamp


def set_timestamp(stamp: Timestamp, moment: datetime) -> None:
    """Write `moment` into `stamp` (e.g. a message's own Timestamp field) as `timestamp_message` would,
    without a Timestamp to copy from."""
    # an aware moment minus the aware epoch is the time since it in UTC, whatever the moment's zone
    since = moment - (_EPOCH if moment.tzinfo is None else _EPOCH_UTC)
    stamp.seconds = since.days * 86_400 + since.seconds
    stamp.nanos = since.microseconds * 1000


def naive_utc(stamp: Timestamp) -> datetime:
    """A Timestamp as a naive UTC datetime: how EXIF times (which have no zone) are compared."""
    return _EPOCH + _since_epoch(stamp)


def aware_utc(stamp: Timestamp) -> datetime:
    """A Timestamp as an aware datetime in UTC."""
    return _EPOCH_UTC + _since_epoch(stamp)


def _since_epoch(stamp: Timestamp) -> timedelta:
    """The time a Timestamp holds since the epoch, as `Timestamp.ToDatetime` reads it (nanoseconds
    truncated to microseconds) in about a third of its time; ValueError where it would raise one."""
    seconds, nanos = stamp.seconds, stamp.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        raise ValueError(f"Timestamp is not valid: {seconds} seconds and {nanos} nanos")
    return timedelta(0, seconds, nanos // 1000)


def filter_message(where: SearchFilter) -> pb.Filter:
    """A search filter as its message (the client's side)."""
    message = pb.Filter(
        path_prefix=where.path_prefix or "",
        min_width=where.min_width or 0,
        min_height=where.min_height or 0,
        formats=sorted(where.formats),
    )
    if where.captured_after is not None:
        message.captured_after.CopyFrom(timestamp_message(where.captured_after))
    if where.captured_before is not None:
        message.captured_before.CopyFrom(timestamp_message(where.captured_before))
    return message


def search_filter(message: pb.Filter) -> SearchFilter:
    """A filter message as a SearchFilter (the server's side); ValueError for values it refuses."""
    return SearchFilter(
        path_prefix=message.path_prefix or None,
        captured_after=naive_utc(message.captured_after) if message.HasField("captured_after") else None,
        captured_before=naive_utc(message.captured_before) if message.HasField("captured_before") else None,
        min_width=message.min_width or None,
        min_height=message.min_height or None,
        formats=frozenset(message.formats),
    )


class MapCell(NamedTuple):
    """Where the library map placed one stored image (a tuple, so `id, column, row, path = cell` works)."""

    id: int
    column: int
    row: int
    path: str


@dataclass(frozen=True)
class LibraryMap:
    """The atlas picture, the cell of each placed image, and the share of variance on each axis."""

    atlas: EncodedPicture
    cells: list[MapCell]
    explained: tuple[float, float]


def library_map_message(library_map: LibraryMap) -> pb.RenderMapResponse:
    return pb.RenderMapResponse(
        atlas=picture_message(library_map.atlas),
        cells=[pb.MapCell(id=c.id, column=c.column, row=c.row, path=c.path) for c in library_map.cells],
        explained_x=library_map.explained[0],
        explained_y=library_map.explained[1],
    )


def library_map_of(message: pb.RenderMapResponse) -> LibraryMap:
    cells = [MapCell(c.id, c.column, c.row, c.path) for c in message.cells]
    return LibraryMap(picture_of(message.atlas), cells, (message.explained_x, message.explained_y))
