"""The perceptual hashes each indexed image keeps beside its latent: 64-bit pHashes (`imagehash.phash`)
of the whole picture and of five regions of it (its four corners and its centre, 85% of each side).

pHash sees a picture at 32x32 grey: it survives re-encoding, resizing and colour changes, and differs by
few bits under a mild crop, where the 64-px latent of a square crop moves further. The regions add what one
whole-picture hash misses: a caption strip or a date stamp over one edge leaves the regions away from it
unchanged, and a small rotation changes a region less than the whole. Two pictures are compared region by
region (whole with whole, top-left with top-left, ...), never one region against another, so a burst frame
panned across the scene does not match a shifted region of its neighbour. `indexer.duplicates` links two
images whose closest such pair of hashes is within a few bits *and* whose latents agree loosely
(`python -m bench --only duplicates_quality`).

A flat region (one colour: the white margin of a drawing, a blank strip) has no low-frequency
structure: every DCT coefficient but the mean ties at the median, and its pHash has one bit set (or
none) whatever else the picture holds. Two such hashes say nothing about whether the pictures agree, so
`closest_bits` never counts them: two different drawings sharing a white corner, or two flags of vertical
stripes, are not linked by it.

The catalog keeps the whole picture's hash as a signed 64-bit integer (SQL has no unsigned type) and the
five regions' as 40 bytes, little-endian; arrays in memory are uint64, one row of HASHES per image.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

REGION_SHARE = 0.85
HASH_BITS = 64
# A pHash thresholds 64 DCT coefficients at their median, so a picture with structure has ~32 bits set;
# this few or fewer means most coefficients tie at zero: a flat region (1 bit, or none: exactly flat).
FLAT_BITS = 8
HASHES = 6  # the whole picture, then the top-left, top-right, bottom-left, bottom-right and centre regions
_SIGN = 1 << 63


def perceptual_hashes(pixels: np.ndarray) -> np.ndarray:
    """pHashes of an (H, W, 3) uint8 image and of its five regions: (HASHES,) uint64."""
    grey = Image.fromarray(pixels).convert("L")
    width, height = grey.size
    region_width, region_height = max(1, round(width * REGION_SHARE)), max(1, round(height * REGION_SHARE))
    left, top = (width - region_width) // 2, (height - region_height) // 2
    right, bottom = width - region_width, height - region_height
    boxes = [
        (0, 0, width, height),
        (0, 0, region_width, region_height),
        (right, 0, width, region_height),
        (0, bottom, region_width, height),
        (right, bottom, width, height),
        (left, top, left + region_width, top + region_height),
    ]
    return np.array([picture_phash(grey.crop(box)) for box in boxes], dtype=np.uint64)


def picture_phash(image: Image.Image) -> int:
    """pHash of one picture (any mode: imagehash greys it) as an unsigned 64-bit integer."""
    return hash_as_int(imagehash.phash(image))


def hash_as_int(value: imagehash.ImageHash) -> int:
    """An `imagehash` hash as the unsigned integer of its bits, the first bit highest."""
    bits = np.asarray(value.hash, dtype=bool).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def to_stored(hashes: np.ndarray | None) -> tuple[int | None, bytes | None]:
    """An image's hashes as the catalog holds them: (the whole picture's as a signed integer, the regions'
    as bytes)."""
    if hashes is None:
        return None, None
    whole = int(hashes[0])
    return whole - (1 << 64) if whole >= _SIGN else whole, np.asarray(hashes[1:], "<u8").tobytes()


def from_stored(whole: np.ndarray, regions: list[bytes]) -> np.ndarray:
    """(n,) signed whole-picture hashes and n region blobs as (n, HASHES) uint64, bit for bit."""
    out = np.zeros((len(regions), HASHES), np.uint64)
    out[:, 0] = np.asarray(whole, dtype=np.int64).view(np.uint64)
    if regions:
        out[:, 1:] = np.frombuffer(b"".join(regions), "<u8").reshape(len(regions), HASHES - 1)
    return out


def closest_bits(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise: the fewest differing bits over the same-place pairs of hashes of two (n, HASHES) arrays,
    counting a pair where either hash is flat as wholly different (HASH_BITS)."""
    first, second = np.asarray(first, np.uint64), np.asarray(second, np.uint64)
    bits = np.bitwise_count(first ^ second)
    flat = (np.bitwise_count(first) <= FLAT_BITS) | (np.bitwise_count(second) <= FLAT_BITS)
    return np.where(flat, np.uint8(HASH_BITS), bits).min(axis=-1)
