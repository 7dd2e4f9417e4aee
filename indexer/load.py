"""Decode one image (file or bytes) into an RGB uint8 array; the only place latentdex calls Pillow to decode.

Training, indexing and serving all go through `load_image` / `load_for_model`, so every input gets the
same format whitelist, pixel cap, EXIF orientation, mode conversion and error reporting (`BadImage`).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from latentdex.errors import BadImage
from latentdex.indexer.framing import trim_flat_bands

try:
    import pillow_heif
except ImportError:
    _HEIF_REGISTERED = False
else:
    pillow_heif.register_heif_opener()
    _HEIF_REGISTERED = True

# Pillow >= 11.2 decodes AVIF itself; before that only an older pillow_heif could register it.
_AVIF_SUPPORTED = "avif" in features.modules and bool(features.check_module("avif"))
if not _AVIF_SUPPORTED and _HEIF_REGISTERED and hasattr(pillow_heif, "register_avif_opener"):
    pillow_heif.register_avif_opener()
    _AVIF_SUPPORTED = True

DEFAULT_MAX_PIXELS: int = 100_000_000
# Our cap is checked from the header before any decoding; Pillow's own guard (warning above this value,
# error above twice it) is aligned with it so it never rejects an image our default cap accepts.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
SUPPORTED_FORMATS: tuple[str, ...] = (
    ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "MPO")
    + (("HEIF",) if _HEIF_REGISTERED else ())
    + (("AVIF",) if _AVIF_SUPPORTED else ())
)

# Pillow has no MPO opener: the JPEG opener returns an MPO image itself, and naming "MPO" in
# Image.open(formats=...) raises KeyError for any file the earlier formats did not claim.
_OPEN_FORMATS = tuple(fmt for fmt in SUPPORTED_FORMATS if fmt != "MPO")

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132
_MAKE = 0x010F
_MODEL = 0x0110
_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90 degrees
_FLAT_LEVELS = 8  # grey levels within which a composited picture counts as one colour

# What Pillow's decoders raise on malformed input; around open + load these mean "bad file", not "bug".
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def heic_supported() -> bool:
    """Return True when pillow_heif is installed and its HEIF opener is registered with Pillow."""
    return _HEIF_REGISTERED


@dataclass(frozen=True)
class ImageExif:
    """The few EXIF fields latentdex keeps; each is None when absent or unparseable."""

    capture_time: datetime | None
    camera_make: str | None
    camera_model: str | None


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays with == is ambiguous
class DecodedImage:
    """A decoded photo: H x W x 3 uint8 RGB pixels plus the source's oriented size, format and EXIF."""

    pixels: np.ndarray
    width: int
    height: int
    format: str
    exif: ImageExif


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode a file path or encoded bytes into an upright RGB image.

    Input: a path, or the encoded bytes of a JPEG/PNG/WEBP/GIF/TIFF/BMP/MPO (and HEIF/AVIF where available).
    `min_side`, when given, lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long as the shorter side of
    `pixels` stays >= 2 * min_side. `max_pixels` caps width * height, checked from the header before decoding.
    Output: a `DecodedImage`; `width`/`height` are the full source size after EXIF orientation; only the
    first frame of animated or multi-page files is decoded.
    Errors: `BadImage` (with `.reason`) for anything unreadable, unsupported, corrupt, truncated or too large;
    `ValueError` for a non-positive `min_side` or `max_pixels`.
    """
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    with _open_source(source) as fp:
        try:
            # Pillow's own bomb guard (Image.MAX_IMAGE_PIXELS) still applies on top of max_pixels;
            # its warning must become an error here, not a log line. catch_warnings is
            # process-wide before Python 3.14, so concurrent calls may briefly share this one filter.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fp, formats=_OPEN_FORMATS) as img:
                    return _decode(img, min_side, max_pixels)
        except UnidentifiedImageError as e:
            raise BadImage("not a supported image format") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise BadImage(f"image too large (decompression bomb guard): {e}") from e
        except MemoryError as e:
            raise BadImage("image too large to decode in memory") from e
        except _DECODE_ERRORS as e:
            raise BadImage(f"corrupt or truncated image: {e}") from e


def fit_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize an H x W x 3 uint8 image so its shorter side is `size`, then centre-crop to size x size.

    Downscaling uses LANCZOS with a reducing gap (fast and alias-free), upscaling BICUBIC.
    Output: a new C-contiguous size x size x 3 uint8 array.
    Errors: `ValueError` for a bad shape, dtype or size.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError(f"expected a non-empty H x W x 3 uint8 array, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    # Resizing only the centred square box is the same as resize-then-crop, without the wasted work.
    box = (left, top, left + side, top + side)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if side > size:
        out = image.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    else:
        out = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.array(out, dtype=np.uint8)


def model_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The model's view of a decoded image: flat edge bands trimmed (`trim_flat_bands`), then `fit_square`."""
    return fit_square(trim_flat_bands(pixels), size)


