"""Line of sight: where the eyes' optical axes meet the camera's plane follows what is looked at,
not where the head is (simulated 3-D face of :mod:`gazepref.signals.synthetic_gaze`, whose eye
model and camera differ from the ones :mod:`gazepref.signals.line_of_sight` assumes)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gazepref.signals import line_of_sight
from gazepref.signals import synthetic_gaze as sg
from gazepref.signals.eye_features import EYES, eye_geometry
from gazepref.signals.head_pose import HeadPoseEstimator

#: (head position cm, head yaw/pitch/roll deg): to the sides, nearer, further, turned, tilted
POSTURES = [
    ((0, 10, 60), (0, 0, 0)), ((6, 8, 60), (0, 0, 0)), ((-6, 14, 60), (0, 0, 0)), ((0, 10, 48), (0, 0, 0)),
    ((0, 10, 72), (0, 0, 0)), ((0, 10, 60), (8, 0, 0)), ((0, 10, 60), (-8, 0, 0)), ((0, 10, 60), (0, 8, 0)),
    ((0, 10, 60), (0, -8, 0)), ((3, 12, 55), (5, -5, 4)),
]
TARGET = (1000.0, 600.0)


def sight(pts: np.ndarray) -> np.ndarray:
    pose = HeadPoseEstimator()
    pose.estimate(pts, *sg.PICTURE)
    point = line_of_sight.sight_point(pts, *sg.PICTURE, pose.rotation, pose.translation)
    return np.array([point[c] for c in line_of_sight.COLUMNS])


def iris(pts: np.ndarray) -> np.ndarray:
    """The eye-in-head features a one-stage model reads: mean iris offsets of both eyes."""
    g = [eye_geometry(pts, e) for e in EYES]
    return np.array([np.mean([d[f"eye_{e.name}_iris_u"] for d, e in zip(g, EYES)]),
                     np.mean([d[f"eye_{e.name}_iris_v"] for d, e in zip(g, EYES)])])


def look(target, position=(0, 10, 60), angles=(0, 0, 0)) -> np.ndarray:
    return sg.landmarks(sg.Person(), sg.rotation(*angles), np.array(position, float), target)


def gain_per_cm(feature, at=look) -> np.ndarray:
    """Change of ``feature`` per cm of target movement on the screen (x, y), frontal posture."""
    dx = (feature(at((TARGET[0] + 450, TARGET[1]))) - feature(at((TARGET[0] - 450, TARGET[1]))))[0]
    dy = (feature(at((TARGET[0], TARGET[1] + 225))) - feature(at((TARGET[0], TARGET[1] - 225))))[1]
    return np.abs([dx / (900 / sg.PX_PER_CM), dy / (450 / sg.PX_PER_CM)])


def test_sight_is_in_cm_of_the_plane():
    """Moving the target by 1 cm moves the sight point by about 1 cm in the pipeline's units, in
    the direction the camera sees. Not exactly: the simulated camera's focal length (500 px) is
    not the assumed one (640 px: depths come out 1.28 x too large) and its iris sits 1.2 cm from
    the eye's centre, not 1.05 cm (turns read 1.14 x too large); the calibration's gain absorbs
    both. With the pipeline's own camera and eye the gain is ~1."""
    assert gain_per_cm(sight) == pytest.approx(1.28 * 1.14, rel=0.2)
    own = sg.Person(iris_radius_cm=line_of_sight.IRIS_RADIUS_CM)
    g = gain_per_cm(sight, lambda t: sg.landmarks(own, np.eye(3), np.array([0.0, 10.0, 60.0]), t, focal_px=640))
    assert g == pytest.approx(1.0, rel=0.15)
    left, right = sight(look((300, 475))), sight(look((1250, 475)))
    assert left[0] > right[0]  # the viewport's left is the camera picture's right


def test_sight_stays_when_the_head_moves_and_the_gaze_does_not():
    """Looking at one point from ten postures (6 cm to the sides, 12 cm nearer or further,
    turned or tilted by 8 deg): in cm of target movement, the sight point spreads less than half
    as far as the iris-in-eye features a one-stage model reads (measured: 2.2 against 5.3 cm).
    Not all the way to zero: the gains above differ for the eye's turn and the head's place, and
    no single sitting can tell them apart (docs/gaze.md, "Accuracy")."""
    pictures = [look(TARGET, p, a) for p, a in POSTURES]
    spread = {}
    for feature in (sight, iris):
        values = np.array([feature(p) for p in pictures]) / gain_per_cm(feature)  # cm of target movement
        spread[feature.__name__] = float(np.max(np.linalg.norm(values - values.mean(axis=0), axis=1)))
    assert spread["iris"] > 4.0
    assert spread["sight"] < 0.5 * spread["iris"]


def test_no_pose_no_sight():
    pts = look(TARGET)
    assert all(math.isnan(v) for v in line_of_sight.sight_point(pts, *sg.PICTURE, None, None).values())
    pose = HeadPoseEstimator()
    pose.estimate(pts, *sg.PICTURE)
    missing = pts.copy()
    missing[[468, 473]] = np.nan  # no iris landmarks: no eye to follow
    assert all(math.isnan(v) for v in line_of_sight.sight_point(missing, *sg.PICTURE, pose.rotation,
                                                                   pose.translation).values())


