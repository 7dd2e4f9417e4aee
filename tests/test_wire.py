"""The wire format both sides share: each conversion there and back gives what went in."""

from __future__ import annotations

import ast
import copy
import pickle
from dataclasses import FrozenInstanceError, asdict, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.search_filter import SearchFilter
from latentdex.service import client, convert, wire
from latentdex.service.latent_features import DecodedFrame
from latentdex.service.previews import EncodedPicture
from latentdex.service.queries import Hit
from latentdex.v1 import latentdex_pb2 as pb


def test_a_filter_crosses_the_wire_unchanged() -> None:
    where = SearchFilter(
        path_prefix="2023/",
        captured_after=datetime(2023, 6, 1),
        captured_before=datetime(2023, 9, 1, 12, 30),
        min_width=800,
        min_height=600,
        formats=frozenset({"JPEG", "WEBP"}),
    )
    assert wire.search_filter(wire.filter_message(where)) == where
    assert wire.search_filter(wire.filter_message(SearchFilter())) == SearchFilter()


def test_latents_and_pictures_cross_the_wire_unchanged() -> None:
    latent = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    assert np.array_equal(wire.latent_values(wire.latent_message(latent)), latent)
    for name in wire.FORMAT_NUMBERS:
        picture = EncodedPicture(b"\x89data", name, 64, 48)
        assert wire.picture_of(wire.picture_message(picture)) == picture
    assert wire.FORMAT_NAMES[pb.IMAGE_FORMAT_UNSPECIFIED] == "PNG"


