"""Frames of the latent space as files: a PNG sheet (with the nearest real photos) or an animated strip.

The output's suffix decides: `.gif` or `.webp` write an animation of the decoded frames (looping, there
and back for paths and edits); anything else a contact sheet with one tile per frame, the decoding on the
left and, when the frames came with their nearest photos, that photo's thumbnail on the right.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from latentdex.service.contact_sheet import SheetTile, contact_sheet

if TYPE_CHECKING:
    from latentdex.service.client import Frame

ANIMATED_SUFFIXES = (".gif", ".webp")
FRAME_MS = 120


def write_frames(
    frames: Sequence[Frame], out: Path, captions: Sequence[str], *, bounce: bool = True, columns: int = 4
) -> Path:
    """Write `frames` to `out` as a sheet or (by suffix) an animation; returns `out`."""
    if not frames:
        raise ValueError("no frames to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in ANIMATED_SUFFIXES:
        pictures = [_opened(frame.picture.data) for frame in frames]
        if bounce and len(pictures) > 2:
            pictures += pictures[-2:0:-1]
        pictures[0].save(
            out, save_all=True, append_images=pictures[1:], duration=FRAME_MS, loop=0, **_lossless(out)
        )
        return out
    tiles = []
    for frame, caption in zip(frames, captions, strict=True):
        nearest = frame.nearest[0] if frame.nearest else None
        right = nearest.thumbnail.data if nearest and nearest.thumbnail else None
        text = caption + (f"\nnearest: {nearest.path}" if nearest else "")
        tiles.append(SheetTile(frame.picture.data, right, text))
    contact_sheet(tiles, columns=columns).save(out)
    return out


def write_grid(rows: Sequence[tuple[str, Sequence[Frame]]], out: Path, cell: int = 96) -> Path:
    """One row of decoded frames per (label, frames), e.g. a traversal: label above each row."""
    width = max(len(frames) for _, frames in rows) * cell
    label_height = 14
    sheet = Image.new("RGB", (width, len(rows) * (cell + label_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, (label, frames) in enumerate(rows):
        top = row * (cell + label_height)
        draw.text((2, top + 1), label, fill=(20, 20, 20))
        for column, frame in enumerate(frames):
            tile = _opened(frame.picture.data).resize((cell, cell), Image.Resampling.LANCZOS)
            sheet.paste(tile, (column * cell, top + label_height))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _opened(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _lossless(out: Path) -> dict[str, object]:
    return {"lossless": True} if out.suffix.lower() == ".webp" else {}
