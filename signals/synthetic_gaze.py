"""Simulated webcam landmarks of people looking at screen targets as their heads move, for tests
and benchmarks of the gaze calibration. Nothing here is used by the pipeline itself.

:mod:`.synthetic_face` moves a photo's eyes, but a photo cannot turn its head. Here the face is
3-D: MediaPipe Face Mesh's landmarks of the astronaut photo *with their depth* (Face Mesh gives
z on the scale of x), in head axes (x along the outer eye corners, y down, z away from the
camera), scaled to :data:`EYE_SPAN_CM` between the outer corners. Each eye is a sphere turning
about a centre :data:`CENTRE_BEHIND_CM` behind its corners' midpoint; its iris landmark lies
:data:`IRIS_RADIUS_CM` from that centre, and its lids follow vertical gaze. These constants are
deliberately not those the pipeline assumes (:mod:`.line_of_sight`), nor is the camera: the
picture is a pinhole projection with focal length :data:`FOCAL_PX`, not the pipeline's image
width. A :class:`Person` adds what differs between people: the angle between the optical and
visual axes (kappa), an iris landmark that under-reports the eye's turn (``iris_gain``), how far
the lids follow, and the face's proportions.

A session puts the head somewhere in front of the screen (a laptop's camera 1 cm above the
viewport's top centre): 45-75 cm away, up to 7 cm to either side, its eyes 6-16 cm below the
camera, turned by a few degrees; within it the head jitters and turns a little towards each
target. Landmarks get Gaussian pixel noise. The rows are what :class:`.webcam.GazeTracker`
computes from such landmarks (its browser-mode path), so every feature is the pipeline's own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from . import head_pose
from .synthetic_face import FOCAL_PX, PX_PER_CM, screen_cm
from .webcam import FaceSample, GazeTracker

#: the simulated picture (px); camera and screen are :mod:`.synthetic_face`'s (``FOCAL_PX``,
#: ``PX_PER_CM``, ``screen_cm``: a ~65 deg webcam 1 cm above a 1550 x 950 viewport's top centre)
PICTURE = (640, 480)
#: the face and eyes (cm)
EYE_SPAN_CM, IRIS_RADIUS_CM, CENTRE_BEHIND_CM = 8.9, 1.2, 0.7
#: 16-point grid of a calibration round (viewport CSS px)
GRID = tuple((x, y) for y in (100, 350, 600, 850) for x in (100, 550, 1000, 1450))
#: per eye: corners, iris centre, upper-lid and lower-lid points (face-mesh indices)
_EYES = (
    (33, 133, 468, (160, 159, 158, 161, 157), (144, 145, 153, 163, 154)),
    (362, 263, 473, (385, 386, 387, 384, 388), (380, 374, 373, 381, 390)),
)


@lru_cache(maxsize=1)
def face_model() -> np.ndarray:
    """The 3-D face (478 x 3, cm, head axes) from Face Mesh's landmarks of the astronaut photo."""
    import cv2
    import mediapipe as mp

    from .synthetic_face import face_frame

    w, h = PICTURE
    rgb = cv2.cvtColor(face_frame(scale=1.6, size=PICTURE), cv2.COLOR_BGR2RGB)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as mesh:
        found = mesh.process(rgb).multi_face_landmarks
    if not found:
        raise RuntimeError("Face Mesh found no face in the astronaut photo")
    pts = np.array([(p.x * w, p.y * h, p.z * w) for p in found[0].landmark])
    a, b = pts[33], pts[263]
    ex = (b - a) / np.linalg.norm(b - a)
    down = pts[152] - (a + b) / 2
    down -= ex * (down @ ex)
    ey = down / np.linalg.norm(down)
    axes = np.stack([ex, ey, np.cross(ex, ey)])
    return ((pts - (a + b) / 2) @ axes.T) * (EYE_SPAN_CM / np.linalg.norm(b - a))


#: head -> camera rotation from yaw, pitch, roll (deg), the convention of :mod:`.head_pose`
rotation = head_pose.rotation_matrix


def screen_point_cm(target_px: tuple[float, float] | np.ndarray) -> np.ndarray:
    """A viewport point (CSS px) in camera axes (cm, in the camera's plane): a 3-vector."""
    return np.array([*screen_cm(tuple(target_px)), 0.0])


@dataclass(frozen=True)
class Person:
    """What differs between people: kappa (deg, horizontal and vertical), the iris landmark's
    gain (its turn as seen by the landmark / the eye's turn), how far the upper lid follows
    vertical gaze (fraction of the iris's vertical travel), the face's proportions (x, y, z),
    the iris's distance from the eye's centre of rotation and that centre's depth behind the
    corners (cm)."""

    kappa_deg: tuple[float, float] = (0.0, 0.0)
    iris_gain: float = 1.0
    lid_follow: float = 0.45
    shape: tuple[float, float, float] = (1.0, 1.0, 1.0)
    iris_radius_cm: float = IRIS_RADIUS_CM
    centre_behind_cm: float = CENTRE_BEHIND_CM

    @classmethod
    def random(cls, rng: np.random.Generator) -> Person:
        return cls((float(rng.normal(0, 2.0)), float(rng.normal(0, 1.5))), float(rng.uniform(0.75, 1.0)),
                   float(rng.uniform(0.3, 0.6)), tuple(float(v) for v in 1 + rng.normal(0, 0.04, 3)))


