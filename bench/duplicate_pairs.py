"""The duplicate-detection benchmark's pairs: same-picture copies and different-picture look-alikes.

Items are square crops of the eval-split photos and whole eval-split clip-art files, at source
resolution (capped by `bench.alterations.cap_source`). A positive pair is an item and an altered copy of
it, made with Pillow and re-encoded (JPEG when "jpeg" is among the ops, else PNG) the way a copy saved
by another program would be, then decoded with `latentdex.indexer.load` as the indexer does. A negative
pair is two different pictures: neighbouring crops of one photo (30-60% overlap), burst-like frames of
one photo (shifted by 10-20% of the side with a small zoom difference), or two random items.

`plan_pairs` plans everything in the main process from the sources' header sizes (pixel boxes, ops and
seeds); `render_images` decodes each source once per job in worker processes and returns, per planned
image, its model input, its 64-bit pHash and dHash (`imagehash`, on the source-resolution image), the
whole and region pHashes the indexer keeps (`indexer.perceptual_hash`, on the same image) and the local
features of the duplicate finder's region check (`indexer.region_match`, on the same image).
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from bench.alterations import cap_source
from bench.datasets import MAX_SOURCE_PIXELS
from latentdex.errors import BadImage
from latentdex.indexer.load import load_for_model, load_image, model_square
from latentdex.indexer.perceptual_hash import HASHES, hash_as_int, perceptual_hashes, picture_phash
from latentdex.indexer.region_match import local_features
from latentdex.indexer.region_rule import LocalFeatures

# Positive kinds; "colour" is one of brightness / contrast / saturation, "combo" two distinct other kinds.
ALTERATION_KINDS = ("jpeg", "resize", "crop", "colour", "rotate", "border", "caption", "combo")
SINGLE_KINDS = ALTERATION_KINDS[:-1]
COLOUR_OPS = ("brightness", "contrast", "saturation")
NEGATIVE_KINDS = ("neighbour_crop", "burst_frame", "random_photo", "random_clipart")
NEGATIVE_SHARES = (1 / 3, 1 / 3, 1 / 6, 1 / 6)  # neighbour and burst 1/3 each; random pairs 1/3 in all
SPLITS = ("calibration", "held_out")
GROUPS = ("photo", "clipart")

CROP_SCALE = (0.15, 0.55)  # item crop side as a share of the photo's shorter side (room for neighbours)
NEIGHBOUR_OVERLAP = (0.3, 0.6)  # shared area / crop area of two neighbouring crops
BURST_SHIFT = (0.10, 0.20)  # centre shift of a burst frame, as a share of the crop side
BURST_ZOOM = (0.03, 0.10)  # side ratio difference of a burst frame (either way)
JPEG_QUALITY = (50, 90)
RESIZE_SHARE = (0.4, 0.7)  # side after resizing, as a share of the side before
CROP_AREA = (0.80, 0.95)  # area kept by the crop alteration
COLOUR_CHANGE = (0.10, 0.20)  # +- enhancement factor change
ROTATE_DEGREES = 3.0
BORDER_SHARE = (0.05, 0.10)  # border width as a share of the shorter side
CAPTION_SHARE = (0.10, 0.15)  # caption strip height as a share of the height
CAPTIONS = (
    "Summer 2019",
    "IMG_4821.JPG",
    "Happy birthday!",
    "(c) Photo Club",
    "Day 3 - the lake",
    "DSC01377",
)
HASH_BITS = 64
CHUNK = 80  # planned images per worker job (a photo is decoded once per job)


@dataclass(frozen=True)
class PairSource:
    """One image file: a photo (items are crops) or a clip-art file (the item is the whole image)."""

    path: str
    relative: str
    group: str  # one of GROUPS
    split: str  # one of SPLITS
    width: int
    height: int


@dataclass(frozen=True)
class ImageSpec:
    """One planned image: a crop box of a source (None: the whole image), optionally altered."""

    source: int
    box: tuple[int, int, int, int] | None  # left, top, right, bottom in the decoded source
    ops: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class Pair:
    """Two planned images (indices into the image list) and what relates them."""

    a: int
    b: int
    positive: bool
    kind: str  # an ALTERATION_KINDS entry for positives, a NEGATIVE_KINDS entry for negatives
    ops: str  # the applied alterations joined by "+" ("" for negatives)
    group: str
    split: str


@dataclass(frozen=True)
class PairPlan:
    """Every image to render and every pair over them."""

    images: list[ImageSpec]
    pairs: list[Pair]


@dataclass
class RenderedImages:
    """Per planned image: model input, pHash and dHash (64-bit), the pHashes the indexer keeps (whole and
    regions, `indexer.perceptual_hash`), its local features (`indexer.region_match`, from the
    source-resolution picture, as the duplicate finder reads them from a file), and whether it decoded."""

    inputs: np.ndarray  # (N, S, S, 3) uint8; zeros where `ok` is False
    phash: np.ndarray  # (N,) uint64
    dhash: np.ndarray  # (N,) uint64
    kept_hashes: np.ndarray  # (N, HASHES) uint64
    ok: np.ndarray  # (N,) bool
    errors: list[tuple[str, str]]  # (source, reason), first few
    features: list[LocalFeatures | None]  # the region check's local features; None where not `ok`


def assign_splits(count: int, rng: np.random.Generator) -> list[str]:
    """Half of `count` sources (rounded up) for calibration, the rest held out, at random."""
    order = rng.permutation(count)
    splits = [""] * count
    for rank, index in enumerate(order):
        splits[int(index)] = SPLITS[0] if rank < (count + 1) // 2 else SPLITS[1]
    return splits


def plan_pairs(sources: Sequence[PairSource], positives: int, negatives: int, seed: int) -> PairPlan:
    """Plan `positives` (half photo crops, half clip art; kinds in equal shares) and `negatives` pairs
    (kinds by NEGATIVE_SHARES), every pair inside one split."""
    rng = np.random.default_rng([seed, 7])
    planner = _Planner()
    photos = [i for i, s in enumerate(sources) if s.group == "photo"]
    clipart = [i for i, s in enumerate(sources) if s.group == "clipart"]
    photo_items: dict[str, list[int]] = {split: [] for split in SPLITS}
    clip_items: dict[str, list[int]] = {split: [] for split in SPLITS}

    # Positives: photo crops spread evenly over the photos, clip art on distinct files.
    photo_positives = positives // 2 if photos else 0
    clip_positives = positives - photo_positives if clipart else 0
    for n in range(photo_positives):
        source = photos[n % len(photos)]
        box = _random_box(sources[source], rng)
        item = planner.image(ImageSpec(source, box))
        photo_items[sources[source].split].append(item)
        _add_positive(planner, sources, item, ALTERATION_KINDS[n % len(ALTERATION_KINDS)], rng)
    chosen = rng.choice(len(clipart), min(clip_positives, len(clipart)), replace=False)
    for n, pick in enumerate(chosen):
        source = clipart[int(pick)]
        item = planner.image(ImageSpec(source, None))
        clip_items[sources[source].split].append(item)
        _add_positive(planner, sources, item, ALTERATION_KINDS[n % len(ALTERATION_KINDS)], rng)

    counts = [round(negatives * share) for share in NEGATIVE_SHARES]
    for kind, count in zip(NEGATIVE_KINDS, counts, strict=True):
        for n in range(count):
            if kind in ("neighbour_crop", "burst_frame") and photos:
                source = photos[n % len(photos)]
                first, second = _neighbours(sources[source], kind, rng)
                a = planner.image(ImageSpec(source, first))
                b = planner.image(ImageSpec(source, second))
                planner.pair(a, b, sources[source], kind)
            elif kind == "random_photo":
                split = SPLITS[n % len(SPLITS)]
                items = photo_items[split]
                a, b = _two_from_different_sources(planner, items, rng)
                if a is not None and b is not None:
                    planner.pair(a, b, sources[planner.images[a].source], kind)
            elif kind == "random_clipart":
                split = SPLITS[n % len(SPLITS)]
                files = [i for i in clipart if sources[i].split == split]
                if len(files) >= 2:
                    first, second = rng.choice(len(files), 2, replace=False)
                    a = planner.image(ImageSpec(files[int(first)], None))
                    b = planner.image(ImageSpec(files[int(second)], None))
                    planner.pair(a, b, sources[files[int(first)]], kind)
    return PairPlan(planner.images, planner.pairs)


class _Planner:
    """Collects unique image specs and the pairs over them."""

    def __init__(self) -> None:
        self.images: list[ImageSpec] = []
        self.pairs: list[Pair] = []
        self._index: dict[ImageSpec, int] = {}

    def image(self, spec: ImageSpec) -> int:
        if spec not in self._index:
            self._index[spec] = len(self.images)
            self.images.append(spec)
        return self._index[spec]

    def pair(self, a: int, b: int, source: PairSource, kind: str, ops: tuple[str, ...] = ()) -> None:
        positive = kind in ALTERATION_KINDS
        self.pairs.append(Pair(a, b, positive, kind, "+".join(ops), source.group, source.split))


def _add_positive(
    planner: _Planner, sources: Sequence[PairSource], item: int, kind: str, rng: np.random.Generator
) -> None:
    spec = planner.images[item]
    ops = choose_ops(kind, rng)
    copy = planner.image(ImageSpec(spec.source, spec.box, ops, int(rng.integers(2**31))))
    planner.pair(item, copy, sources[spec.source], kind, ops)


def _two_from_different_sources(
    planner: _Planner, items: list[int], rng: np.random.Generator
) -> tuple[int | None, int | None]:
    """Two items of different photos (tries a few times; None, None if the split has one photo)."""
    if len(items) < 2:
        return None, None
    for _ in range(20):
        first, second = rng.choice(len(items), 2, replace=False)
        a, b = items[int(first)], items[int(second)]
        if planner.images[a].source != planner.images[b].source:
            return a, b
    return None, None


def choose_ops(kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    """The alteration ops of a positive kind: "colour" picks one of COLOUR_OPS, "combo" two distinct
    single kinds (any JPEG step last)."""
    if kind == "combo":
        first, second = rng.choice(len(SINGLE_KINDS), 2, replace=False)
        kinds = sorted((SINGLE_KINDS[first], SINGLE_KINDS[second]), key=lambda k: k == "jpeg")
    else:
        kinds = [kind]
    return tuple(COLOUR_OPS[int(rng.integers(len(COLOUR_OPS)))] if k == "colour" else k for k in kinds)


def _random_box(source: PairSource, rng: np.random.Generator) -> tuple[int, int, int, int]:
    short = min(source.width, source.height)
    side = round(short * rng.uniform(*CROP_SCALE))
    left = int(rng.integers(0, source.width - side + 1))
    top = int(rng.integers(0, source.height - side + 1))
    return left, top, left + side, top + side


def _neighbours(
    source: PairSource, kind: str, rng: np.random.Generator
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Two square crops of one photo: neighbours (same side, overlap 30-60% of the area) or a burst
    (second centre shifted by 10-20% of the side in a random direction, side 3-10% larger or smaller)."""
    side = min(source.width, source.height) * rng.uniform(*CROP_SCALE)
    if kind == "neighbour_crop":
        overlap = rng.uniform(*NEIGHBOUR_OVERLAP)
        share_x = rng.uniform(overlap, 1.0)  # overlap = share_x * share_y, each in [overlap, 1]
        shares = [share_x, overlap / share_x]
        rng.shuffle(shares)
        shift = np.array([1 - shares[0], 1 - shares[1]]) * rng.choice([-1, 1], 2)
        zoom = 1.0
    else:
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(*BURST_SHIFT) * np.array([np.cos(angle), np.sin(angle)])
        zoom = 1 + rng.uniform(*BURST_ZOOM) * rng.choice([-1, 1])
    # Boxes around centres (0, 0) and shift, in units of `side`; then shrink to fit and place at random.
    boxes = np.array(
        [
            [-0.5, -0.5, 0.5, 0.5],
            [shift[0] - zoom / 2, shift[1] - zoom / 2, shift[0] + zoom / 2, shift[1] + zoom / 2],
        ]
    )
    low, high = boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)
    extent = high - low
    side = min(side, source.width / extent[0], source.height / extent[1])
    origin = np.array(
        [
            rng.uniform(0, source.width - extent[0] * side),
            rng.uniform(0, source.height - extent[1] * side),
        ]
    )
    pixels = (boxes - np.tile(low, 2)) * side + np.tile(origin, 2)
    first, second = (_square(row, source) for row in pixels)
    return first, second


