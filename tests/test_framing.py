"""Flat-band trimming: frames and letterbox bars go, scene stays, a framed copy looks like its original."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from latentdex.indexer.framing import MAX_BAND_SHARE, trim_flat_bands
from latentdex.indexer.load import fit_square, load_for_model, load_image


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like picture: smooth colour blobs with texture, no flat edges."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    texture = rng.normal(0, 18, (height, width, 3))
    return np.clip(smooth + texture, 0, 255).astype(np.uint8)


def framed(pixels: np.ndarray, border: int, fill: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(ImageOps.expand(Image.fromarray(pixels), border=border, fill=fill))


def jpeg(pixels: np.ndarray, quality: int = 60) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("fill", [(255, 255, 255), (0, 0, 0), (40, 160, 90)])
def test_a_frame_is_trimmed_to_the_picture(fill: tuple[int, int, int]) -> None:
    picture = scene(120, 160)
    out = trim_flat_bands(framed(picture, 14, fill))
    assert out.shape == picture.shape
    assert np.array_equal(out, picture)


def test_a_frame_survives_jpeg_within_a_pixel() -> None:
    picture = scene(150, 200, seed=1)
    decoded = load_image(jpeg(framed(picture, 12, (255, 255, 255)), quality=50)).pixels
    out = trim_flat_bands(decoded)
    assert abs(out.shape[0] - 150) <= 2 and abs(out.shape[1] - 200) <= 2


def test_letterbox_bars_go_and_the_sides_stay() -> None:
    picture = scene(90, 200, seed=2)
    bars = np.zeros((20, 200, 3), np.uint8)
    out = trim_flat_bands(np.concatenate([bars, picture, bars]))
    assert out.shape == picture.shape


def test_a_picture_without_bands_is_returned_as_is() -> None:
    picture = scene(100, 100, seed=3)
    assert trim_flat_bands(picture) is picture


def test_a_flat_sky_that_fades_out_is_scene() -> None:
    """A run of near-flat lines that fades into the scene instead of stopping at an edge stays."""
    picture = scene(120, 120, seed=4).astype(np.int16)
    fade = np.linspace(0, 1, 30)[:, None, None]
    picture[:30] = (200 * (1 - fade) + picture[:30] * fade).astype(np.int16)
    picture = picture.astype(np.uint8)
    assert trim_flat_bands(picture) is picture


def test_a_band_wider_than_the_limit_is_scene() -> None:
    picture = scene(100, 100, seed=5)
    wall = np.full((int(100 * MAX_BAND_SHARE) + 10, 100, 3), 230, np.uint8)
    tall = np.concatenate([wall, picture])
    assert trim_flat_bands(tall) is tall


def test_a_flat_image_is_left_alone() -> None:
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert trim_flat_bands(flat) is flat


def test_a_framed_copy_gives_the_model_the_original_picture(tmp_path: Path) -> None:
    picture = scene(300, 300, seed=6)
    original, copy = tmp_path / "original.png", tmp_path / "copy.jpg"
    Image.fromarray(picture).save(original)
    copy.write_bytes(jpeg(framed(picture, 24, (250, 250, 250)), quality=85))

    def difference(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    trimmed = difference(load_for_model(original, 64), load_for_model(copy, 64))
    plain = [fit_square(load_image(path).pixels, 64) for path in (original, copy)]
    untrimmed = difference(*plain)
    assert trimmed < 6 < untrimmed


def test_a_flat_stripe_along_one_edge_is_scene() -> None:
    """A graphic's flat stripe on one side is not a frame: bands come in opposite pairs of one colour."""
    picture = scene(100, 120, seed=7)
    stripe = np.full((15, 120, 3), (200, 30, 30), np.uint8)
    striped = np.concatenate([stripe, picture])
    assert trim_flat_bands(striped) is striped
    other = np.full((15, 120, 3), (30, 30, 200), np.uint8)
    two_colours = np.concatenate([stripe, picture, other])
    assert trim_flat_bands(two_colours) is two_colours
