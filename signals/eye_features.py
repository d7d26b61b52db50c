"""Eye features from MediaPipe Face Mesh landmarks (478 points, ``refine_landmarks=True``).

For each eye (MediaPipe's naming: ``l`` = the person's left eye, on the right of an unmirrored
camera image; ``r`` = the person's right eye):

* ``iris_u`` / ``iris_v``: iris centre relative to the midpoint of the eye corners, along the
  corner-to-corner axis (pointing to image right) and perpendicular to it (pointing down), both
  divided by the eye width. Independent of image scale and head roll.
* ``iris_lid``: iris centre between the lids along the perpendicular: 0 at the upper lid,
  1 at the lower lid.
* ``upper_lid`` / ``lower_lid``: the lids' offsets from the corner line (down positive) divided
  by the eye width; the upper lid follows vertical gaze (it drops when looking down).
* ``open``: eye aspect ratio (Soukupova & Cech 2016), ~0.25-0.35 open, < ~0.15 closed.
* ``patch_NNN``: the eye region as a small grey-scale patch (default 10x6, like WebGazer),
  aligned to the eye corners (so roll and distance are factored out), histogram-equalised and
  scaled to 0-1, flattened row-major.

The patch crop, the one definition (the browser computes the same patches from the same
landmarks and must follow it; :func:`patch_transform` is the geometry):

1. Warp the grey image (BT.601 luma, as ``cv2.COLOR_BGR2GRAY``) with the similarity
   transform :func:`patch_transform` onto a canvas ``_WARP_SCALE`` (4) times the patch size
   (40 x 24 px for 10 x 6): the eye's image-left corner lands at (0.15 W, H / 2), its
   image-right corner at (0.85 W, H / 2); no shear, one scale, so roll and distance are
   factored out (yaw and pitch are not: they are 3-D, and the head-pose columns carry them).
   Bilinear sampling, edge pixels replicated outside the image.
2. Histogram-equalise that canvas (``cv2.equalizeHist``: 256 bins, the CDF mapped to 0-255).
3. Area-average it down to the patch size (``cv2.INTER_AREA``: each patch pixel the mean of a
   4 x 4 block), divide by 255; flatten row-major.

Landmark indices are those of MediaPipe's face mesh topology (``mediapipe/modules/face_geometry/
data/canonical_face_model.obj``; iris points 468-477 come from the attention/iris refinement).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class EyeLandmarks:
    """Face-mesh indices of one eye."""

    name: str
    image_left: int  # corner with the smaller image x in a frontal, unmirrored view
    image_right: int
    upper: tuple[int, ...]  # upper-lid points (averaged)
    lower: tuple[int, ...]  # lower-lid points (averaged)
    iris_centre: int
    ear: tuple[int, int, int, int, int, int]  # p1..p6 for the eye aspect ratio


EYES = (
    EyeLandmarks("l", 362, 263, (385, 386, 387), (380, 374, 373), 473, (362, 385, 387, 263, 373, 380)),
    EyeLandmarks("r", 33, 133, (160, 159, 158), (144, 145, 153), 468, (33, 160, 158, 133, 153, 144)),
)

PATCH_SIZE = (10, 6)  # width, height
#: Patch geometry relative to the eye width: the corners sit this far in from the patch edges.
_PATCH_MARGIN = 0.15
_WARP_SCALE = 4  # warp at 4x the patch size, then area-average down


def geometry_columns(eye: str) -> list[str]:
    return list(_geometry_columns(eye))


@lru_cache(maxsize=4)
def _geometry_columns(eye: str) -> tuple[str, ...]:
    return tuple(f"eye_{eye}_{name}" for name in ("iris_u", "iris_v", "iris_lid", "upper_lid", "lower_lid", "open"))


def patch_columns(eye: str, size: tuple[int, int] = PATCH_SIZE) -> list[str]:
    return list(_patch_columns(eye, size))


@lru_cache(maxsize=16)
def _patch_columns(eye: str, size: tuple[int, int]) -> tuple[str, ...]:
    return tuple(f"eye_{eye}_patch_{i:03d}" for i in range(size[0] * size[1]))


# The per-frame maths below works on a handful of points as Python floats: for 2-vectors that is
# several times faster than numpy's per-call overhead (the results are the same to rounding).


def _dist(p: tuple[float, float], q: tuple[float, float]) -> float:
    dx, dy = p[0] - q[0], p[1] - q[1]
    return math.sqrt(dx * dx + dy * dy)


def _ear(p: Sequence[tuple[float, float]]) -> float:
    width = _dist(p[0], p[3])
    if width <= 0:
        return float("nan")
    return (_dist(p[1], p[5]) + _dist(p[2], p[4])) / (2.0 * width)


def eye_aspect_ratio(pts: np.ndarray, idx: tuple[int, ...]) -> float:
    return _ear([tuple(v) for v in pts[list(idx)].tolist()])


_Frame = tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]


def _frame(a: Sequence[float], b: Sequence[float]) -> _Frame:
    """Midpoint of the corners, unit axis (image left -> right corner), unit normal (down), width."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    width = math.sqrt(dx * dx + dy * dy)
    ux, uy = (dx / width, dy / width) if width > 0 else (1.0, 0.0)
    # normal: the axis rotated +90 deg, pointing down in image coordinates
    return ((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0), (ux, uy), (-uy, ux), width


def _eye_frame(pts: np.ndarray, eye: EyeLandmarks) -> _Frame:
    return _frame(pts[eye.image_left].tolist(), pts[eye.image_right].tolist())


@lru_cache(maxsize=4)
def _gather(eye: EyeLandmarks) -> tuple[int, ...]:
    """Landmark indices one eye's geometry reads: corners, iris, upper lid, lower lid, EAR points."""
    return (eye.image_left, eye.image_right, eye.iris_centre, *eye.upper, *eye.lower, *eye.ear)


def _geometry(p: list[list[float]], eye: EyeLandmarks) -> tuple[tuple[float, ...], _Frame]:
    """Geometry values (``geometry_columns`` order) from the points of ``_gather(eye)``."""
    frame = _frame(p[0], p[1])
    (mx, my), (ax, ay), (nx, ny), width = frame
    nan = float("nan")
    if width <= 0:
        return (nan,) * 6, frame
    nu, nl = len(eye.upper), len(eye.lower)
    upper, lower = p[3:3 + nu], p[3 + nu:3 + nu + nl]
    ux, uy = sum(q[0] for q in upper) / nu - mx, sum(q[1] for q in upper) / nu - my
    lx, ly = sum(q[0] for q in lower) / nl - mx, sum(q[1] for q in lower) / nl - my
    ix, iy = p[2][0] - mx, p[2][1] - my
    up, low, iv = ux * nx + uy * ny, lx * nx + ly * ny, ix * nx + iy * ny
    lid = (iv - up) / (low - up) if low - up > 1e-6 else nan
    ear = _ear([tuple(q) for q in p[3 + nu + nl:]])
    return ((ix * ax + iy * ay) / width, iv / width, lid, up / width, low / width, ear), frame


def eye_geometry(pts: np.ndarray, eye: EyeLandmarks) -> dict[str, float]:
    """Iris position and openness of one eye; ``pts`` are landmark pixel coordinates (N x 2)."""
    values, _ = _geometry(pts[list(_gather(eye))].tolist(), eye)
    return dict(zip(geometry_columns(eye.name), values))


def patch_transform(corner_left: Sequence[float], corner_right: Sequence[float],
                    size: tuple[int, int] = PATCH_SIZE, upscale: int = _WARP_SCALE) -> np.ndarray:
    """The 2 x 3 affine map (image px -> warp-canvas px) of the eye-patch crop.

    The canvas is ``size`` x ``upscale`` (w, h); ``corner_left`` / ``corner_right`` are the
    eye's corners with the smaller / larger image x in a frontal view (:class:`EyeLandmarks`
    ``image_left`` / ``image_right``). The corners go to (``_PATCH_MARGIN`` W, H/2) and
    ((1 - ``_PATCH_MARGIN``) W, H/2); the point half an eye width below their midpoint
    (perpendicular to the corner line, image down) to (W/2, H/2 + span/2): a similarity.
    """
    return _transform(_frame(corner_left, corner_right), size, upscale)


def _transform(frame: _Frame, size: tuple[int, int], upscale: int = _WARP_SCALE) -> np.ndarray:
    pw, ph = size
    big_w, big_h = pw * upscale, ph * upscale
    (mx, my), (ax, ay), (nx, ny), width = frame
    span = big_w * (1 - 2 * _PATCH_MARGIN)
    half = width / 2
    src = np.float32([[mx - ax * half, my - ay * half], [mx + ax * half, my + ay * half],
                      [mx + nx * half, my + ny * half]])
    dst = np.float32([
        [big_w * _PATCH_MARGIN, big_h / 2],
        [big_w * (1 - _PATCH_MARGIN), big_h / 2],
        [big_w / 2, big_h / 2 + span / 2],
    ])
    return cv2.getAffineTransform(src, dst)


def warp_patch(grey: np.ndarray, transform: np.ndarray, size: tuple[int, int] = PATCH_SIZE,
               upscale: int = _WARP_SCALE) -> np.ndarray:
    """Steps 1-3 of the crop (module docstring) with a given ``transform`` (2 x 3, image px ->
    canvas px): the flattened 0-1 patch."""
    pw, ph = size
    big = cv2.warpAffine(grey, transform, (pw * upscale, ph * upscale), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    # Equalise at the warp size (a histogram of 60 pixels would be too coarse), then area-average.
    small = cv2.resize(cv2.equalizeHist(big), (pw, ph), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) / np.float32(255.0)).ravel()


def _patch(grey: np.ndarray, frame: _Frame, size: tuple[int, int]) -> np.ndarray:
    if frame[3] <= 0:
        return np.full(size[0] * size[1], np.nan, np.float32)
    return warp_patch(grey, _transform(frame, size), size)


def eye_patch(grey: np.ndarray, pts: np.ndarray, eye: EyeLandmarks, size: tuple[int, int] = PATCH_SIZE) -> np.ndarray:
    """The eye region as a ``size`` (w, h) patch aligned to the eye corners, equalised, 0-1 floats."""
    return _patch(grey, _eye_frame(pts, eye), size)


def eye_features(grey: np.ndarray, pts: np.ndarray, patch_size: tuple[int, int] | None = PATCH_SIZE) -> dict[str, float]:
    """All eye features of both eyes (geometry, and patches unless ``patch_size`` is None)."""
    out: dict[str, float] = {}
    for eye in EYES:
        values, frame = _geometry(pts[list(_gather(eye))].tolist(), eye)
        out.update(zip(_geometry_columns(eye.name), values))
        if patch_size is not None:
            out.update(zip(_patch_columns(eye.name, patch_size), _patch(grey, frame, patch_size).tolist()))
    return out


def blink_score(features: dict[str, float]) -> float:
    """Mean eye aspect ratio of both eyes (NaN when unknown)."""
    vals = [features.get(f"eye_{e.name}_open", math.nan) for e in EYES]
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan
