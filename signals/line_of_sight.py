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


def eye_rays(pts: np.ndarray, width: np.ndarray, height: np.ndarray, rotation: np.ndarray,
             translation: np.ndarray, eye: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres of rotation K x 3, unit optical axes K x 3, found K) of one eye in K pictures,
    camera axes (cm); where not ``found`` the centre and the axis mean nothing.

    ``pts``: K pictures' landmark pixel coordinates (K x N x 2) of pictures ``width`` x
    ``height`` (K each); ``rotation`` (K x 3 x 3) and ``translation`` (K x 3): the head poses
    (model -> camera) of :class:`.head_pose.HeadPoseEstimator` (NaN: none). Call it under
    ``np.errstate(divide="ignore", invalid="ignore")``: the pictures without a ray divide by 0.
    """
    outer, inner, iris = eye
    f = np.asarray(width, np.float64)  # head_pose.focal_px
    cx, cy = f / 2.0, np.asarray(height, np.float64) / 2.0
    r, t = rotation, translation
    mx_, my_, mz_ = head_pose._MODEL[_MODEL_ROW[outer]].tolist()
    depth = r[:, 2, 0] * mx_ + r[:, 2, 1] * my_ + r[:, 2, 2] * mz_ + t[:, 2]
    o, i, p = pts[:, outer], pts[:, inner], pts[:, iris]
    found = (depth > 0) & np.isfinite(o).all(axis=1) & np.isfinite(i).all(axis=1) & np.isfinite(p).all(axis=1)
    # the corners' midpoint at the outer corner's depth, pushed back along the head's z axis
    ex = ((o[:, 0] + i[:, 0]) / 2.0 - cx) / f * depth + CENTRE_BEHIND_CM * r[:, 0, 2]
    ey = ((o[:, 1] + i[:, 1]) / 2.0 - cy) / f * depth + CENTRE_BEHIND_CM * r[:, 1, 2]
    ez = depth + CENTRE_BEHIND_CM * r[:, 2, 2]
    vx, vy = (p[:, 0] - cx) / f, (p[:, 1] - cy) / f
    norm = np.sqrt(vx * vx + vy * vy + 1.0)
    vx, vy, vz = vx / norm, vy / norm, 1.0 / norm
    b = vx * ex + vy * ey + vz * ez
    disc = b * b - (ex * ex + ey * ey + ez * ez) + IRIS_RADIUS_CM ** 2
    found &= disc > 0  # else the ray misses the eye: the landmarks and the head pose disagree
    s = b - np.sqrt(disc)  # the near intersection
    dx, dy, dz = s * vx - ex, s * vy - ey, s * vz - ez
    n = np.sqrt(dx * dx + dy * dy + dz * dz)
    found &= n > 0
    dx, dy, dz = dx / n, dy / n, dz / n
    # the eye's turn in the head: the angle between the axis and the head's forward direction
    found &= -(dx * r[:, 0, 2] + dy * r[:, 1, 2] + dz * r[:, 2, 2]) >= _COS_MAX_TURN
    return np.stack((ex, ey, ez), axis=1), np.stack((dx, dy, dz), axis=1), found


def _pictures(pts: np.ndarray, width: int, height: int, rotation: np.ndarray,
              translation: np.ndarray) -> tuple[np.ndarray, ...]:
    """One picture's arguments as :func:`eye_rays` takes K pictures'."""
    return (np.asarray(pts, np.float64)[None], np.array([float(width)]), np.array([float(height)]),
            np.asarray(rotation, np.float64)[None], np.asarray(translation, np.float64).reshape(1, 3))


def eye_ray(pts: np.ndarray, width: int, height: int, rotation: np.ndarray, translation: np.ndarray,
            eye: tuple[int, int, int]) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """(centre of rotation, unit optical axis) of one eye in camera axes (cm), or None: one
    picture of :func:`eye_rays` (``pts`` N x 2, ``rotation`` 3 x 3, ``translation`` (3,))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        centre, axis, found = eye_rays(*_pictures(pts, width, height, rotation, translation), eye)
    return (tuple(centre[0].tolist()), tuple(axis[0].tolist())) if found[0] else None


def sight_points(pts: np.ndarray, width: np.ndarray, height: np.ndarray, rotation: np.ndarray,
                 translation: np.ndarray) -> np.ndarray:
    """K x 2 (``sight_x_cm``, ``sight_y_cm``): for each of K pictures (:func:`eye_rays`'
    arguments) the mean over both eyes of where the optical axis meets the camera's plane (cm,
    camera axes: x image right, y image down); NaN without a head pose or where neither eye
    looks towards that plane."""
    total, count = np.zeros((len(pts), 2)), np.zeros(len(pts))
    with np.errstate(divide="ignore", invalid="ignore"):
        for eye in EYE_POINTS:
            centre, axis, found = eye_rays(pts, width, height, rotation, translation, eye)
            found &= axis[:, 2] < -1e-6  # else looking away from the camera's plane
            k = -centre[:, 2] / axis[:, 2]
            point = centre[:, :2] + k[:, None] * axis[:, :2]
            total += np.where(found[:, None], point, 0.0)
            count += found
        return np.where(count[:, None] > 0, total / count[:, None], np.nan)


def sight_point(pts: np.ndarray, width: int, height: int, rotation: np.ndarray | None,
                translation: np.ndarray | None) -> dict[str, float]:
    """``sight_x_cm`` / ``sight_y_cm`` of one picture (:func:`sight_points`; ``pts`` N x 2,
    ``rotation`` 3 x 3, ``translation`` (3,)); NaN without a head pose (None) or when neither
    eye looks towards the camera's plane."""
    if rotation is None or translation is None:
        return dict.fromkeys(COLUMNS, math.nan)
    return dict(zip(COLUMNS, sight_points(*_pictures(pts, width, height, rotation, translation))[0].tolist()))
