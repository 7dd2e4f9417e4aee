"""The perceptual hashes' flat guard: a flat region hashes alike whatever the rest of the picture is, so
such hashes never count as agreeing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from latentdex.indexer.duplicates import HASH_RULES
from latentdex.indexer.perceptual_hash import FLAT_BITS, closest_bits, perceptual_hashes


def drawing(shape: str) -> np.ndarray:
    """A black line drawing down the left edge of a white page: the regions right of it are flat."""
    page = Image.new("RGB", (400, 300), "white")
    pen = ImageDraw.Draw(page)
    if shape == "ring":
        pen.ellipse((4, 4, 56, 296), outline="black", width=5)
    else:
        pen.line([(4, 4), (56, 60), (4, 120), (56, 180), (4, 240), (56, 296)], fill="black", width=5)
    return np.asarray(page)


def test_flat_regions_hash_alike_and_are_not_taken_as_agreeing() -> None:
    ring, cross = perceptual_hashes(drawing("ring")), perceptual_hashes(drawing("cross"))
    raw = np.bitwise_count(ring ^ cross)
    away = [2, 4]  # the top right and bottom right regions: white
    assert raw[away].max() == 0  # the same hash, though the drawings differ
    assert np.bitwise_count(ring[away]).max() <= FLAT_BITS
    assert closest_bits(ring[None], cross[None])[0] == raw[[0, 1, 3, 5]].min()
    assert closest_bits(ring[None], cross[None])[0] > HASH_RULES["similar"]["whitened"].max_bits
    assert closest_bits(ring[None], ring[None])[0] == 0  # the same drawing still agrees


def test_a_blank_picture_hashes_flat_and_a_photo_does_not() -> None:
    blank = perceptual_hashes(np.full((240, 320, 3), 255, np.uint8))
    grey = perceptual_hashes(np.full((100, 100, 3), 90, np.uint8))
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(240, 320)), axis=0), axis=1)
    photo = perceptual_hashes(
        np.repeat(((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)[..., None], 3, axis=2)
    )
    assert np.bitwise_count(np.stack([blank, grey])).max() <= FLAT_BITS
    assert np.bitwise_count(photo).min() > 3 * FLAT_BITS
    assert closest_bits(blank[None], grey[None])[0] == 64  # equal hashes, yet no evidence
