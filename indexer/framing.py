"""Trim flat bands along an image's edges: added frames and letterbox bars.

A copy of a photo saved with a frame around it, or with black bars above and below, is still the same
picture; untrimmed, the model sees the band as part of the scene and the copy lands far from the original.
A band is a run of lines from one edge inward that are nearly all one colour (the median of the outermost
line) and that ends in a sharp edge, with a band of the same colour along the opposite edge. These
conditions keep the cut where it would be in any copy of the picture: a sky or a wall fades out rather
than stopping, a flat stripe of a graphic lies along one edge only, and a cut that moved by a few per
cent between a picture and its re-encoded copy would cost more than the band itself. Runs longer than
`MAX_BAND_SHARE` of the side are scene, not a band, and stay. Each side is trimmed up to twice (a frame
around letterbox bars). Only lines near the edges are read, so a photo without bands costs a few rows.
"""

from __future__ import annotations

import numpy as np

BAND_TOLERANCE = 28  # largest per-channel difference from the band colour that still counts as the band
BAND_LINE_SHARE = 0.95  # share of a line that must be the band colour for the line to be part of the band
EDGE_LINES = 3  # a band ends in a sharp edge: within this many lines ...
EDGE_SHARE = 0.3  # ... at most this share of a line is still the band colour
MAX_BAND_SHARE = 0.25  # longest band, as a share of the side it runs across
PASSES = 2
_CHUNK = 8  # lines compared per step


def trim_flat_bands(pixels: np.ndarray) -> np.ndarray:
    """Return the view of an H x W x 3 uint8 image inside the flat bands along its edges.

    Bands come in opposite pairs of one colour (top and bottom, left and right), as frames and letterbox
    bars do; a flat stripe along one edge is part of the scene. Returns `pixels` itself when nothing is
    trimmed.
    """
    top, bottom, left, right = 0, pixels.shape[0], 0, pixels.shape[1]
    for _ in range(PASSES):
        inner = pixels[top:bottom, left:right]
        rows = _paired_depths(inner, inner[::-1])
        columns = _paired_depths(inner.transpose(1, 0, 2), inner.transpose(1, 0, 2)[::-1])
        if rows == (0, 0) and columns == (0, 0):
            break
        top, bottom = top + rows[0], bottom - rows[1]
        left, right = left + columns[0], right - columns[1]
    if (top, bottom, left, right) == (0, pixels.shape[0], 0, pixels.shape[1]):
        return pixels
    return pixels[top:bottom, left:right]


def _paired_depths(lines: np.ndarray, opposite: np.ndarray) -> tuple[int, int]:
    """The band depths from two opposite edges, or (0, 0) unless both have a band of the same colour."""
    near, near_colour = _band(lines)
    far, far_colour = _band(opposite)
    if near == 0 or far == 0 or np.abs(near_colour - far_colour).max() > BAND_TOLERANCE:
        return 0, 0
    return near, far


def _band(lines: np.ndarray) -> tuple[int, np.ndarray]:
    """How many leading lines (axis 0) of `lines` form a band, and its colour; 0 when they do not, or
    when too many do."""
    count = lines.shape[0]
    limit = int(count * MAX_BAND_SHARE)
    colour = np.median(lines[0], axis=0).astype(np.int16) if lines.size else np.zeros(3, np.int16)
    if limit < 1 or lines.shape[1] < 2:
        return 0, colour
    for start in range(0, limit + 1, _CHUNK):
        shares = _near_share(lines[start : min(start + _CHUNK, limit + 1)], colour)
        below = np.flatnonzero(shares < BAND_LINE_SHARE)
        if below.size:
            depth = start + int(below[0])
            if depth == 0:
                return 0, colour
            edge = _near_share(lines[depth : depth + EDGE_LINES], colour)
            return (depth if edge.min() <= EDGE_SHARE else 0), colour
    return 0, colour  # the run goes past the limit: scene, not a band


def _near_share(lines: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per line, the share of its pixels within BAND_TOLERANCE of `colour` in every channel."""
    difference = np.abs(lines.astype(np.int16) - colour).max(axis=2)
    return (difference <= BAND_TOLERANCE).mean(axis=1)
