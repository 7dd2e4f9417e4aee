"""The perceptual hash each indexed image keeps beside its latent: 64-bit pHash (`imagehash.phash`).

pHash sees an image whole, at 32x32 grey: it survives re-encoding, resizing, colour changes and a
caption strip, and differs by few bits under a mild crop, where the 64-px latent of a square crop
moves further. `indexer.duplicates` links two images whose hashes are close *and* whose latents agree
loosely; neither signal alone reaches the recall of both at the same precision
(`python -m bench --only duplicates_quality`).

The catalog keeps the hash as a signed 64-bit integer (SQL has no unsigned type); arrays in memory are
uint64.
"""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

HASH_BITS = 64
_SIGN = 1 << 63


def perceptual_hash(pixels: np.ndarray) -> int:
    """pHash of an (H, W, 3) uint8 image as an unsigned 64-bit integer."""
    bits = np.asarray(imagehash.phash(Image.fromarray(pixels).convert("L")).hash, dtype=bool).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def to_stored(value: int | None) -> int | None:
    """An unsigned hash as the signed integer the catalog holds."""
    return None if value is None else value - (1 << 64) if value >= _SIGN else value


def from_stored(values: np.ndarray) -> np.ndarray:
    """Signed stored hashes (int64) as uint64, bit for bit."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def hamming(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes, element-wise."""
    return np.bitwise_count(np.asarray(first, np.uint64) ^ np.asarray(second, np.uint64))
