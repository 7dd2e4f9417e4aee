"""The training-only photos (`bench.datasets.training_only_photos`): one per picture, never a link, never
an eval picture shipped again under another name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.datasets import TRAINING_ONLY_DIR, photo_group, split_of, training_only_photos


def _scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def _eval_name() -> str:
    for number in range(1000):
        name = f"scene{number}"
        if split_of(photo_group(f"usr/share/backgrounds/{name}.png")) == "eval":
            return name
    raise AssertionError("no eval-split name found")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    backgrounds = tmp_path / "usr/share/backgrounds"
    backgrounds.mkdir(parents=True)
    _scene(1).save(backgrounds / f"{_eval_name()}.png")
    return tmp_path


def test_one_photo_per_picture_without_links_or_eval_pictures(raw: Path) -> None:
    extra = raw / TRAINING_ONLY_DIR / "usr/share/backgrounds"
    extra.mkdir(parents=True)
    # The eval picture again, re-encoded at another size: left out.
    _scene(1, (640, 480)).save(extra / "renamed_copy.jpg", quality=85)
    # A new picture in two resolutions: one group, its largest file kept.
    _scene(2, (320, 240)).save(extra / "fresh_800x600.jpg")
    _scene(2, (640, 480)).save(extra / "fresh_1920x1080.jpg")
    # A link to it: skipped.
    (extra / "default-background.jpg").symlink_to(extra / "fresh_1920x1080.jpg")
    _scene(3).save(extra / "another.png")

    kept = training_only_photos(raw)

    assert [p.name for p in kept] == ["another.png", "fresh_1920x1080.jpg"]


def test_missing_training_only_photos_is_an_error(raw: Path) -> None:
    with pytest.raises(FileNotFoundError, match="more_photos"):
        training_only_photos(raw)
