"""Tests for indexer.load: every case decodes a real file that the test writes with Pillow or by hand."""

from __future__ import annotations

import gc
import io
import os
import struct
import warnings
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from latentdex.errors import BadImage
from latentdex.indexer.load import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    DecodedImage,
    ImageExif,
    _to_rgb,
    fit_square,
    heic_supported,
    load_for_model,
    load_image,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = RED
    arr[:, width // 2 :] = BLUE
    return Image.fromarray(arr)


def _save(img: Image.Image, path: Path, **params: object) -> Path:
    img.save(path, **params)
    return path


def _opened(path: Path) -> tuple[str, int]:
    """(mode, frame count) as Pillow itself sees the file, to check the test wrote what it meant to."""
    with Image.open(path) as img:
        return img.mode, getattr(img, "n_frames", 1)


def _close(pixel: np.ndarray, colour: tuple[int, ...], tol: int = 24) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tol))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with almost no pixel data: it cannot be decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _rgb16_tiff(arr: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit-per-channel RGB TIFF (Pillow cannot write one)."""
    height, width, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    n_entries = 10
    bps_offset = 8 + 2 + 12 * n_entries + 4
    data_offset = bps_offset + 6
    short, long_ = 3, 4
    entries = [
        (256, short, 1, width),
        (257, short, 1, height),
        (258, short, 3, bps_offset),  # BitsPerSample 16,16,16 stored out of line
        (259, short, 1, 1),  # no compression
        (262, short, 1, 2),  # RGB
        (273, long_, 1, data_offset),
        (277, short, 1, 3),
        (278, short, 1, height),
        (279, long_, 1, len(data)),
        (284, short, 1, 1),  # chunky
    ]
    ifd = struct.pack("<H", n_entries)
    for tag, kind, count, value in entries:
        if kind == short and count == 1:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHH", 16, 16, 16) + data


# --- formats and inputs ---------------------------------------------------------------------------


def test_supported_formats() -> None:
    assert {"JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "MPO"} <= set(SUPPORTED_FORMATS)
    assert ("HEIF" in SUPPORTED_FORMATS) == heic_supported()
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize(
    ("fmt", "suffix", "params", "tol"),
    [
        ("PNG", ".png", {}, 0),
        ("BMP", ".bmp", {}, 0),
        ("TIFF", ".tif", {}, 0),
        ("GIF", ".gif", {}, 0),
        ("WEBP", ".webp", {"lossless": True}, 0),
        ("JPEG", ".jpg", {"quality": 95}, 24),
    ],
)
def test_round_trip(tmp_path: Path, fmt: str, suffix: str, params: dict[str, object], tol: int) -> None:
    path = _save(_halves(), tmp_path / f"img{suffix}", format=fmt, **params)
    out = load_image(path)
    assert isinstance(out, DecodedImage)
    assert (out.format, out.width, out.height) == (fmt, 40, 20)
    assert out.pixels.shape == (20, 40, 3) and out.pixels.dtype == np.uint8
    assert out.pixels.flags.c_contiguous and out.pixels.flags.writeable
    assert _close(out.pixels[10, 5], RED, tol) and _close(out.pixels[10, 35], BLUE, tol)
    assert out.exif == ImageExif(None, None, None)


def test_bytes_and_pathlike_inputs(tmp_path: Path) -> None:
    path = _save(_halves(), tmp_path / "a.png")
    from_bytes = load_image(path.read_bytes())
    from_str = load_image(str(path))
    assert np.array_equal(from_bytes.pixels, load_image(path).pixels)
    assert np.array_equal(from_bytes.pixels, from_str.pixels)


def test_unsupported_content_is_rejected(tmp_path: Path) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    )
    files = {
        "note.txt": b"hello, this is not an image\n",
        "pic.svg": svg.encode(),
        "noise.bin": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # Formats Pillow can read but we do not accept.
    _save(_halves(), tmp_path / "pic.ppm", format="PPM")
    _save(_halves(), tmp_path / "pic.pcx", format="PCX")
    for name in [*files, "pic.ppm", "pic.pcx"]:
        with pytest.raises(BadImage) as exc:
            load_image(tmp_path / name)
        assert exc.value.reason == "not a supported image format", name
    with pytest.raises(BadImage, match="not a supported image format"):
        load_image((tmp_path / "pic.ppm").read_bytes())


def test_empty_input(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImage, match="empty file"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(BadImage, match="empty image data"):
        load_image(b"")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BadImage, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(BadImage, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_permission_denied(tmp_path: Path) -> None:
    path = _save(_halves(), tmp_path / "locked.png")
    path.chmod(0)
    try:
        with pytest.raises(BadImage, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o600)


# --- size caps and corrupt data -------------------------------------------------------------------


def test_pixel_cap_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_header_only_png(5000, 5000))
    with pytest.raises(BadImage) as exc:
        load_image(path, max_pixels=1_000_000)
    assert exc.value.reason == "image has 25000000 pixels, over the cap of 1000000"
    # The same file really has no pixel data, so the cap above fired before any decoding was attempted.
    with pytest.raises(BadImage, match="corrupt or truncated"):
        load_image(path)


def test_pixel_cap_on_real_image(tmp_path: Path) -> None:
    path = _save(Image.new("L", (1200, 1000), 7), tmp_path / "big.png")
    with pytest.raises(BadImage, match="over the cap of 1000000"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=1_200_000).pixels.shape == (1000, 1200, 3)


@pytest.mark.skipif(Image.MAX_IMAGE_PIXELS is None, reason="Pillow's bomb guard is disabled in this process")
@pytest.mark.parametrize("factor", [1.5, 3.0], ids=["bomb-warning", "bomb-error"])
def test_pillow_decompression_bomb_guard_becomes_bad_image(factor: float) -> None:
    side = int((factor * Image.MAX_IMAGE_PIXELS) ** 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadImage, match="decompression bomb"):
            load_image(_header_only_png(side, side), max_pixels=10 * side * side)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_truncated_jpeg(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), tmp_path / "full.jpg").read_bytes()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(BadImage, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_corrupt_and_truncated_png(tmp_path: Path) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(_save(Image.fromarray(noise), tmp_path / "ok.png").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\xff" * 16
    with pytest.raises(BadImage, match="corrupt or truncated"):
        load_image(bytes(data))
    with pytest.raises(BadImage, match="corrupt or truncated"):
        load_image(bytes(data[: len(data) // 2]))


# --- orientation, modes and frames ----------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "red_row"), [(6, 0), (8, 39)])
def test_exif_orientation(tmp_path: Path, orientation: int, red_row: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(_halves(40, 20), tmp_path / "rot.jpg", quality=95, exif=exif)
    out = load_image(path)
    assert (out.width, out.height) == (20, 40)
    assert out.pixels.shape == (40, 20, 3)
    # 6 = rotate 90 clockwise: the red left half ends on top; 8 = counter-clockwise: at the bottom.
    assert _close(out.pixels[red_row, 10], RED)
    assert _close(out.pixels[39 - red_row, 10], BLUE)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[:, :2] = (0, 0, 0, 0)  # fully transparent black
    arr[:, 2:] = (255, 0, 0, 128)  # half-transparent red
    out = load_image(_save(Image.fromarray(arr), tmp_path / "a.png")).pixels
    assert tuple(out[0, 0]) == WHITE
    assert _close(out[0, 3], (255, 128, 128), tol=2)


def test_palette_modes(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 2))
    pal.putpalette([*RED, *GREEN] + [0] * 762)
    pal.putpixel((0, 0), 1)
    out = load_image(_save(pal, tmp_path / "p.png")).pixels
    assert tuple(out[0, 0]) == GREEN and tuple(out[1, 1]) == RED
    # Palette index 1 (green) transparent: it must come out white, not green.
    out = load_image(_save(pal, tmp_path / "pt.png", transparency=1)).pixels
    assert tuple(out[0, 0]) == WHITE and tuple(out[1, 1]) == RED
    out = load_image(_save(pal, tmp_path / "pt.gif", transparency=1)).pixels
    assert tuple(out[0, 0]) == WHITE and tuple(out[1, 1]) == RED


def test_greyscale_and_bilevel_modes(tmp_path: Path) -> None:
    grey = load_image(_save(Image.new("L", (3, 3), 77), tmp_path / "l.png")).pixels
    assert grey.shape == (3, 3, 3) and np.all(grey == 77)
    la = Image.merge("LA", [Image.new("L", (2, 1), 0), Image.frombytes("L", (2, 1), b"\x00\xff")])
    out = load_image(_save(la, tmp_path / "la.png")).pixels
    assert tuple(out[0, 0]) == WHITE and tuple(out[0, 1]) == (0, 0, 0)
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    out = load_image(_save(bits, tmp_path / "b.png")).pixels
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 1]) == WHITE


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_greyscale_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    out = load_image(_save(img, tmp_path / f"g16{suffix}")).pixels
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_32bit_int_and_float_tiffs_use_their_range(tmp_path: Path) -> None:
    sixteen = Image.fromarray(np.array([[0, 32768, 65535]], np.int32))
    wide = Image.fromarray(np.array([[-100_000, 0, 100_000]], np.int32))
    floats = Image.fromarray(np.array([[-1.0, 0.0, 1.0]], np.float32))
    assert (sixteen.mode, floats.mode) == ("I", "F")
    for name, img in {"i16": sixteen, "iwide": wide, "f": floats}.items():
        out = load_image(_save(img, tmp_path / f"{name}.tif")).pixels
        assert out[0, :, 1].tolist() == [0, 128, 255], name


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), tmp_path / "c.jpg", quality=95)
    assert _opened(path)[0] == "CMYK"
    assert _close(load_image(path).pixels[8, 8], (0, 255, 255))


def test_other_modes_from_tiff(tmp_path: Path) -> None:
    ycbcr = Image.new("RGB", (4, 4), RED).convert("YCbCr")
    lab = Image.merge("LAB", [Image.new("L", (4, 4), v) for v in (136, 208, 195)])  # ~ sRGB red
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (255, 0, 0, 0))
    pa = rgba.convert("PA")
    for name, img in {"ycbcr": ycbcr, "lab": lab, "pa": pa}.items():
        path = _save(img, tmp_path / f"{name}.tif")
        assert _opened(path)[0] == img.mode
        out = load_image(path).pixels
        assert _close(out[2, 2], RED, tol=12), name
    assert tuple(load_image(tmp_path / "pa.tif").pixels[0, 0]) == WHITE


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("La", (128, 128), (255, 255, 255)),
        ("RGBa", (128, 0, 0, 128), (255, 127, 127)),
        ("HSV", (0, 255, 255), RED),
    ],
)
def test_modes_without_a_writable_file_format(
    mode: str, value: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    # No format we accept can store these modes, so convert an in-memory image directly.
    out = _to_rgb(Image.new(mode, (2, 2), value))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert _close(out[0, 0], expected, tol=2)


def test_animated_gif_and_webp_give_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, GREEN, BLUE)]
    for suffix in (".gif", ".webp"):
        path = _save(
            frames[0], tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:], duration=50
        )
        assert _opened(path)[1] == 3
        assert _close(load_image(path).pixels[4, 4], RED, tol=8), suffix


def test_mpo_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in (RED, GREEN)]
    path = _save(frames[0], tmp_path / "p.mpo", format="MPO", save_all=True, append_images=frames[1:])
    out = load_image(path)
    assert (out.format, out.width, out.height) == ("MPO", 64, 48)
    assert _close(out.pixels[20, 20], RED)


def test_multipage_tiff_and_16bit_rgb_tiff(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (8, 8), c) for c in (GREEN, RED)]
    path = _save(pages[0], tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert tuple(load_image(path).pixels[4, 4]) == GREEN
    arr = np.zeros((2, 3, 3), np.uint16)
    arr[0, 0] = (65535, 32768, 0)
    (tmp_path / "rgb16.tif").write_bytes(_rgb16_tiff(arr))
    out = load_image(tmp_path / "rgb16.tif")
    assert (out.format, out.pixels.shape) == ("TIFF", (2, 3, 3))
    assert tuple(out.pixels[0, 0]) == (255, 128, 0) and tuple(out.pixels[1, 2]) == (0, 0, 0)


@pytest.mark.skipif(not heic_supported(), reason="pillow_heif is not installed")
def test_heic(tmp_path: Path) -> None:
    path = tmp_path / "photo.heic"
    try:
        _halves(64, 32).save(path, format="HEIF", quality=95)
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        pytest.skip(f"pillow_heif has no HEIF encoder here: {e}")
    out = load_image(path)
    assert (out.format, out.width, out.height, out.pixels.shape) == ("HEIF", 64, 32, (32, 64, 3))
    assert _close(out.pixels[16, 8], RED, tol=40) and _close(out.pixels[16, 56], BLUE, tol=40)


@pytest.mark.skipif("AVIF" not in SUPPORTED_FORMATS, reason="no AVIF decoder")
def test_avif(tmp_path: Path) -> None:
    path = tmp_path / "photo.avif"
    try:
        _halves(64, 32).save(path, format="AVIF", quality=95)
    except (OSError, KeyError, ValueError) as e:
        pytest.skip(f"no AVIF encoder here: {e}")
    out = load_image(path.read_bytes())
    assert (out.format, out.pixels.shape) == ("AVIF", (32, 64, 3))
    assert _close(out.pixels[16, 8], RED, tol=40)


# --- JPEG draft, fit_square and load_for_model ----------------------------------------------------


def test_jpeg_draft_keeps_shorter_side_and_reports_source_size(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (2000, 1500), (200, 30, 30)), tmp_path / "big.jpg")
    small = load_image(path, min_side=64)
    assert (small.width, small.height) == (2000, 1500)
    assert 128 <= min(small.pixels.shape[:2]) < 1500
    assert small.pixels.shape[1] > small.pixels.shape[0]
    assert _close(small.pixels[10, 10], (200, 30, 30))
    full = load_image(path)
    assert full.pixels.shape == (1500, 2000, 3)
    with pytest.raises(ValueError):
        load_image(path, min_side=0)


def test_jpeg_draft_with_rotation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.new("RGB", (2000, 1500), RED), tmp_path / "rot.jpg", exif=exif)
    out = load_image(path, min_side=64)
    assert (out.width, out.height) == (1500, 2000)
    height, width = out.pixels.shape[:2]
    assert height > width >= 128 and width < 1500


def test_min_side_does_not_shrink_png(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (400, 300)), tmp_path / "a.png")
    assert load_image(path, min_side=16).pixels.shape == (300, 400, 3)


@pytest.mark.parametrize("transpose", [False, True], ids=["wide", "tall"])
def test_fit_square_keeps_the_centre(transpose: bool) -> None:
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:] = RED
    arr[:, 90:210] = GREEN  # the centre square is columns 100..200
    if transpose:
        arr = np.ascontiguousarray(arr.transpose(1, 0, 2))
    out = fit_square(arr, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert all(_close(out[r, c], GREEN, tol=8) for r in (0, 32, 63) for c in (0, 32, 63))


def test_fit_square_upscales_and_validates() -> None:
    tiny = np.full((10, 10, 3), (10, 200, 30), np.uint8)
    out = fit_square(tiny, 64)
    assert out.shape == (64, 64, 3) and np.all(np.abs(out.astype(int) - (10, 200, 30)) <= 1)
    with pytest.raises(ValueError):
        fit_square(tiny.astype(np.float32), 64)
    with pytest.raises(ValueError):
        fit_square(tiny[..., 0], 64)
    with pytest.raises(ValueError):
        fit_square(tiny, 0)


def test_load_for_model(tmp_path: Path) -> None:
    path = _save(_halves(300, 200), tmp_path / "a.jpg", quality=95)
    out = load_for_model(path, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert _close(out[16, 2], RED) and _close(out[16, 29], BLUE)
    with pytest.raises(BadImage, match="over the cap"):
        load_for_model(path, 32, max_pixels=1000)


# --- EXIF -----------------------------------------------------------------------------------------


def _jpeg_with_exif(path: Path, tags: dict[int, object], exif_ifd: dict[int, object]) -> Path:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    sub = exif.get_ifd(0x8769)
    for tag, value in exif_ifd.items():
        sub[tag] = value
    return _save(Image.new("RGB", (8, 8)), path, exif=exif)


def test_exif_fields(tmp_path: Path) -> None:
    path = _jpeg_with_exif(
        tmp_path / "e.jpg",
        {0x010F: "Canon", 0x0110: "EOS 5D", 0x0132: "2000:01:01 00:00:00"},
        {0x9003: "2021:07:04 12:30:00"},
    )
    assert load_image(path).exif == ImageExif(datetime(2021, 7, 4, 12, 30), "Canon", "EOS 5D")


def test_exif_fallbacks_and_cleanup(tmp_path: Path) -> None:
    path = _jpeg_with_exif(
        tmp_path / "f.jpg",
        {0x010F: b"  NIKON\x00\x00", 0x0110: "  D750 \x00\x00", 0x0132: "2019:01:02 03:04:05"},
        {0x9003: "not a date"},
    )
    assert load_image(path).exif == ImageExif(datetime(2019, 1, 2, 3, 4, 5), "NIKON", "D750")
    path = _jpeg_with_exif(
        tmp_path / "g.jpg", {0x010F: "\x00 ", 0x0132: "2020:13:45 99:00:00"}, {0x9003: "0000:00:00 00:00:00"}
    )
    assert load_image(path).exif == ImageExif(None, None, None)


def test_corrupt_exif_does_not_reject_the_image() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(
        buf, format="JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns "Corrupt EXIF data"
        out = load_image(buf.getvalue())
    assert out.exif == ImageExif(None, None, None)
    assert _close(out.pixels[4, 4], RED)


# --- resources ------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def _open_files_under(folder: Path) -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed while we looked
    return [t for t in targets if t.startswith(str(folder))]


def test_no_file_handles_leak(tmp_path: Path) -> None:
    good = _save(_halves(), tmp_path / "a.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:200])
    other = _save(_halves(), tmp_path / "a.ppm", format="PPM")
    gc.collect()  # earlier tests' garbage must not warn inside our window
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)  # a file closed only by GC warns
        for _ in range(5):
            load_image(good, min_side=4)
            for path in (bad, other, tmp_path):
                with pytest.raises(BadImage):
                    load_image(path)
        gc.collect()
    # Only descriptors on our files count: other tests' pools and threads may open and close their own.
    assert _open_files_under(tmp_path) == []
    ours = [w for w in caught if issubclass(w.category, ResourceWarning) and str(tmp_path) in str(w.message)]
    assert not ours


def test_a_white_drawing_on_transparency_is_composited_on_black() -> None:
    white = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(white).ellipse((10, 10, 30, 30), fill=(255, 255, 255, 255))
    out = _to_rgb(white)
    assert out[0, 0].tolist() == [0, 0, 0] and out[20, 20].tolist() == [255, 255, 255]
    dark = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(dark).ellipse((10, 10, 30, 30), fill=(200, 0, 0, 255))
    out = _to_rgb(dark)  # a drawing that shows on white stays on white
    assert out[0, 0].tolist() == [255, 255, 255] and out[20, 20].tolist() == [200, 0, 0]
    assert _to_rgb(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))[0, 0].tolist() == [255, 255, 255]
