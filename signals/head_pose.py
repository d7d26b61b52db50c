"""Head pose from face-mesh landmarks with ``cv2.solvePnP`` on a canonical face model.

The 3-D points are vertices of MediaPipe's canonical face model
(``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, vertex *i* = landmark *i*,
units cm, x to the person's left, y up, z out of the face). We convert them to OpenCV's camera
axes (x right in the image, y down, z away from the camera) by negating y and z, so a face looking
straight into the camera has yaw = pitch = roll = 0.

The camera is modelled as a pinhole with focal length = image width (:func:`focal_px`: a ~53 deg
horizontal field of view, typical of laptop webcams), principal point at the image centre and no
distortion, so ``head_tz`` (distance) is approximate, but consistent for one camera. (In the
head-motion simulation, whose camera has 0.78 x that focal length, assuming the true one instead
changes the gaze error by 1-2 %: the calibration's gain absorbs most of it.)

The pose minimises the landmarks' reprojection error (Levenberg-Marquardt, OpenCV). A stream's
first picture, and the first after one without a face, is solved to convergence from a frontal
guess (``cv2.solvePnP``, ~0.11 ms); every later one starts from the previous picture's pose and
takes at most :data:`WARM_ITERATIONS` (6) iterations (``cv2.solvePnPRefineLM``, ~0.065 ms; the
server's largest cost per browser-mode sample). The 6-point problem is ill-conditioned (the
distance trades off against the pitch), so each iteration gains only ~3x: the warm-started pose
lags the converged one by a small fraction of the picture-to-picture change. On the astronaut's
moving face at 15 Hz (tests/signals/test_head_pose.py) it stays within 0.06 deg and 0.07 mm of the
converged pose (tolerance stated there: 0.1 deg, 0.1 mm). With nothing moving, the converged pose
jitters with the landmarks by 0.2-0.9 deg (yaw, pitch, roll sd) and 0.3 cm (distance) for an
eye span of ~80 px, 0.7-1.5 deg and 1.7 cm for ~50 px (``benchmarks/landmark_jitter.py``: still
photo, sensor noise). Trackers of unrelated still pictures
(``static_image_mode``, ``gaze evaluate``) start every picture cold. A pose no face in a webcam's
picture has (:func:`_plausible`: behind the camera, farther than 5 m, turned 90 deg or more) is
not kept: a warm start that ends there is solved again cold, and a cold one that does gives NaN
values and leaves the next picture to start cold (landmarks that are no face's, which the
site's sample checks refuse, would otherwise lead the warm starts after them astray).
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

#: landmark index -> canonical model vertex (cm), from canonical_face_model.obj
CANONICAL_POINTS: dict[int, tuple[float, float, float]] = {
    1: (0.000000, -1.126865, 7.475604),  # nose tip
    33: (-4.445859, 2.663991, 3.173422),  # right eye, outer corner
    263: (4.445859, 2.663991, 3.173422),  # left eye, outer corner
    61: (-2.456206, -4.342621, 4.283884),  # mouth, right corner
    291: (2.456206, -4.342621, 4.283884),  # mouth, left corner
    152: (0.000000, -9.403378, 4.264492),  # chin
}
LANDMARKS = tuple(CANONICAL_POINTS)
_INDEX = np.array(LANDMARKS)
_MODEL = np.array([CANONICAL_POINTS[i] for i in LANDMARKS], dtype=np.float64) * np.array([1.0, -1.0, -1.0])

#: Levenberg-Marquardt iterations of a warm start (at most; fewer once a step changes the pose by
#: less than 1e-6 of its norm): see the module docstring for what this costs in accuracy
WARM_ITERATIONS = 6
_WARM = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, WARM_ITERATIONS, 1e-6)

COLUMNS = ("head_yaw", "head_pitch", "head_roll", "head_tx", "head_ty", "head_tz")


def focal_px(width: int, height: int) -> float:
    """The assumed focal length (px) of a ``width`` x ``height`` picture."""
    return float(width)


def camera_matrix(width: int, height: int) -> np.ndarray:
    f = focal_px(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


@lru_cache(maxsize=16)
def _camera(width: int, height: int) -> np.ndarray:
    m = camera_matrix(width, height)
    m.flags.writeable = False
    return m


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The rotation R = Ry(yaw) @ Rx(pitch) @ Rz(roll) (degrees; the inverse of :func:`euler_angles`)."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return ry @ rx @ rz


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix, R = Ry(yaw) @ Rx(pitch) @ Rz(roll).

    Signs, in camera axes: yaw > 0 turns the face towards image left (-x), pitch > 0 tilts the face
    down, roll > 0 turns it clockwise in the image.
    """
    (_, _, r02), (r10, r11, r12), (_, _, r22) = np.asarray(rotation, np.float64).tolist()
    pitch = math.asin(min(max(-r12, -1.0), 1.0))
    return math.degrees(math.atan2(r02, r22)), math.degrees(pitch), math.degrees(math.atan2(r10, r11))


