"""The region check of duplicate finding on generated pictures: a crop, a caption strip, a border, a small
rotation and a tiny drawing's crop lie inside their original; a burst frame (the same scene panned) and a
neighbouring crop stick out of it; an unrelated picture does not align; a corrupt file has no features."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from latentdex.indexer import region_match
from latentdex.indexer.duplicates import REGION_RULES
from latentdex.indexer.region_match import VERIFY_SIDE, file_features, local_features, overlap
from latentdex.indexer.region_rule import NO_OVERLAP, Overlap

RULE = REGION_RULES["near"]["whitened"]


def scene(seed: int, size: tuple[int, int] = (900, 700)) -> Image.Image:
    """A busy generated picture: shapes of many colours over a gradient, with some grain."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).copy()
    image = Image.fromarray(np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(160):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(10, 90, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.ellipse((x, y, x + w, y + h), fill=colour)
    return image


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def check(first: Image.Image, second: Image.Image) -> Overlap:
    return overlap(local_features(rgb(first)), local_features(rgb(second)))


def test_a_crop_lies_inside_its_original_and_is_linked() -> None:
    original = scene(1)
    crop = original.crop((60, 40, 60 + 810, 40 + 630))  # 81% of the area
    found = check(original, crop)
    assert found.inliers >= 3 * RULE.min_inliers
    assert found.contained > 0.99 and found.agreement > 0.7
    assert RULE.links(found) and RULE.links(check(crop, original))  # either way round


def test_a_caption_a_border_and_a_small_rotation_are_linked() -> None:
    original = scene(2)
    captioned = original.copy()
    draw = ImageDraw.Draw(captioned)
    draw.rectangle((0, 610, 900, 700), fill=(245, 245, 245))
    draw.text((20, 640), "Summer 2019", fill=(15, 15, 15))
    bordered = ImageOps.expand(original, border=60, fill=(255, 255, 255))
    rotated = original.rotate(2.5, Image.Resampling.BICUBIC)
    for copy in (captioned, bordered, rotated):
        found = check(original, copy)
        assert RULE.links(found), found


def test_a_burst_frame_and_a_neighbouring_crop_align_but_stick_out() -> None:
    wide = scene(3, (1200, 800))
    frame = wide.crop((100, 50, 800, 750))
    panned = wide.crop((205, 100, 905, 800))  # the same scene panned by 15% of the frame
    burst = check(frame, panned)
    assert burst.inliers >= 3 * RULE.min_inliers and burst.agreement > 0.9  # the same pixels, aligned
    assert burst.contained < RULE.min_contained and not RULE.links(burst)
    neighbour = check(frame, wide.crop((450, 50, 1150, 750)))  # half the frame shared
    assert neighbour.contained < 0.7 and not RULE.links(neighbour)


def test_an_unrelated_picture_is_not_linked() -> None:
    found = check(scene(4), scene(5))
    assert not RULE.links(found)
    assert found.inliers < RULE.min_inliers or found.agreement < RULE.min_agreement


def starry_gradient(seed: int, colours: tuple[tuple[int, int, int], tuple[int, int, int]]) -> Image.Image:
    """A smooth wallpaper: a diagonal gradient with faint stars, different for every seed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:800, 0:800] / 800
    ramp = ((xs + ys) / 2)[..., None]
    pixels = np.array(colours[0]) * (1 - ramp) + np.array(colours[1]) * ramp
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y, radius, glow in zip(
        *rng.integers(0, 800, (2, 300)), rng.integers(1, 4, 300), rng.integers(60, 140, 300), strict=True
    ):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(int(glow) + 100,) * 3)
    return image


def test_the_aligned_detail_must_agree_not_only_the_shading() -> None:
    """The copy's keypoints over another smooth picture's pixels (a transform that fits by chance):
    inliers and containment pass, the aligned detail does not agree, no link."""
    first = starry_gradient(7, ((20, 10, 40), (90, 40, 120)))
    copy = ImageOps.expand(first, border=60, fill="white")
    same = check(first, copy)
    assert RULE.links(same), same  # its own bordered copy links
    other = local_features(
        rgb(ImageOps.expand(starry_gradient(8, ((10, 30, 20), (60, 140, 90))), 60, "white"))
    )
    copy_features = local_features(rgb(copy))
    posing = replace(copy_features, grey=other.grey)  # the copy's keypoints, the other picture's pixels
    found = overlap(local_features(rgb(first)), posing)
    assert (found.inliers, found.contained) == (same.inliers, same.contained)
    assert found.agreement < RULE.min_agreement and not RULE.links(found)
    assert not RULE.links(
        check(first, ImageOps.expand(starry_gradient(8, ((10, 30, 20), (60, 140, 90))), 60))
    )


def test_a_fit_that_folds_a_picture_onto_one_spot_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORB finds one corner again at several scales; when many of one picture's keypoints match keypoints
    on one spot of the other, RANSAC fits a transform that shrinks the whole picture onto that spot:
    every match an inlier, the frame wholly inside. Its scale gives it away."""
    picture = local_features(rgb(scene(3)))
    jitter = np.random.default_rng(0).uniform(-0.4, 0.4, picture.points.shape)
    spot = np.full_like(picture.points, 100.0) + jitter
    folded = replace(picture, points=spot.astype(np.float32))
    monkeypatch.setattr(region_match, "SCALE_RANGE", (0.0, float("inf")))
    unguarded = overlap(folded, picture)
    assert unguarded.inliers >= RULE.min_inliers and unguarded.contained >= RULE.min_contained
    monkeypatch.undo()
    assert overlap(folded, picture) == NO_OVERLAP
    assert RULE.links(overlap(picture, picture))


def test_a_tiny_drawing_is_enlarged_so_that_its_crop_is_found() -> None:
    drawing = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(drawing)
    draw.polygon([(5, 58), (32, 4), (60, 58)], fill=(200, 30, 30), outline=(0, 0, 0))
    draw.ellipse((20, 30, 44, 54), fill=(30, 60, 200))
    draw.rectangle((8, 8, 20, 20), fill=(20, 160, 40))
    features = local_features(rgb(drawing))
    assert max(features.size) == VERIFY_SIDE and len(features.points) >= RULE.min_inliers
    found = check(drawing, drawing.crop((3, 2, 61, 60)))
    assert RULE.links(found), found


def test_too_few_features_give_no_overlap() -> None:
    flat = Image.new("RGB", (300, 200), (90, 120, 150))
    assert check(flat, flat) == NO_OVERLAP


def test_file_features_read_a_file_and_give_none_for_a_broken_one(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    scene(6, (2400, 1800)).save(photo, quality=90)
    features = file_features(photo)
    assert features is not None and max(features.size) == VERIFY_SIDE and len(features.points) > 100
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:200])
    assert file_features(broken) is None
    assert file_features(tmp_path / "missing.jpg") is None
    assert file_features(photo, max_pixels=1000) is None  # over the pixel cap: not decoded


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 400, 3), (400, 1)])
def test_degenerate_pictures_do_not_fail(shape: tuple[int, ...]) -> None:
    pixels = np.full(shape, 128, np.uint8)
    assert overlap(local_features(pixels), local_features(pixels)) == NO_OVERLAP


def test_starting_the_cli_or_the_server_does_not_load_opencv() -> None:
    """OpenCV takes 0.1-0.7 s to load: a command or a server start that compares no files does without."""
    script = (
        "import sys\n"
        "import latentdex.service.cli, latentdex.service.server\n"
        "from latentdex.service.duplicate_files import region_check\n"
        "assert 'cv2' not in sys.modules, 'OpenCV loaded at start'\n"
        "assert region_check('near', None, 'whitened', None) is None and 'cv2' not in sys.modules\n"
        "assert region_check('near', None, 'whitened', __import__('pathlib').Path('.')) is not None\n"
        "assert 'cv2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