def test_timestamps_are_utc_on_the_wire() -> None:
    plus_two = datetime(2024, 1, 2, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    stamp = wire.timestamp_message(plus_two)
    assert wire.aware_utc(stamp) == plus_two and wire.aware_utc(stamp).tzinfo == UTC
    assert wire.naive_utc(stamp) == datetime(2024, 1, 2, 12, 0)
    assert wire.naive_utc(wire.timestamp_message(datetime(2021, 6, 1, 12))) == datetime(2021, 6, 1, 12)


def test_timestamps_match_protobufs_own_conversion_across_the_calendar() -> None:
    rng = np.random.default_rng(0)
    moments = [datetime(1, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime(1970, 1, 1)]
    moments += [datetime(9999, 12, 31, 23, 59, 59, 999_999), datetime(2024, 2, 29, 1, 2, 3, 4)]
    span = int((datetime(9999, 12, 31) - datetime(1, 1, 1)) / timedelta(microseconds=1))
    moments += [datetime(1, 1, 1) + timedelta(microseconds=int(m)) for m in rng.integers(0, span, 2000)]
    moments += [m.replace(tzinfo=timezone(timedelta(hours=5, minutes=30))) for m in moments[5:50]]
    for moment in moments:
        expected = wire.Timestamp()
        expected.FromDatetime(
            moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)
        )
        stamp = wire.timestamp_message(moment)
        assert (stamp.seconds, stamp.nanos) == (expected.seconds, expected.nanos), moment


def test_timestamps_read_back_as_protobufs_own_conversion_reads_them() -> None:
    rng = np.random.default_rng(1)
    stamps = [(-62_135_596_800, 0), (253_402_300_799, 999_999_999), (0, 0), (-1, 999_999_999), (0, 1999)]
    low, high = -62_135_596_800, 253_402_300_800
    seconds_drawn, nanos_drawn = rng.integers(low, high, 2000), rng.integers(0, 10**9, 2000)
    stamps += [(int(s), int(n)) for s, n in zip(seconds_drawn, nanos_drawn, strict=True)]
    for seconds, nanos in stamps:
        stamp = wire.Timestamp(seconds=seconds, nanos=nanos)
        assert wire.naive_utc(stamp) == stamp.ToDatetime(), (seconds, nanos)
        aware = wire.aware_utc(stamp)
        assert aware == stamp.ToDatetime(tzinfo=UTC) and aware.tzinfo is UTC, (seconds, nanos)
    for seconds, nanos in [(-62_135_596_801, 0), (253_402_300_800, 0), (0, -1), (0, 1_000_000_000)]:
        stamp = wire.Timestamp(seconds=seconds, nanos=nanos)
        with pytest.raises(ValueError):
            stamp.ToDatetime()  # what the checks below must agree with
        with pytest.raises(ValueError):
            wire.naive_utc(stamp)
        with pytest.raises(ValueError):
            wire.aware_utc(stamp)


def test_only_the_client_names_its_types_after_wire_messages() -> None:
    """A name means one thing: server-side classes never take a protobuf message's name, no two service
    modules define a class of the same name, and the types both sides use (`MapCell`, `LibraryMap`) are
    defined once, in the wire module."""
    wire_names = set(pb.DESCRIPTOR.message_types_by_name)
    service = Path(__file__).resolve().parents[1] / "service"
    clashes: dict[str, list[str]] = {}
    defined_in: dict[str, list[str]] = {}
    for path in sorted(service.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for name in names:
            defined_in.setdefault(name, []).append(path.name)
        if path.name not in ("client.py", "wire.py") and names & wire_names:
            clashes[path.name] = sorted(names & wire_names)
    assert clashes == {}
    assert {name: files for name, files in defined_in.items() if len(files) > 1} == {}
    client_classes = {name for name, value in vars(client).items() if isinstance(value, type)}
    assert {"Match", "Frame", "ImageGroup", "MapCell"} <= client_classes & wire_names
    assert client.LibraryMap is wire.LibraryMap and client.MapCell is wire.MapCell


def test_pictures_are_pictures_on_both_sides() -> None:
    """Every EncodedPicture field of the client's and the server's frame and match types is named alike."""

    def picture_fields(cls: type) -> set[str]:
        return {f.name for f in fields(cls) if "EncodedPicture" in str(f.type)}

    assert picture_fields(client.Frame) == picture_fields(DecodedFrame) == {"picture"}
    assert picture_fields(client.Match) == picture_fields(Hit) == {"preview", "thumbnail"}


def _photo_record() -> ImageRecord:
    return ImageRecord(
        id=7,
        path="a/b.jpg",
        size=12,
        mtime_ns=34,
        content_hash="c" * 64,
        width=640,
        height=480,
        format="JPEG",
        capture_time=datetime(2021, 5, 6, 7, 8, 9),
        camera_make="Nikon",
        camera_model="Z6",
        model_id="vae-t",
        indexed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_a_match_message_shows_every_field_of_its_record_and_hit() -> None:
    record = _photo_record()
    first = convert.match_message(Hit(record, 0.25, 0.75))
    assert (first.id, first.path, first.path_bytes) == (7, "a/b.jpg", b"a/b.jpg")
    assert (first.distance, first.similarity) == (0.25, 0.75)
    assert first.metadata == convert.metadata_message(record)
    assert first.metadata.capture_time.ToDatetime() == record.capture_time
    # the record part is built once per record's content: a changed field gives a changed message
    again = convert.match_message(Hit(replace(record), 0.5, 0.5))
    assert again.metadata == first.metadata and again.distance == 0.5
    moved = convert.match_message(Hit(replace(record, path="c.jpg", camera_model="Z7"), 0.5, 0.5))
    assert (moved.path, moved.metadata.camera_model) == ("c.jpg", "Z7")
    with_latent = convert.match_message(Hit(record, 0.1, 0.9, latent=np.ones(3, np.float32)))
    assert list(with_latent.latent.values) == [1.0, 1.0, 1.0] and not first.HasField("latent")


def test_a_match_read_off_the_wire_is_the_match_built_eagerly() -> None:
    record = _photo_record()
    message = convert.match_message(Hit(record, 0.25, 0.75))
    metadata = client.ImageMetadata(
        record.size,
        record.mtime_ns,
        record.content_hash,
        record.width,
        record.height,
        record.format,
        record.capture_time,
        record.camera_make,
        record.camera_model,
        record.model_id,
        record.indexed_at,
    )
    eager = client.Match(7, "a/b.jpg", 0.25, 0.75, metadata, None, None, b"a/b.jpg", None)
    # the metadata is built when first read, and then kept
    lazy = client._match(message)
    assert "metadata" not in vars(lazy)
    assert lazy.metadata == metadata and lazy.metadata is lazy.metadata
    # a match not yet read compares, prints, copies, pickles and replaces as the eager one does
    for fresh in (
        lambda: client._match(message),
        lambda: copy.copy(client._match(message)),
        lambda: pickle.loads(pickle.dumps(client._match(message))),
    ):
        assert fresh() == eager
        assert repr(fresh()) == repr(eager)
        assert asdict(fresh()) == asdict(eager)
        assert replace(fresh(), distance=0.5) == replace(eager, distance=0.5)
    # still frozen, and an attribute it never had is an AttributeError as usual
    with pytest.raises(FrozenInstanceError):
        lazy.metadata = metadata  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        client._match(message).path = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no attribute 'size'"):
        _ = lazy.size  # type: ignore[attr-defined]
    assert not hasattr(eager, "_metadata_wire")
