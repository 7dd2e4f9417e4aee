"""Tests for models.augment on small real tensors, with seeded generators."""

from __future__ import annotations

import torch

from latentdex.indexer.training_data import jpeg_round_trip
from latentdex.models.augment import (
    STYLE_CHANGES,
    altered_copies,
    color_jitter,
    line_drawing,
    random_crops,
    style_changes,
)


def _uint8_images(n: int = 4, size: int = 40) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )


def _smooth_images(n: int = 4, size: int = 32) -> torch.Tensor:
    """Float images with gradients and a bright square: content that augmentations visibly change."""
    ramp = torch.linspace(0, 1, size)
    images = torch.empty(n, 3, size, size)
    for i in range(n):
        images[i, 0] = ramp[None, :] * (0.3 + 0.1 * i)
        images[i, 1] = ramp[:, None] * 0.6
        images[i, 2] = 0.2 + 0.1 * i
        images[i, :, 8 + i : 16 + i, 10:20] = 0.9
    return images


def _window_found(crop: torch.Tensor, image: torch.Tensor) -> bool:
    size = crop.shape[-1]
    for top in range(image.shape[1] - size + 1):
        for left in range(image.shape[2] - size + 1):
            window = image[:, top : top + size, left : left + size]
            if torch.equal(window, crop) or torch.equal(window.flip(-1), crop):
                return True
    return False


def test_random_crops_shape_dtype_range_and_content() -> None:
    images = _uint8_images()
    crops = random_crops(images, 32, torch.Generator().manual_seed(1))
    assert crops.shape == (4, 3, 32, 32)
    assert crops.dtype == torch.float32
    assert crops.min() >= 0 and crops.max() <= 1
    as_uint8 = (crops * 255).round().to(torch.uint8)
    for crop, image in zip(as_uint8, images, strict=True):
        assert _window_found(crop, image)


def test_random_crops_are_deterministic_per_seed() -> None:
    images = _uint8_images(n=8)
    first = random_crops(images, 32, torch.Generator().manual_seed(5))
    again = random_crops(images, 32, torch.Generator().manual_seed(5))
    other = random_crops(images, 32, torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_random_crops_without_flip_are_unmirrored_windows() -> None:
    images = _uint8_images(n=2, size=34)
    crops = (random_crops(images, 32, torch.Generator().manual_seed(2), flip=False) * 255).round()
    for crop, image in zip(crops.to(torch.uint8), images, strict=True):
        windows = [image[:, t : t + 32, s : s + 32] for t in range(3) for s in range(3)]
        assert any(torch.equal(w, crop) for w in windows)


def test_altered_copies_keep_shape_and_range_and_are_seeded() -> None:
    images = _smooth_images()
    first = altered_copies(images, torch.Generator().manual_seed(3))
    again = altered_copies(images, torch.Generator().manual_seed(3))
    other = altered_copies(images, torch.Generator().manual_seed(4))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    per_image_change = (first - images).abs().flatten(1).mean(dim=1)
    assert (per_image_change > 0.005).all()
    assert torch.equal(images, _smooth_images())  # the input is left untouched


def test_altered_copies_with_jpeg_round_trip() -> None:
    images = _smooth_images()
    plain = altered_copies(images, torch.Generator().manual_seed(7))
    jpeg = altered_copies(
        images, torch.Generator().manual_seed(7), jpeg=jpeg_round_trip, jpeg_probability=1.0
    )
    assert jpeg.shape == images.shape
    assert jpeg.min() >= 0 and jpeg.max() <= 1
    # Every image went through an 8-bit JPEG decode: values sit on the 1/255 grid, close to the plain view.
    assert torch.allclose(jpeg * 255, (jpeg * 255).round(), atol=1e-4)
    assert not torch.equal(jpeg, plain)
    assert float((jpeg - plain).abs().mean()) < 0.05


def test_color_jitter_with_zero_strength_is_identity() -> None:
    images = _smooth_images()
    out = color_jitter(images, torch.Generator().manual_seed(0), 0.0)
    assert torch.allclose(out, images, atol=1e-6)
    jittered = color_jitter(images, torch.Generator().manual_seed(0), 0.5)
    assert not torch.allclose(jittered, images, atol=1e-3)
    assert jittered.min() >= 0 and jittered.max() <= 1


def test_style_changes_keep_shape_range_and_seed_and_touch_only_their_share() -> None:
    images = _smooth_images(n=64).clamp(0, 1)
    assert torch.equal(style_changes(images, torch.Generator().manual_seed(0), probability=0.0), images)
    first = style_changes(images, torch.Generator().manual_seed(3), probability=0.5)
    again = style_changes(images, torch.Generator().manual_seed(3), probability=0.5)
    assert torch.equal(first, again) and first.shape == images.shape
    assert first.min() >= 0 and first.max() <= 1
    changed = (first - images).flatten(1).abs().amax(dim=1) > 1e-6
    assert 16 <= int(changed.sum()) <= 48
    every = style_changes(images, torch.Generator().manual_seed(4), probability=1.0)
    assert ((every - images).flatten(1).abs().amax(dim=1) > 1e-6).all()
    assert len(STYLE_CHANGES) == 5


def test_a_line_drawing_is_white_where_flat_and_dark_on_edges() -> None:
    image = torch.full((1, 3, 16, 16), 0.2)
    image[:, :, :, 8:] = 0.9
    drawing = line_drawing(image)
    assert drawing.shape == image.shape
    assert drawing[..., 2].min() > 0.999 and drawing[..., 13].min() > 0.999  # flat areas are paper
    assert torch.all(drawing[..., 7:9] < 0.2)  # the step is a stroke
    assert torch.equal(drawing[:, 0], drawing[:, 1])  # grey strokes


def test_black_corner_views_rotate_the_whole_frame_on_its_canvas() -> None:
    images = 0.3 + 0.6 * _smooth_images()  # no pixel near black
    corners = (slice(None), slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
    centre = (slice(None), slice(None), images.shape[-2] // 2, images.shape[-1] // 2)
    views = altered_copies(images, torch.Generator().manual_seed(8), jitter=0.0, black_corner_share=1.0)
    reflected = altered_copies(images, torch.Generator().manual_seed(8), jitter=0.0)
    assert float(views[corners].mean()) < 0.15  # corners rotated out of the frame are black
    assert float(reflected[corners].min()) > 0.25  # the reflection fill never is
    # the whole frame, not a crop: the centre stays where it was
    assert torch.allclose(views[centre], images[centre], atol=0.06)
