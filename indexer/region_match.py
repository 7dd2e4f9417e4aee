"""Is one picture a region of the other? Geometric verification of a duplicate candidate by local features.

A crop, a caption strip, a border or a small rotation moves a 64-px latent about as far as a burst frame
(the same scene shifted by a tenth of the frame) does, and 64-bit hashes blur the difference too. The
files tell them apart: ORB keypoints of both pictures (grey, at most VERIFY_SIDE px, contrast-limited
histogram equalisation so that smooth photos and flat drawings still yield corners) are matched with
Lowe's ratio test, and RANSAC fits one similarity transform (rotation, uniform scale, shift) to the
matches. Its inliers say the two show the same pixels; where it puts each frame in the other says how:
a copy, a crop or a caption lies (almost) wholly inside the other picture, and a border copy holds the
other wholly, while a burst frame or a neighbouring crop sticks out of it by a tenth of its side or more.

A transform can also fit a few chance matches. The aligned pictures then show it: each less its blur
(the detail, not the shading that any two smooth pictures share), correlated block by block on the
coarser picture's grid, agree where the same pixels lie under each other and not otherwise.

`indexer.region_rule` holds what this gives (`Overlap`) and the rule that links a pair from it, without
OpenCV: importing this module loads OpenCV, which only a run that compares files needs.
"""

from __future__ import annotations

import hashlib
import itertools
import os

import cv2
import numpy as np
from PIL import Image

from latentdex.errors import BadImage
from latentdex.indexer.load import DEFAULT_MAX_PIXELS, load_image
from latentdex.indexer.region_rule import NO_OVERLAP, LocalFeatures, Overlap

VERIFY_SIDE = 384  # longer side of the grey picture the features are found on
MAX_FEATURES = 500
FAST_THRESHOLD = 5  # ORB's corner threshold (OpenCV's default 20 finds few corners on smooth photos)
RATIO = 0.8  # Lowe's ratio test: a match must beat the second-best by this factor
MIN_MATCHES = 8  # fewer ratio-tested matches than this: no transform is fitted
RANSAC_PIXELS = 3.0  # reprojection error of an inlier, in VERIFY_SIDE pixels
# A copy's scale, between pictures both scaled to VERIFY_SIDE, is near 1 (a crop to half the side: 0.5);
# a fit far outside these bounds has folded many matches onto one spot of the other picture.
SCALE_RANGE = (0.25, 4.0)
CHECK_SIDE = 96  # longer side of the grey picture the aligned pixels are compared on
DETAIL_SIGMA = 1.5  # px at CHECK_SIDE: the blur taken away before comparing (`_detail`)
CHECK_GRID = 4  # blocks per side of that comparison
FLAT_DEVIATION = 1.0  # grey levels: a block this even in both pictures has no shape to compare
MIN_DETECT_SIDE = 64  # a thinner picture (a 1-px line, a sliver) has no room for ORB's patches
_CLAHE_CLIP = 2.0
_CLAHE_TILES = (8, 8)
# What an Overlap depends on besides the two files: a remembered one (`indexer.region_memory`) from other
# settings is not reused. Bump the version when the method changes in a way these numbers do not show.
_SETTINGS = (
    f"orb1 side{VERIFY_SIDE} n{MAX_FEATURES} fast{FAST_THRESHOLD} ratio{RATIO} min{MIN_MATCHES} "
    f"ransac{RANSAC_PIXELS} scale{SCALE_RANGE} check{CHECK_SIDE} sigma{DETAIL_SIGMA} grid{CHECK_GRID} "
    f"flat{FLAT_DEVIATION} clahe{_CLAHE_CLIP}{_CLAHE_TILES}"
)
METHOD = "orb-" + hashlib.sha256(_SETTINGS.encode()).hexdigest()[:20]