def _square(row: np.ndarray, source: PairSource) -> tuple[int, int, int, int]:
    side = max(1, round(row[2] - row[0]))
    left = int(np.clip(round(row[0]), 0, source.width - side))
    top = int(np.clip(round(row[1]), 0, source.height - side))
    return left, top, left + side, top + side


def alter(image: Image.Image, ops: Sequence[str], rng: np.random.Generator) -> bytes:
    """Apply `ops` to an RGB image; return the encoded copy: JPEG (quality 50-90) if "jpeg", else PNG."""
    for op in ops:
        if op == "crop":
            share = np.sqrt(rng.uniform(*CROP_AREA))
            width, height = max(1, round(image.width * share)), max(1, round(image.height * share))
            left = int(rng.integers(0, image.width - width + 1))
            top = int(rng.integers(0, image.height - height + 1))
            image = image.crop((left, top, left + width, top + height))
        elif op == "resize":
            share = rng.uniform(*RESIZE_SHARE)
            small = (max(1, round(image.width * share)), max(1, round(image.height * share)))
            image = image.resize(small, Image.Resampling.LANCZOS, reducing_gap=3.0)
        elif op in COLOUR_OPS:
            enhancer = {
                "brightness": ImageEnhance.Brightness,
                "contrast": ImageEnhance.Contrast,
                "saturation": ImageEnhance.Color,
            }[op]
            factor = 1 + rng.uniform(*COLOUR_CHANGE) * rng.choice([-1, 1])
            image = enhancer(image).enhance(float(factor))
        elif op == "rotate":  # same canvas, black corners
            angle = float(rng.uniform(-ROTATE_DEGREES, ROTATE_DEGREES))
            image = image.rotate(angle, Image.Resampling.BICUBIC, expand=False)
        elif op == "border":
            width = max(1, round(min(image.size) * rng.uniform(*BORDER_SHARE)))
            image = ImageOps.expand(image, border=width, fill=_flat_colour(rng))
        elif op == "caption":
            image = add_caption(image, rng)
        elif op != "jpeg":
            raise ValueError(f"unknown alteration {op!r}")
    buffer = io.BytesIO()
    if ops and ops[-1] == "jpeg":
        image.save(buffer, format="JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _flat_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """White, black or a random colour, a third each."""
    choice = int(rng.integers(3))
    if choice == 0:
        return 255, 255, 255
    if choice == 1:
        return 0, 0, 0
    red, green, blue = (int(v) for v in rng.integers(0, 256, 3))
    return red, green, blue


def add_caption(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A flat strip over the bottom 10-15% of the image with a line of text in Pillow's default font."""
    image = image.copy()
    strip = max(1, round(image.height * rng.uniform(*CAPTION_SHARE)))
    dark = bool(rng.integers(2))
    fill, ink = ((20, 20, 20), (240, 240, 240)) if dark else ((245, 245, 245), (15, 15, 15))
    draw = ImageDraw.Draw(image)
    top = image.height - strip
    draw.rectangle((0, top, image.width, image.height), fill=fill)
    font = ImageFont.load_default(size=max(1, round(strip * 0.6)))
    text = CAPTIONS[int(rng.integers(len(CAPTIONS)))]
    draw.text((max(1, round(strip * 0.3)), top + strip / 2), text, fill=ink, font=font, anchor="lm")
    return image


def hash_bits(image: Image.Image) -> tuple[int, int]:
    """pHash and dHash of an image (imagehash, 8x8 = 64 bits each) as unsigned integers."""
    grey = image.convert("L")
    return picture_phash(grey), hash_as_int(imagehash.dhash(grey))


def render_images(
    sources: Sequence[PairSource], images: Sequence[ImageSpec], size: int, seed: int, workers: int | None
) -> RenderedImages:
    """Make every planned image (in worker processes): model input, pHash, dHash."""
    by_source: dict[int, list[int]] = {}
    for index, spec in enumerate(images):
        by_source.setdefault(spec.source, []).append(index)
    jobs = []
    for source, indices in by_source.items():
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start : start + CHUNK]
            jobs.append((sources[source].path, [(i, images[i]) for i in chunk], size, seed))
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        results = [_render_job(job) for job in jobs]
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = list(pool.map(_render_job, jobs, chunksize=2))
    inputs = np.zeros((len(images), size, size, 3), np.uint8)
    phash = np.zeros(len(images), np.uint64)
    dhash = np.zeros(len(images), np.uint64)
    kept_hashes = np.zeros((len(images), HASHES), np.uint64)
    ok = np.zeros(len(images), bool)
    errors = []
    features: list[LocalFeatures | None] = [None] * len(images)
    for (path, _, _, _), (rows, error) in zip(jobs, results, strict=True):
        if error is not None and len(errors) < 20:
            errors.append((path, error))
        for index, pixels, p_bits, d_bits, kept, local in rows:
            inputs[index], phash[index], dhash[index], ok[index] = pixels, p_bits, d_bits, True
            kept_hashes[index] = kept
            features[index] = local
    return RenderedImages(inputs, phash, dhash, kept_hashes, ok, errors, features)


