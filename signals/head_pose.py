"""Head pose from face-mesh landmarks with ``cv2.solvePnP`` on a canonical face model.

The 3-D points are vertices of MediaPipe's canonical face model
(``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, vertex *i* = landmark *i*,
units cm, x to the person's left, y up, z out of the face). We convert them to OpenCV's camera
axes (x right in the image, y down, z away from the camera) by negating y and z, so a face looking
straight into the camera has yaw = pitch = roll = 0.

The camera is modelled as a pinhole with focal length = image width (a ~53 deg horizontal field
of view, typical of laptop webcams), principal point at the image centre and no distortion, so
``head_tz`` (distance) is approximate, but consistent for one camera.
"""
from __future__ import annotations

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
_MODEL = np.array([CANONICAL_POINTS[i] for i in LANDMARKS], dtype=np.float64) * np.array([1.0, -1.0, -1.0])

COLUMNS = ("head_yaw", "head_pitch", "head_roll", "head_tx", "head_ty", "head_tz")


def camera_matrix(width: int, height: int) -> np.ndarray:
    f = float(width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix, R = Ry(yaw) @ Rx(pitch) @ Rz(roll).

    Signs, in camera axes: yaw > 0 turns the face towards image right, pitch > 0 tilts the face
    down, roll > 0 turns it clockwise in the image.
    """
    r = rotation
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 2], r[2, 2])
    roll = np.arctan2(r[1, 0], r[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


class HeadPoseEstimator:
    """solvePnP per frame, warm-started from the previous frame's pose of the same stream."""

    def __init__(self) -> None:
        self._rvec: np.ndarray | None = None
        self._tvec: np.ndarray | None = None

    def reset(self) -> None:
        self._rvec = self._tvec = None

    def estimate(self, pts: np.ndarray, width: int, height: int) -> dict[str, float]:
        """Head pose from landmark pixel coordinates ``pts`` (N x 2) of a ``width`` x ``height`` image.

        Returns ``head_yaw/pitch/roll`` (deg) and ``head_tx/ty/tz`` (cm, camera axes; ``tz`` is
        the distance from the camera); NaN values when the pose cannot be solved.
        """
        image_points = np.ascontiguousarray(pts[list(LANDMARKS)], dtype=np.float64)
        cam = camera_matrix(width, height)
        guess = self._rvec is not None
        rvec = self._rvec.copy() if guess else np.zeros((3, 1))
        tvec = self._tvec.copy() if guess else np.array([[0.0], [0.0], [60.0]])
        ok, rvec, tvec = cv2.solvePnP(_MODEL, image_points, cam, None, rvec, tvec,
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
            self.reset()
            return dict.fromkeys(COLUMNS, float("nan"))
        self._rvec, self._tvec = rvec, tvec
        rotation, _ = cv2.Rodrigues(rvec)
        values = (*euler_angles(rotation), *(float(v) for v in tvec.ravel()))
        return dict(zip(COLUMNS, values))
