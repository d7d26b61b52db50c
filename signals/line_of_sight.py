"""Where the eyes' line of sight meets the camera's plane, from landmarks and head pose.

A webcam sits in the plane of the screen (a laptop's lid, a monitor's top edge), so the point
where the line of sight crosses the camera's plane (z = 0 in camera axes) is, up to a fixed
affine map, the point looked at on the screen. That map (CSS px per cm, where the camera sits
relative to the viewport, the screen's tilt) is the same for every head position, which is what
lets a calibration taken in one posture hold in another: the eye-in-head features
(:mod:`.eye_features`) change whenever the head moves or turns while the person keeps looking at
the same point, so a regression on them alone learns the posture of its calibration round (a
head 5 cm to the side reads as gaze 5 cm to the side; a head turned 5 deg as ~5 cm at 60 cm).

Model (a standard geometric eye model; anatomical constants, nothing fitted here):

* the eye is a sphere that turns about its centre, :data:`CENTRE_BEHIND_CM` behind the depth of
  the eye's outer corner along the head's z axis, and under the midpoint of the eye's corners
  in the image (the centre of rotation lies ~13.5 mm behind the corneal apex, the canthi
  ~8-10 mm behind it);
* the iris centre (the landmark) lies on that sphere, :data:`IRIS_RADIUS_CM` from the centre
  (apparent pupil ~3 mm behind the apex of a ~13.5 mm eye). Face Mesh's own depth agrees: on
  the astronaut photo (:mod:`.synthetic_gaze`) it puts the iris landmark 0.52 cm in front of
  the outer corner, which with this radius puts the centre 0.53 cm behind it;
* the camera is the pinhole of :func:`.head_pose.camera_matrix` and the head pose is the one of
  :mod:`.head_pose`, so depths share its scale (a wrong focal length scales all depths and
  lateral positions together, and the calibration's px-per-cm absorbs it).

Per eye, the camera ray through the iris landmark is intersected with the eye sphere (the near
side), the optical axis runs from the centre through that point, and the axis is extended to
z = 0. An eye is left out where the landmarks and the head pose disagree: the ray misses the
sphere, or the axis is turned more than :data:`MAX_EYE_TURN_DEG` from the head's forward
direction (near 90 deg the axis runs almost parallel to the camera's plane and meets it metres
away; a small face's wrong pose did that to 1 of 384 pictures of ``benchmarks/gaze_accuracy.py
--face-scale 0.6``, and one such row sets the scale a calibration standardises every row by). The two eyes' points are averaged:
``sight_x_cm`` (image right) and ``sight_y_cm`` (image down), in cm from the camera. The angle
between the optical and the visual axis (kappa, ~5 deg), a constant for a person, becomes a
constant offset the calibration's intercept takes up; so do errors of the anatomical constants to
first order (they scale the eye's contribution, which the calibration's gain absorbs).
"""
from __future__ import annotations

import math

import numpy as np

from . import head_pose

#: apparent iris centre from the eye's centre of rotation (cm)
IRIS_RADIUS_CM = 1.05
#: centre of rotation behind the outer eye corner's depth, along the head's z axis (cm)
CENTRE_BEHIND_CM = 0.5
#: per eye: outer corner (a head-pose model point), inner corner, iris centre (face-mesh indices)
EYE_POINTS = ((33, 133, 468), (263, 362, 473))
COLUMNS = ("sight_x_cm", "sight_y_cm")
#: the largest turn of the eye in the head taken as real (deg); beyond it the landmarks and the
#: head pose disagree (the oculomotor range is ~45-50 deg, and people turn the head for targets
#: more than ~20 deg away)
MAX_EYE_TURN_DEG = 45.0
_COS_MAX_TURN = math.cos(math.radians(MAX_EYE_TURN_DEG))

_MODEL_ROW = {i: k for k, i in enumerate(head_pose.LANDMARKS)}


def eye_ray(pts: np.ndarray, width: int, height: int, rotation: np.ndarray, translation: np.ndarray,
            eye: tuple[int, int, int]) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """(centre of rotation, unit optical axis) of one eye in camera axes (cm), or None.

    ``pts``: landmark pixel coordinates (N x 2); ``rotation`` (3 x 3) and ``translation`` (3,):
    the head pose (model -> camera) of :class:`.head_pose.HeadPoseEstimator`.
    """
    outer, inner, iris = eye
    f, cx, cy = head_pose.focal_px(width, height), width / 2.0, height / 2.0
    r = rotation.tolist()
    tx, ty, tz = (float(v) for v in np.ravel(translation))
    mx_, my_, mz_ = head_pose._MODEL[_MODEL_ROW[outer]].tolist()
    depth = r[2][0] * mx_ + r[2][1] * my_ + r[2][2] * mz_ + tz
    (ox, oy), (ix_, iy_), (px, py) = pts[outer].tolist(), pts[inner].tolist(), pts[iris].tolist()
    if depth <= 0 or not all(math.isfinite(v) for v in (ox, oy, ix_, iy_, px, py)):
        return None
    # the corners' midpoint at the outer corner's depth, pushed back along the head's z axis
    ex = ((ox + ix_) / 2.0 - cx) / f * depth + CENTRE_BEHIND_CM * r[0][2]
    ey = ((oy + iy_) / 2.0 - cy) / f * depth + CENTRE_BEHIND_CM * r[1][2]
    ez = depth + CENTRE_BEHIND_CM * r[2][2]
    vx, vy = (px - cx) / f, (py - cy) / f
    norm = math.sqrt(vx * vx + vy * vy + 1.0)
    vx, vy, vz = vx / norm, vy / norm, 1.0 / norm
    b = vx * ex + vy * ey + vz * ez
    disc = b * b - (ex * ex + ey * ey + ez * ez) + IRIS_RADIUS_CM ** 2
    if disc <= 0:  # the ray misses the eye: the landmarks and the head pose disagree
        return None
    s = b - math.sqrt(disc)  # the near intersection
    dx, dy, dz = s * vx - ex, s * vy - ey, s * vz - ez
    n = math.sqrt(dx * dx + dy * dy + dz * dz)
    if n <= 0:
        return None
    dx, dy, dz = dx / n, dy / n, dz / n
    # the eye's turn in the head: the angle between the axis and the head's forward direction
    if -(dx * r[0][2] + dy * r[1][2] + dz * r[2][2]) < _COS_MAX_TURN:
        return None
    return (ex, ey, ez), (dx, dy, dz)


def sight_point(pts: np.ndarray, width: int, height: int, rotation: np.ndarray | None,
                translation: np.ndarray | None) -> dict[str, float]:
    """``sight_x_cm`` / ``sight_y_cm``: the mean over both eyes of where the optical axis meets
    the camera's plane (cm, camera axes: x image right, y image down); NaN without a head pose or
    when neither eye looks towards that plane."""
    out = dict.fromkeys(COLUMNS, math.nan)
    if rotation is None or translation is None:
        return out
    xs, ys = [], []
    for eye in EYE_POINTS:
        ray = eye_ray(pts, width, height, rotation, translation, eye)
        if ray is None:
            continue
        (ex, ey, ez), (dx, dy, dz) = ray
        if dz >= -1e-6:  # looking away from the camera's plane
            continue
        k = -ez / dz
        xs.append(ex + k * dx)
        ys.append(ey + k * dy)
    if xs:
        out["sight_x_cm"], out["sight_y_cm"] = sum(xs) / len(xs), sum(ys) / len(ys)
    return out