def landmarks(person: Person, head_rotation: np.ndarray, head_position_cm: np.ndarray,
              target_px: tuple[float, float] | np.ndarray, rng: np.random.Generator | None = None,
              noise_px: float = 0.6, fixation_deg: float = 0.5, focal_px: float = FOCAL_PX) -> np.ndarray:
    """Landmark pixel coordinates (478 x 2) of ``person`` looking at ``target_px`` with the head
    at ``head_position_cm`` (camera axes) turned by ``head_rotation``, through a camera of focal
    length ``focal_px``; ``noise_px`` and ``fixation_deg`` are standard deviations (need ``rng``;
    0 without one)."""
    shape = np.asarray(person.shape)
    face = face_model() * shape
    pts = face @ head_rotation.T + head_position_cm
    target = screen_point_cm(target_px)
    fix = rng.normal(0, math.radians(fixation_deg), 2) if rng is not None and fixation_deg else np.zeros(2)
    for c1, c2, iris, upper, lower in _EYES:
        centre_h = (face[c1] + face[c2]) / 2 + (0.0, 0.0, person.centre_behind_cm)
        centre = head_rotation @ centre_h + head_position_cm
        d = head_rotation.T @ (target - centre)  # the visual axis in head axes
        yaw = math.atan2(d[0], -d[2]) - math.radians(person.kappa_deg[0]) + fix[0]
        pitch = math.atan2(d[1], math.hypot(d[0], d[2])) - math.radians(person.kappa_deg[1]) + fix[1]
        yaw, pitch = yaw * person.iris_gain, pitch * person.iris_gain
        axis = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])
        pts[iris] = head_rotation @ (centre_h + person.iris_radius_cm * axis) + head_position_cm
        for idx, follow in ((upper, person.lid_follow), (lower, 0.3 * person.lid_follow)):
            drop = np.array([0.0, follow * person.iris_radius_cm * math.sin(pitch), 0.0])
            pts[list(idx)] = (face[list(idx)] + drop) @ head_rotation.T + head_position_cm
    uv = focal_px * pts[:, :2] / pts[:, 2:3] + np.array(PICTURE) / 2
    if rng is not None and noise_px:
        uv = uv + rng.normal(0, noise_px, uv.shape)
    return uv


@dataclass
class Sitting:
    """Where the head is during one session: position (cm, camera axes) and turn (yaw, pitch,
    roll deg); per picture it jitters by ``jitter_cm`` / ``jitter_deg`` and turns ``follow`` of
    the way towards the target."""

    position_cm: np.ndarray
    angles_deg: np.ndarray
    jitter_cm: float = 0.5
    jitter_deg: float = 1.0
    follow: float = 0.15

    @classmethod
    def random(cls, rng: np.random.Generator) -> Sitting:
        return cls(np.array([rng.uniform(-7, 7), rng.uniform(6, 16), rng.uniform(45, 75)]),
                   np.array([rng.normal(0, 5), rng.normal(-5, 5), rng.normal(0, 3)]))

    def pose(self, target_px: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d = screen_point_cm(target_px) - self.position_cm
        # the face turned by `follow` towards the target: yaw > 0 turns it to image left (-x),
        # pitch > 0 down (+y) (head_pose.euler_angles)
        towards = np.array([math.degrees(math.atan2(-d[0], -d[2])), math.degrees(math.atan2(d[1], -d[2])) - 15, 0.0])
        angles = self.angles_deg + self.follow * towards + rng.normal(0, self.jitter_deg, 3)
        return rotation(*angles), self.position_cm + rng.normal(0, self.jitter_cm, 3)


def session_rows(person: Person, sitting: Sitting, rng: np.random.Generator, targets=GRID, repeats: int = 3,
                 noise_px: float = 0.6) -> tuple[pd.DataFrame, np.ndarray]:
    """Tracker rows (no eye patches) and their targets (n x 2 px): ``repeats`` pictures per target."""
    tracker = GazeTracker(static_image_mode=True, patch_size=None)
    rows, ys = [], []
    for _ in range(repeats):
        for target in targets:
            looked = np.asarray(target, float) + rng.normal(0, 20, 2)
            rot, pos = sitting.pose(tuple(looked), rng)
            pts = landmarks(person, rot, pos, looked, rng, noise_px=noise_px)
            sample = FaceSample(pts, *PICTURE, tuple(pts[:468].mean(axis=0)), 1, 120.0, 0.3, None)
            rows.append(tracker.process_sample(sample))
            ys.append(target)
    return pd.DataFrame(rows), np.asarray(ys, float)


def people(n_people: int, n_sessions: int, seed: int = 0, repeats: int = 3,
           ) -> list[tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    """Per simulated person: (rows, targets, session of each row), each session a new sitting."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_people):
        person = Person.random(rng)
        frames, ys, sessions = [], [], []
        for s in range(n_sessions):
            rows, y = session_rows(person, Sitting.random(rng), rng, repeats=repeats)
            frames.append(rows)
            ys.append(y)
            sessions += [f"s{s}"] * len(rows)
        out.append((pd.concat(frames, ignore_index=True), np.concatenate(ys), np.asarray(sessions)))
    return out
