"""A contact sheet of a query's answer: the query, then per match its original and its decoded preview.

Each tile is two square cells side by side (left: the original file's thumbnail, right: the VAE's decoding
of the stored latent) with a caption under them (rank, distance, path). The first tile is the query
itself and the model's reconstruction of it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
PLACEHOLDER = (225, 225, 225)
TEXT = (20, 20, 20)
GAP = 6
CAPTION_LINES = 2


@dataclass(frozen=True)
class SheetTile:
    """Two pictures (encoded bytes, or None for a grey placeholder) and a caption of up to two lines."""

    left: bytes | None
    right: bytes | None
    caption: str


def contact_sheet(tiles: list[SheetTile], cell: int = 128, columns: int = 4) -> Image.Image:
    """Lay `tiles` out row by row, `columns` per row, each picture fitted into a `cell`-px square."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    font = _font(max(10, cell // 11))
    line_height = _line_height(font) + 2
    tile_w, tile_h = 2 * cell + GAP, cell + CAPTION_LINES * line_height + GAP
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (tile_w + GAP) + GAP, rows * (tile_h + GAP) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, tile in enumerate(tiles):
        x = GAP + (index % columns) * (tile_w + GAP)
        y = GAP + (index // columns) * (tile_h + GAP)
        for offset, picture in ((0, tile.left), (cell + GAP, tile.right)):
            sheet.paste(_fitted(picture, cell), (x + offset, y))
        for line_number, line in enumerate(_wrap(tile.caption, draw, font, tile_w)):
            draw.text((x, y + cell + 3 + line_number * line_height), line, fill=TEXT, font=font)
    return sheet


def group_rows(rows: list[list[SheetTile]], cell: int = 128, columns: int = 8) -> Image.Image:
    """One row per group, each tile one picture (its `left`) over its caption; a group longer than
    `columns` shows its first `columns` tiles. A rule separates the rows."""
    if not rows:
        raise ValueError("a sheet needs at least one row")
    font = _font(max(10, cell // 11))
    line_height = _line_height(font) + 2
    tile_w, tile_h = cell, cell + CAPTION_LINES * line_height + GAP
    width = min(columns, max(len(row) for row in rows)) * (tile_w + GAP) + GAP
    sheet = Image.new("RGB", (width, len(rows) * (tile_h + 2 * GAP) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for row_number, row in enumerate(rows):
        y = GAP + row_number * (tile_h + 2 * GAP)
        if row_number:
            draw.line((0, y - GAP, width, y - GAP), fill=PLACEHOLDER, width=1)
        for index, tile in enumerate(row[:columns]):
            x = GAP + index * (tile_w + GAP)
            sheet.paste(_fitted(tile.left, cell), (x, y))
            for line_number, line in enumerate(_wrap(tile.caption, draw, font, tile_w)):
                draw.text((x, y + cell + 3 + line_number * line_height), line, fill=TEXT, font=font)
    return sheet


def _fitted(data: bytes | None, cell: int) -> Image.Image:
    """The picture scaled to fit the cell, centred on a white square; a grey square without a picture."""
    square = Image.new("RGB", (cell, cell), BACKGROUND if data else PLACEHOLDER)
    if not data:
        return square
    try:
        with Image.open(io.BytesIO(data)) as opened:
            picture = opened.convert("RGB")
    except (OSError, ValueError):
        square.paste(PLACEHOLDER, (0, 0, cell, cell))
        return square
    scale = cell / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.LANCZOS)
    square.paste(picture, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return square


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - box[1])


def _wrap(
    text: str, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int
) -> list[str]:
    """Up to CAPTION_LINES lines that fit `width`; a long path keeps its end (the file name)."""
    lines = []
    for raw in text.splitlines() or [""]:
        line = raw
        if draw.textlength(line, font=font) > width:
            while line and draw.textlength("…" + line, font=font) > width:
                line = line[1:]
            line = "…" + line
        lines.append(line)
    return lines[:CAPTION_LINES]