def _render_job(
    job: tuple[str, list[tuple[int, ImageSpec]], int, int],
) -> tuple[list[tuple[int, np.ndarray, int, int, np.ndarray, LocalFeatures]], str | None]:
    path, specs, size, seed = job
    try:
        pixels = load_image(path, max_pixels=MAX_SOURCE_PIXELS).pixels
    except BadImage as exc:
        return [], exc.reason
    rows = []
    error = None
    for index, spec in specs:
        if spec.box is None:
            part = pixels
        else:
            left, top, right, bottom = spec.box
            part = pixels[top:bottom, left:right]
        original = cap_source(part)
        if spec.ops:
            rng = np.random.default_rng([seed, 11, spec.seed])
            encoded = alter(Image.fromarray(original), spec.ops, rng)
            try:
                version = load_image(encoded).pixels
                # The indexer decodes a JPEG at a reduced scale (`load_for_model`); a PNG decodes the same.
                model_input = load_for_model(encoded, size) if spec.ops[-1] == "jpeg" else None
            except BadImage as exc:
                error = exc.reason
                continue
        else:
            version, model_input = original, None
        p_bits, d_bits = hash_bits(Image.fromarray(version))
        if model_input is None:
            model_input = model_square(version, size)
        rows.append((index, model_input, p_bits, d_bits, perceptual_hashes(version), local_features(version)))
    return rows, error