def test_one_eye_is_enough():
    pts = look(TARGET)
    pose = HeadPoseEstimator()
    pose.estimate(pts, *sg.PICTURE)
    both = sight(pts)
    one = pts.copy()
    one[473] = np.nan
    single = line_of_sight.sight_point(one, *sg.PICTURE, pose.rotation, pose.translation)
    assert np.isfinite(list(single.values())).all()
    assert np.linalg.norm(np.array(list(single.values())) - both) < 3.0  # the two eyes agree within a few cm


def test_the_tracker_rows_carry_the_sight_point():
    from gazepref.signals.webcam import FaceSample, GazeTracker, feature_columns

    pts = look(TARGET)
    row = GazeTracker(patch_size=None).process_sample(FaceSample(pts, *sg.PICTURE, tuple(pts[:468].mean(axis=0)), 1))
    assert set(line_of_sight.COLUMNS) <= set(feature_columns(None))
    assert np.array([row[c] for c in line_of_sight.COLUMNS]) == pytest.approx(sight(pts), abs=1e-6)


def test_an_eye_the_head_pose_cannot_explain_is_left_out():
    """An iris landmark further from the eye's centre than the eye allows (landmarks and head pose
    disagree: a wrong pose on a small face) gave a point tens of metres off before, which a
    calibration then standardised every other row against. Now the eye's turn in the head grows
    with the iris's offset up to :data:`line_of_sight.MAX_EYE_TURN_DEG`, beyond it (or where the
    camera ray misses the eye) the eye is left out, and with both eyes out there is no point."""
    pts = look((775.0, 475.0))
    pose = HeadPoseEstimator()
    pose.estimate(pts, *sg.PICTURE)
    forward = -pose.rotation[:, 2]
    outer, inner, iris = eye = line_of_sight.EYE_POINTS[0]
    width = float(np.linalg.norm(pts[outer] - pts[inner]))
    turns = []
    for shift in np.arange(0.0, 0.8, 0.025):  # the iris moved to image right (eye widths)
        moved = pts.copy()
        moved[iris] += (shift * width, 0.0)
        ray = line_of_sight.eye_ray(moved, *sg.PICTURE, pose.rotation, pose.translation, eye)
        turns.append(None if ray is None else math.degrees(math.acos(float(np.dot(ray[1], forward)))))
    kept = [t for t in turns if t is not None]
    assert turns[0] is not None and turns[-1] is None
    assert turns.index(None) == len(kept)  # once out, out for every larger offset
    assert np.all(np.diff(kept) > 0) and max(kept) <= line_of_sight.MAX_EYE_TURN_DEG
    assert max(kept) > line_of_sight.MAX_EYE_TURN_DEG - 5
    beyond = pts.copy()
    for o, i, ir in line_of_sight.EYE_POINTS:
        beyond[ir] += 0.8 * (beyond[o] - beyond[i])  # each iris 0.8 eye widths towards its outer corner
    point = line_of_sight.sight_point(beyond, *sg.PICTURE, pose.rotation, pose.translation)
    assert all(math.isnan(v) for v in point.values())


def test_a_batch_gives_each_pictures_sight_point():
    """``sight_points`` of K pictures at once (the tracker's path for a batch of samples): row k
    is picture k's point alone, whatever else is in the batch: one eye without its iris, a picture
    without a head pose (NaN), an eye turned past what the head pose explains, pictures of two
    sizes."""
    pictures, sizes, poses = [], [], []
    for k, (position, angles) in enumerate(POSTURES):
        pts = look(TARGET, position, angles)
        size = sg.PICTURE if k % 2 else (sg.PICTURE[0] // 2, sg.PICTURE[1] // 2)
        pts = pts if k % 2 else pts / 2.0
        pose = HeadPoseEstimator()
        pose.estimate(pts, *size)
        pictures.append(pts)
        sizes.append(size)
        poses.append((pose.rotation, pose.translation))
    pictures[2][473] = np.nan
    poses[4] = (np.full((3, 3), np.nan), np.full(3, np.nan))
    outer, inner, iris = line_of_sight.EYE_POINTS[0]
    pictures[6][iris] += (0.9 * float(np.linalg.norm(pictures[6][outer] - pictures[6][inner])), 0.0)
    width, height = (np.array(v, float) for v in zip(*sizes))
    batch = line_of_sight.sight_points(np.stack(pictures), width, height, np.stack([r for r, _ in poses]),
                                       np.stack([t for _, t in poses]))
    assert batch.shape == (len(POSTURES), 2)
    for k, (pts, size, (rotation, translation)) in enumerate(zip(pictures, sizes, poses)):
        alone = line_of_sight.sight_point(pts, *size, rotation, translation)
        np.testing.assert_array_equal(batch[k], [alone[c] for c in line_of_sight.COLUMNS])
    assert np.isnan(batch[4]).all() and np.isfinite(np.delete(batch, 4, axis=0)).all()
    assert line_of_sight.eye_ray(pictures[6], *sizes[6], *poses[6], line_of_sight.EYE_POINTS[0]) is None
    assert line_of_sight.eye_ray(pictures[2], *sizes[2], *poses[2], line_of_sight.EYE_POINTS[1]) is None
