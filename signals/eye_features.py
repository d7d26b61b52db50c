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


# The patch crop's maths (:func:`_frame`) works on a handful of points as Python floats: for
# 2-vectors that is several times faster than numpy's per-call overhead. The geometry
# (:func:`geometry_values`) is computed for a whole batch of pictures at once in numpy, with the
# same operations in the same order (so one picture gives the same values either way).


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


_GATHER_INDEX = {eye.name: np.array(_gather(eye)) for eye in EYES}


def _norm(d: np.ndarray) -> np.ndarray:
    """Lengths of the 2-vectors ``d`` (... x 2)."""
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])


def _eye_geometry(p: np.ndarray, eye: EyeLandmarks) -> np.ndarray:
    """K x 6 geometry values (:func:`geometry_columns` order) of one eye from the K x G x 2 points
    of ``_gather(eye)``; NaN where the corners coincide (or a point is unknown)."""
    a, b = p[:, 0], p[:, 1]
    d = b - a
    width = _norm(d)
    good = width > 0
    w = np.where(good, width, 1.0)
    ax, ay = np.where(good, d[:, 0] / w, 1.0), np.where(good, d[:, 1] / w, 0.0)
    nx, ny = -ay, ax
    mx, my = (a[:, 0] + b[:, 0]) / 2.0, (a[:, 1] + b[:, 1]) / 2.0
    nu, nl = len(eye.upper), len(eye.lower)
    upper, lower, ear = p[:, 3:3 + nu], p[:, 3 + nu:3 + nu + nl], p[:, 3 + nu + nl:]
    ux, uy = upper[..., 0].sum(axis=1) / nu - mx, upper[..., 1].sum(axis=1) / nu - my
    lx, ly = lower[..., 0].sum(axis=1) / nl - mx, lower[..., 1].sum(axis=1) / nl - my
    ix, iy = p[:, 2, 0] - mx, p[:, 2, 1] - my
    up, low, iv = ux * nx + uy * ny, lx * nx + ly * ny, ix * nx + iy * ny
    span = low - up
    lid = np.where(span > 1e-6, (iv - up) / np.where(span > 1e-6, span, 1.0), np.nan)
    # eye aspect ratio (Soukupova & Cech): the lids' two openings over twice the corners' distance
    ear_width = _norm(ear[:, 3] - ear[:, 0])
    openness = (_norm(ear[:, 5] - ear[:, 1]) + _norm(ear[:, 4] - ear[:, 2])) / np.where(
        ear_width > 0, 2.0 * ear_width, np.nan)
    out = np.stack(((ix * ax + iy * ay) / w, iv / w, lid, up / w, low / w, openness), axis=1)
    out[~good] = np.nan
    return out


def geometry_values(pts: np.ndarray) -> np.ndarray:
    """The geometry of both eyes (:data:`EYES` order, each in :func:`geometry_columns` order)
    of K pictures' landmarks (K x N x 2 pixel coordinates): a K x 12 array (a 12-vector for one
    N x 2 array); NaN for an eye whose corners coincide."""
    p = np.asarray(pts, np.float64)
    one = p.ndim == 2
    p = p[None] if one else p
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.concatenate([_eye_geometry(p[:, _GATHER_INDEX[eye.name]], eye) for eye in EYES], axis=1)
    return out[0] if one else out


def eye_geometry(pts: np.ndarray, eye: EyeLandmarks) -> dict[str, float]:
    """Iris position and openness of one eye; ``pts`` are landmark pixel coordinates (N x 2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = _eye_geometry(np.asarray(pts, np.float64)[None, list(_gather(eye))], eye)[0]
    return dict(zip(geometry_columns(eye.name), values.tolist()))


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
    values = geometry_values(pts).tolist()
    out: dict[str, float] = {}
    for k, eye in enumerate(EYES):
        out.update(zip(_geometry_columns(eye.name), values[6 * k:6 * k + 6]))
        if patch_size is not None:
            out.update(zip(_patch_columns(eye.name, patch_size), _patch(grey, _eye_frame(pts, eye), patch_size).tolist()))
    return out


def blink_scores(geometry: np.ndarray) -> np.ndarray:
    """Mean eye aspect ratio of both eyes (NaN when neither is known) of K pictures' geometry
    (K x 12, :func:`geometry_values`)."""
    ear = geometry[:, [6 * k + 5 for k in range(len(EYES))]]
    known = np.isfinite(ear)
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.where(known, ear, 0.0).sum(axis=1) / count, np.nan)