class HeadPoseEstimator:
    """Head pose per picture of one stream, warm-started from the previous picture's pose."""

    def __init__(self) -> None:
        self._rvec: np.ndarray | None = None
        self._tvec: np.ndarray | None = None
        #: the last picture's pose (model -> camera): 3 x 3 rotation, translation (3,) in cm;
        #: None when it could not be solved
        self.rotation: np.ndarray | None = None
        self.translation: np.ndarray | None = None

    def reset(self) -> None:
        self._rvec = self._tvec = None
        self.rotation = self.translation = None

    def estimate(self, pts: np.ndarray, width: int, height: int) -> dict[str, float]:
        """Head pose from landmark pixel coordinates ``pts`` (N x 2) of a ``width`` x ``height`` image.

        Returns ``head_yaw/pitch/roll`` (deg) and ``head_tx/ty/tz`` (cm, camera axes; ``tz`` is
        the distance from the camera); NaN values when the pose cannot be solved.
        """
        image_points = np.ascontiguousarray(pts[_INDEX], dtype=np.float64)
        cam = _camera(int(width), int(height))
        warm = self._rvec is not None
        if warm:  # from the stream's last pose: a few iterations
            rvec, tvec = cv2.solvePnPRefineLM(_MODEL, image_points, cam, None, self._rvec, self._tvec, _WARM)
            pose = _plausible(rvec, tvec)
        if not warm or pose is None:  # a cold start: solved to convergence from a frontal guess
            # (also when the warm start ended where no face can be: a pose carried on from there
            # would lead the pictures after it astray)
            ok, rvec, tvec = cv2.solvePnP(_MODEL, image_points, cam, None, np.zeros((3, 1)),
                                          np.array([[0.0], [0.0], [60.0]]), useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
            pose = _plausible(rvec, tvec) if ok else None
        if pose is None:
            self.reset()
            return dict.fromkeys(COLUMNS, float("nan"))
        self._rvec, self._tvec = rvec, tvec
        self.rotation, self.translation = pose[0], tvec.ravel()
        return dict(zip(COLUMNS, pose[1]))


#: a head farther from the camera than this (cm), or turned from it by this much or more (yaw or
#: pitch, deg), is no pose a face in a webcam's picture has: the landmarks fitted are not a face's
MAX_DISTANCE_CM, MAX_TURN_DEG = 500.0, 90.0


def _plausible(rvec: np.ndarray, tvec: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]] | None:
    """(rotation matrix, the row's six values) of a solved pose, or None where no face can be:
    not finite, behind the camera or farther than :data:`MAX_DISTANCE_CM`, turned by
    :data:`MAX_TURN_DEG` or more."""
    tx, ty, tz = tvec.ravel().tolist()
    if not (math.isfinite(tx) and math.isfinite(ty) and 0.0 < tz <= MAX_DISTANCE_CM) or not np.isfinite(rvec).all():
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    yaw, pitch, roll = euler_angles(rotation)
    if not (abs(yaw) < MAX_TURN_DEG and abs(pitch) < MAX_TURN_DEG):
        return None
    return rotation, (yaw, pitch, roll, tx, ty, tz)