def load_for_model(
    source: str | os.PathLike[str] | bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Load `source` (path or bytes) as a size x size x 3 uint8 RGB model input.

    Same as `model_square(load_image(source, min_side=size).pixels, size)`; raises `BadImage` as `load_image`.
    """
    return model_square(load_image(source, min_side=size, max_pixels=max_pixels).pixels, size)


@contextmanager
def _open_source(source: str | os.PathLike[str] | bytes) -> Iterator[BinaryIO]:
    """Yield a readable binary stream for a path or bytes, mapping filesystem errors to BadImage."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise BadImage("empty image data")
        yield io.BytesIO(source)
        return
    try:
        fp = open(source, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError as e:
        raise BadImage(f"file not found: {source}") from e
    except IsADirectoryError as e:
        raise BadImage(f"is a directory, not an image file: {source}") from e
    except PermissionError as e:
        raise BadImage(f"permission denied: {source}") from e
    except OSError as e:
        raise BadImage(f"cannot read file {source}: {e.strerror or e}") from e
    with fp:
        info = os.fstat(fp.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadImage(f"not a regular file: {source}")
        if info.st_size == 0:
            raise BadImage(f"empty file: {source}")
        yield fp


def _decode(img: Image.Image, min_side: int | None, max_pixels: int) -> DecodedImage:
    """Check the header size against the cap, then decode, orient and convert the first frame."""
    width, height = img.size
    if width * height > max_pixels:
        raise BadImage(f"image has {width * height} pixels, over the cap of {max_pixels}")
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    fmt = img.format or "unknown"
    if min_side is not None and fmt in ("JPEG", "MPO"):
        # A square request makes draft's scale depend only on the shorter side, so EXIF rotation is moot.
        img.draft("RGB", (2 * min_side, 2 * min_side))
    img.load()
    exif = img.getexif()
    if exif.get(_ORIENTATION) in _SWAPS_AXES:
        width, height = height, width
    ImageOps.exif_transpose(img, in_place=True)
    return DecodedImage(_to_rgb(img), width, height, fmt, _read_exif(exif))


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an H x W x 3 uint8 RGB array. Transparency is composited on white, or on
    black where white would leave nothing to see (a white drawing on transparency)."""
    if img.mode == "F" or img.mode.startswith("I"):
        grey = _scale_to_uint8(img)
        return np.repeat(grey[:, :, np.newaxis], 3, axis=2)
    if img.mode == "La":  # Pillow cannot go from premultiplied La straight to RGBA
        img = img.convert("LA")
    if img.has_transparency_data:
        drawn = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), drawn)
        low, high = img.convert("L").getextrema()
        alpha_low, alpha_high = drawn.getchannel("A").getextrema()
        if high - low <= _FLAT_LEVELS and alpha_high - alpha_low > _FLAT_LEVELS:
            img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), drawn)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # np.asarray would be read-only


def _scale_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16/32-bit integer or float greyscale image to 0..255 (Pillow's convert("L") would clip)."""
    values = np.asarray(img).astype(np.float32)
    if img.mode == "F":
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        values = np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo)
    elif img.mode == "I":
        lo, hi = float(values.min()), float(values.max())
        if lo >= 0 and hi <= 65535:  # most "I" images are 16-bit data widened by Pillow
            lo, hi = 0.0, 65535.0
    else:  # I;16, I;16B, I;16L, I;16N
        lo, hi = 0.0, 65535.0
    values -= lo
    values *= (255.0 / (hi - lo)) if hi > lo else 0.0
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _read_exif(exif: Image.Exif) -> ImageExif:
    """Pull capture time, make and model out of EXIF; malformed values become None, never an error."""
    try:
        exif_ifd = exif.get_ifd(_EXIF_IFD)
    except _DECODE_ERRORS:
        exif_ifd = {}
    return ImageExif(
        capture_time=_parse_time(exif_ifd.get(_DATETIME_ORIGINAL)) or _parse_time(exif.get(_DATETIME)),
        camera_make=_clean_text(exif.get(_MAKE)),
        camera_model=_clean_text(exif.get(_MODEL)),
    )


def _clean_text(value: object) -> str | None:
    """Return an EXIF ASCII value without NULs and surrounding whitespace, or None if empty or not text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip() or None


def _parse_time(value: object) -> datetime | None:
    """Parse an EXIF "YYYY:MM:DD HH:MM:SS" timestamp (also with dashes) into a naive datetime."""
    text = _clean_text(value)
    if text is None:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text[:19], pattern)
        except ValueError:
            continue
    return None