def local_features(pixels: np.ndarray) -> LocalFeatures:
    """An (H, W, 3) or (H, W) uint8 picture's ORB features on its grey scaled to VERIFY_SIDE px (its
    longer side), and its grey at CHECK_SIDE px."""
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    grey = _scaled(picture, VERIFY_SIDE)
    equalised = cv2.createCLAHE(_CLAHE_CLIP, _CLAHE_TILES).apply(np.asarray(grey, dtype=np.uint8))
    keypoints, descriptors = [], None
    if min(grey.size) >= MIN_DETECT_SIDE:
        detector = cv2.ORB_create(nfeatures=MAX_FEATURES, fastThreshold=FAST_THRESHOLD)
        keypoints, descriptors = detector.detectAndCompute(equalised, None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.zeros((0, 32), np.uint8)
    small = np.asarray(_scaled(picture, CHECK_SIDE, Image.Resampling.BOX), dtype=np.uint8)
    return LocalFeatures(points, descriptors, (grey.height, grey.width), small)


def file_features(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> LocalFeatures | None:
    """`local_features` of an image file (a JPEG decodes at a reduced scale); None if it cannot be read."""
    try:
        decoded = load_image(path, min_side=VERIFY_SIDE // 2, max_pixels=max_pixels)
    except (BadImage, OSError):
        return None
    return local_features(decoded.pixels)


def overlap(first: LocalFeatures, second: LocalFeatures) -> Overlap:
    """Fit one similarity transform from `second` to `first`; its inliers and the frames' containment."""
    if len(first.points) < MIN_MATCHES or len(second.points) < MIN_MATCHES:
        return NO_OVERLAP
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(second.descriptors, first.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < MIN_MATCHES:
        return NO_OVERLAP
    source = second.points[[m.queryIdx for m in good]]
    target = first.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=2000, confidence=0.99
    )
    if transform is None or inliers is None:
        return NO_OVERLAP
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return NO_OVERLAP
    inverse = cv2.invertAffineTransform(transform)
    second_in_first = _share_inside(_mapped(second.size, transform), first.size)
    first_in_second = _share_inside(_mapped(first.size, inverse), second.size)
    # compared on the coarser picture's grid: the finer one is shrunk onto it, not blown up
    if abs(float(np.linalg.det(transform[:, :2]))) > 1.0:
        agreement = _agreement(second, first, inverse)
    else:
        agreement = _agreement(first, second, transform)
    return Overlap(int(inliers.sum()), max(second_in_first, first_in_second), agreement)


def _agreement(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray) -> float:
    """`second`'s small grey warped onto `first`'s by `transform` (fitted between the VERIFY_SIDE
    pictures); the median over CHECK_GRID x CHECK_GRID blocks of their detail's correlation where they
    overlap, away from the frame's edge; 0 (no say) where no block has detail to compare."""
    to_first = first.grey.shape[1] / first.size[1]
    from_second = second.grey.shape[1] / second.size[1]
    warp = np.zeros((2, 3), np.float32)
    warp[:, :2] = transform[:, :2] * (to_first / from_second)
    warp[:, 2] = transform[:, 2] * to_first
    shape = (first.grey.shape[1], first.grey.shape[0])
    moved = cv2.warpAffine(
        second.grey.astype(np.float32), warp, shape, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    covered = cv2.warpAffine(np.ones(second.grey.shape, np.uint8), warp, shape, flags=cv2.INTER_NEAREST)
    # Off the frame's edge by the blur's reach: a border, or the end of the moved picture, is an edge in
    # one picture's detail and not in the other's.
    margin = 2 * int(np.ceil(2 * DETAIL_SIGMA)) + 1
    covered = cv2.erode(covered, np.ones((margin, margin), np.uint8)) > 0
    target, warped = _detail(first.grey), _detail(moved)
    rows = np.linspace(0, target.shape[0], CHECK_GRID + 1).astype(int)
    columns = np.linspace(0, target.shape[1], CHECK_GRID + 1).astype(int)
    scores = []
    for top, bottom in itertools.pairwise(rows):
        for left, right in itertools.pairwise(columns):
            mask = covered[top:bottom, left:right]
            if mask.sum() < max(16, mask.size // 2):
                continue
            one = target[top:bottom, left:right][mask]
            other = warped[top:bottom, left:right][mask]
            one, other = one - one.mean(), other - other.mean()
            spread_one, spread_other = float(np.sqrt((one**2).mean())), float(np.sqrt((other**2).mean()))
            if spread_one < FLAT_DEVIATION and spread_other < FLAT_DEVIATION:
                continue
            if min(spread_one, spread_other) < 1e-3:
                scores.append(0.0)
                continue
            scores.append(float((one * other).mean() / (spread_one * spread_other)))
    return float(np.median(scores)) if scores else 0.0


def _detail(grey: np.ndarray) -> np.ndarray:
    """A grey picture less its blur (DETAIL_SIGMA px): edges and texture, not the smooth shading that
    any two gradients share."""
    picture = grey.astype(np.float32)
    return picture - cv2.GaussianBlur(picture, (0, 0), DETAIL_SIGMA)


def _scaled(
    image: Image.Image, side: int, shrink: Image.Resampling = Image.Resampling.LANCZOS
) -> Image.Image:
    """`image` with its longer side at `side`: shrunk with `shrink`, or enlarged (BICUBIC) so that a small
    drawing still has room for ORB's 31-px patches."""
    scale = side / max(image.size)
    if scale == 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, shrink if scale < 1 else Image.Resampling.BICUBIC)


def _frame(size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)


def _mapped(size: tuple[int, int], transform: np.ndarray) -> np.ndarray:
    return (_frame(size) @ transform[:, :2].T + transform[:, 2]).astype(np.float32)


def _share_inside(polygon: np.ndarray, size: tuple[int, int]) -> float:
    """The share of a convex polygon's area inside the frame of a picture of `size`."""
    area = float(cv2.contourArea(polygon))
    if area <= 0:
        return 0.0
    inside, _ = cv2.intersectConvexConvex(polygon, _frame(size))
    return min(1.0, float(inside) / area)
