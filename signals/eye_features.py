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

Landmark indices are those of MediaPipe's face mesh topology (``mediapipe/modules/face_geometry/
data/canonical_face_model.obj``; iris points 468-477 come from the attention/iris refinement).
"""
from __future__ import annotations

from dataclasses import dataclass

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
    return [f"eye_{eye}_{name}" for name in ("iris_u", "iris_v", "iris_lid", "upper_lid", "lower_lid", "open")]


def patch_columns(eye: str, size: tuple[int, int] = PATCH_SIZE) -> list[str]:
    return [f"eye_{eye}_patch_{i:03d}" for i in range(size[0] * size[1])]


def eye_aspect_ratio(pts: np.ndarray, idx: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = (pts[i] for i in idx)
    width = np.linalg.norm(p1 - p4)
    if width <= 0:
        return float("nan")
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * width))


def _eye_frame(pts: np.ndarray, eye: EyeLandmarks) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Midpoint of the corners, unit axis (image left -> right corner), unit normal (down), width."""
    a, b = pts[eye.image_left], pts[eye.image_right]
    axis = b - a
    width = float(np.linalg.norm(axis))
    axis = axis / width if width > 0 else np.array([1.0, 0.0])
    normal = np.array([-axis[1], axis[0]])  # rotate +90 deg: points down in image coordinates
    return (a + b) / 2.0, axis, normal, width


def eye_geometry(pts: np.ndarray, eye: EyeLandmarks) -> dict[str, float]:
    """Iris position and openness of one eye; ``pts`` are landmark pixel coordinates (N x 2)."""
    mid, axis, normal, width = _eye_frame(pts, eye)
    nan = float("nan")
    if width <= 0:
        return dict.fromkeys(geometry_columns(eye.name), nan)
    iris = pts[eye.iris_centre] - mid
    upper = pts[list(eye.upper)].mean(axis=0) - mid
    lower = pts[list(eye.lower)].mean(axis=0) - mid
    up, low, iv = float(upper @ normal), float(lower @ normal), float(iris @ normal)
    lid = (iv - up) / (low - up) if low - up > 1e-6 else nan
    values = (float(iris @ axis) / width, iv / width, lid, up / width, low / width, eye_aspect_ratio(pts, eye.ear))
    return dict(zip(geometry_columns(eye.name), values))


def eye_patch(grey: np.ndarray, pts: np.ndarray, eye: EyeLandmarks, size: tuple[int, int] = PATCH_SIZE) -> np.ndarray:
    """The eye region as a ``size`` (w, h) patch aligned to the eye corners, equalised, 0-1 floats."""
    pw, ph = size
    big_w, big_h = pw * _WARP_SCALE, ph * _WARP_SCALE
    mid, axis, normal, width = _eye_frame(pts, eye)
    if width <= 0:
        return np.full(pw * ph, np.nan, np.float32)
    # Similarity transform: corners -> (margin, centre row) and (1 - margin, centre row).
    span = big_w * (1 - 2 * _PATCH_MARGIN)
    src = np.float32([mid - axis * width / 2, mid + axis * width / 2, mid + normal * width / 2])
    dst = np.float32([
        [big_w * _PATCH_MARGIN, big_h / 2],
        [big_w * (1 - _PATCH_MARGIN), big_h / 2],
        [big_w / 2, big_h / 2 + span / 2],
    ])
    warp = cv2.getAffineTransform(src, dst)
    big = cv2.warpAffine(grey, warp, (big_w, big_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Equalise at the warp size (a histogram of 60 pixels would be too coarse), then area-average.
    small = cv2.resize(cv2.equalizeHist(big), (pw, ph), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) / 255.0).ravel()


def eye_features(grey: np.ndarray, pts: np.ndarray, patch_size: tuple[int, int] | None = PATCH_SIZE) -> dict[str, float]:
    """All eye features of both eyes (geometry, and patches unless ``patch_size`` is None)."""
    out: dict[str, float] = {}
    for eye in EYES:
        out.update(eye_geometry(pts, eye))
        if patch_size is not None:
            out.update(zip(patch_columns(eye.name, patch_size), eye_patch(grey, pts, eye, patch_size).tolist()))
    return out


def blink_score(features: dict[str, float]) -> float:
    """Mean eye aspect ratio of both eyes (NaN when unknown)."""
    vals = [features.get(f"eye_{e.name}_open", float("nan")) for e in EYES]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")
