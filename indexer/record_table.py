"""The records of a read-only store in compact columns: a server's search hits without a SQL query.

A server answers every query with the records of its matches. Read from SQLite, ten records cost about
0.3 ms, more than a whole HNSW search; kept as Python objects, a million records would take about 800 MB.
`RecordTable` holds them as numpy columns (about 110 bytes per image plus its path): ids sorted for a
binary search, repeated strings (format, camera, model id) as codes into one list of labels, hashes as
their 32 raw bytes, times as integer microseconds. `records` rebuilds `ImageRecord`s equal to the
catalog's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from latentdex.indexer.catalog import ImageRecord

# The columns a table is built from, in this order (the catalog's query selects them so).
TABLE_COLUMNS = (
    "id",
    "path_bytes",
    "size",
    "mtime_ns",
    "content_hash",
    "width",
    "height",
    "format",
    "capture_time",
    "camera_make",
    "camera_model",
    "model_id",
    "indexed_at",
)
_LABELLED = ("format", "camera_make", "camera_model", "model_id")
_NO_TIME = np.iinfo(np.int64).min
_NO_SIZE = -1
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_HASH_BYTES = 32


class UnsupportedRecords(ValueError):
    """A value the columns cannot hold exactly (e.g. a content hash that is not sha256 hex)."""


@dataclass(frozen=True)
class RecordTable:
    """The ok images of a store at one moment, by id; see the module docstring."""

    ids: np.ndarray  # int64, ascending
    path_ends: np.ndarray  # int64: path i is paths[path_ends[i-1]:path_ends[i]]
    paths: bytes
    sizes: np.ndarray  # int64
    mtimes_ns: np.ndarray  # int64
    hashes: np.ndarray  # (n, 32) uint8; rows of `no_hash` are unset
    no_hash: np.ndarray  # bool
    widths: np.ndarray  # int32, _NO_SIZE for none
    heights: np.ndarray  # int32
    labels: tuple[str | None, ...]  # what the label codes stand for
    label_codes: np.ndarray  # (n, 4) int32: format, camera make, camera model, model id
    capture_us: np.ndarray  # int64 µs since 1970 (naive, as EXIF writes it), _NO_TIME for none
    indexed_us: np.ndarray  # int64 µs since 1970 UTC, _NO_TIME for none

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        arrays = (self.ids, self.path_ends, self.sizes, self.mtimes_ns, self.hashes, self.no_hash)
        more = (self.widths, self.heights, self.label_codes, self.capture_us, self.indexed_us)
        return len(self.paths) + sum(a.nbytes for a in (*arrays, *more))

    @classmethod
    def build(cls, row_batches: Iterable[Sequence[Sequence[Any]]]) -> RecordTable:
        """A table of rows (TABLE_COLUMNS, ascending id), given in batches so that no Python object per
        row outlives its batch. Raises UnsupportedRecords for a value the columns cannot keep exactly."""
        builder = _Builder()
        for batch in row_batches:
            builder.add(batch)
        return builder.table()

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """The record of each of `ids` that the table holds; the others are left out."""
        if not len(self.ids) or not len(ids):
            return {}
        wanted = np.asarray(ids, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        rows = rows[self.ids[rows] == wanted]
        # whole columns at once: one numpy call per column, not per value
        ends = self.path_ends[rows].tolist()
        starts = np.where(rows > 0, self.path_ends[rows - 1], 0).tolist()
        no_hash = self.no_hash[rows].tolist()
        raw_hashes = map(bytes, self.hashes[rows])
        hashes = [None if none else raw.hex() for raw, none in zip(raw_hashes, no_hash, strict=True)]
        columns = zip(
            self.ids[rows].tolist(),
            (self.paths[a:b].decode("utf-8", "surrogateescape") for a, b in zip(starts, ends, strict=True)),
            self.sizes[rows].tolist(),
            self.mtimes_ns[rows].tolist(),
            hashes,
            self.widths[rows].tolist(),
            self.heights[rows].tolist(),
            self.label_codes[rows].tolist(),
            self.capture_us[rows].tolist(),
            self.indexed_us[rows].tolist(),
            strict=True,
        )
        out = {}
        for image_id, path, size, mtime_ns, content_hash, width, height, codes, capture, indexed in columns:
            fmt, make, model, model_id = (self.labels[c] for c in codes)
            out[image_id] = ImageRecord(
                id=image_id,
                path=path,
                size=size,
                mtime_ns=mtime_ns,
                content_hash=content_hash,
                width=None if width == _NO_SIZE else width,
                height=None if height == _NO_SIZE else height,
                format=fmt,
                capture_time=_time(capture, _EPOCH),
                camera_make=make,
                camera_model=model,
                model_id=model_id,
                indexed_at=_time(indexed, _EPOCH_UTC),
            )
        return out


def _time(micros: int, epoch: datetime) -> datetime | None:
    """The time `micros` after `epoch` (naive, or aware in UTC: the zone comes with it), None for none."""
    if micros == _NO_TIME:
        return None
    return epoch + micros * _MICROSECOND


def _micros(moment: datetime | None, aware: bool) -> int:
    if moment is None:
        return int(_NO_TIME)
    if (moment.tzinfo is not None) != aware:
        raise UnsupportedRecords(f"a time {'without' if aware else 'with'} a zone where the column has none")
    # an aware moment minus the aware epoch is the time since it in UTC, whatever the moment's zone
    return (moment - (_EPOCH_UTC if aware else _EPOCH)) // _MICROSECOND


def _hash_bytes(content_hash: str | None) -> bytes:
    if content_hash is None:
        return bytes(_HASH_BYTES)
    raw = bytes.fromhex(content_hash) if len(content_hash) == 2 * _HASH_BYTES else b""
    if len(raw) != _HASH_BYTES or raw.hex() != content_hash:
        raise UnsupportedRecords(f"content hash {content_hash!r} is not lower-case sha256 hex")
    return raw


class _Builder:
    """Columns gathered batch by batch, joined once at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.paths: list[bytes] = []
        self.path_total = 0
        self.codes: dict[str | None, int] = {}
        self.last_id = -1

    def add(self, batch: Sequence[Sequence[Any]]) -> None:
        if not batch:
            return
        columns = dict(zip(TABLE_COLUMNS, zip(*batch, strict=True), strict=True))
        ids = np.asarray(columns["id"], dtype=np.int64)
        if ids[0] <= self.last_id or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
            raise UnsupportedRecords("rows must come in ascending id order")
        self.last_id = int(ids[-1])
        lengths = np.fromiter((len(p) for p in columns["path_bytes"]), dtype=np.int64, count=len(ids))
        self.paths.append(b"".join(columns["path_bytes"]))
        ends = self.path_total + np.cumsum(lengths)
        self.path_total = int(ends[-1])
        hashes = columns["content_hash"]
        labelled = [[self._code(value) for value in columns[name]] for name in _LABELLED]
        self._append("ids", ids)
        self._append("path_ends", ends)
        self._append("sizes", np.asarray(columns["size"], dtype=np.int64))
        self._append("mtimes_ns", np.asarray(columns["mtime_ns"], dtype=np.int64))
        raw = b"".join(_hash_bytes(h) for h in hashes)
        self._append("hashes", np.frombuffer(raw, dtype=np.uint8).reshape(-1, _HASH_BYTES))
        self._append("no_hash", np.array([h is None for h in hashes], dtype=bool))
        for name in ("width", "height"):
            sizes = [_NO_SIZE if v is None else v for v in columns[name]]
            self._append(name + "s", np.asarray(sizes, dtype=np.int32))
        self._append("label_codes", np.asarray(labelled, dtype=np.int32).T)
        self._append("capture_us", np.array([_micros(t, False) for t in columns["capture_time"]], np.int64))
        self._append("indexed_us", np.array([_micros(t, True) for t in columns["indexed_at"]], np.int64))

    def table(self) -> RecordTable:
        def joined(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            parts = self.parts.get(name)
            return np.concatenate(parts) if parts else np.empty(shape, dtype=dtype)

        return RecordTable(
            ids=joined("ids", (0,), np.int64),
            path_ends=joined("path_ends", (0,), np.int64),
            paths=b"".join(self.paths),
            sizes=joined("sizes", (0,), np.int64),
            mtimes_ns=joined("mtimes_ns", (0,), np.int64),
            hashes=joined("hashes", (0, _HASH_BYTES), np.uint8),
            no_hash=joined("no_hash", (0,), bool),
            widths=joined("widths", (0,), np.int32),
            heights=joined("heights", (0,), np.int32),
            labels=tuple(self.codes),
            label_codes=joined("label_codes", (0, len(_LABELLED)), np.int32),
            capture_us=joined("capture_us", (0,), np.int64),
            indexed_us=joined("indexed_us", (0,), np.int64),
        )

    def _append(self, name: str, values: np.ndarray) -> None:
        self.parts.setdefault(name, []).append(values)

    def _code(self, label: str | None) -> int:
        return self.codes.setdefault(label, len(self.codes))
