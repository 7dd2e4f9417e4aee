"""The wire format both sides share: each conversion there and back gives what went in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from latentdex.indexer.filters import SearchFilter
from latentdex.service import wire
from latentdex.service.previews import EncodedPicture
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
