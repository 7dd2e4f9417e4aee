"""Named directions in the store's database: saved, listed, replaced and deleted beside a live store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.directions import DirectionBook, new_direction
from indexer.store import ImageRecord, LatentStore
from models.errors import NotFound

DIM = 8


def test_directions_round_trip_per_model_and_leave_images_alone(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=DIM) as store:
        store.upsert_images(
            [ImageRecord(path="a.png", size=1, mtime_ns=1, content_hash="0" * 64, model_id="vae-a")],
            np.ones((1, DIM), np.float32),
        )
        store.flush()
    book = DirectionBook(tmp_path / "store" / "catalog.sqlite")
    try:
        assert book.list() == []
        vector = np.arange(DIM, dtype=np.float32)
        book.save(new_direction("warmer", "vae-a", vector, "probe", 0.93, (12, 10), "sunsets vs noon"))
        book.save(new_direction("warmer", "vae-b", -vector, "mean_difference", None, (3, 3)))
        got = book.get("warmer", "vae-a")
        assert np.array_equal(got.vector, vector) and got.method == "probe" and got.separation == 0.93
        assert (got.positive_count, got.negative_count, got.description) == (12, 10, "sunsets vs noon")
        assert [d.model_id for d in book.list()] == ["vae-a", "vae-b"]
        assert [d.name for d in book.list("vae-b")] == ["warmer"]
        with pytest.raises(ValueError, match="exists"):
            book.save(new_direction("warmer", "vae-a", vector, "probe", None, (1, 1)))
        book.save(new_direction("warmer", "vae-a", 2 * vector, "probe", None, (1, 1)), replace=True)
        assert np.array_equal(book.get("warmer", "vae-a").vector, 2 * vector)
        book.delete("warmer", "vae-a")
        with pytest.raises(NotFound, match="warmer"):
            book.get("warmer", "vae-a")
        with pytest.raises(NotFound):
            book.delete("warmer", "vae-a")
    finally:
        book.close()
    with LatentStore.open(tmp_path / "store") as store:  # the store is still consistent and writable
        assert store.verify().ok and store.count() == 1


@pytest.mark.parametrize("name", ["", "-x", "has space", "x" * 65, "semi;colon"])
def test_direction_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="direction names"):
        new_direction(name, "vae-a", np.zeros(DIM), "probe", None, (1, 1))
