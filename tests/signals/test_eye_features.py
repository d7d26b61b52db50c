"""Eye geometry from landmarks (:mod:`gazepref.signals.eye_features`): the values of a drawn eye,
their independence of roll and scale, and a batch of pictures giving each picture's values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gazepref.signals.eye_features import EYES, eye_geometry, geometry_columns, geometry_values

LEFT = EYES[0]  # the person's left eye: corners 362 (image left) and 263


def drawn_eye(angle_deg: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0)) -> np.ndarray:
    """478 x 2 landmarks (NaN but the left eye's): corners (100, 100) and (140, 100), the upper
    lid 8 px above the corner line, the lower 6 px below, the iris at (124, 98); then turned by
    ``angle_deg`` about the origin, scaled and shifted."""
    pts = np.full((478, 2), np.nan)
    pts[362], pts[263] = (100, 100), (140, 100)
    pts[[385, 386, 387]] = (112, 92), (120, 92), (128, 92)
    pts[[380, 374, 373]] = (112, 106), (120, 106), (128, 106)
    pts[473] = (124, 98)
    a = math.radians(angle_deg)
    turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return pts @ turn.T * scale + np.asarray(shift)


#: the drawn eye's geometry by hand: iris 4 px along the 40 px corner line, 2 px above it; lids
#: -8 and +6 px; the iris 6/14 of the way from the upper to the lower lid; openness (14 + 14) / 80
EXPECTED = {"iris_u": 0.1, "iris_v": -0.05, "iris_lid": 6 / 14, "upper_lid": -0.2, "lower_lid": 0.15, "open": 0.35}


@pytest.mark.parametrize("angle, scale, shift", [(0, 1, (0, 0)), (30, 2, (5, -7)), (-12, 0.5, (300, 40))])
def test_a_drawn_eye_reads_as_drawn_whatever_its_roll_and_size(angle, scale, shift):
    got = eye_geometry(drawn_eye(angle, scale, shift), LEFT)
    assert got == pytest.approx({f"eye_l_{k}": v for k, v in EXPECTED.items()}, abs=1e-12)


def test_coinciding_corners_give_no_geometry():
    pts = drawn_eye()
    pts[263] = pts[362]
    assert all(math.isnan(v) for v in eye_geometry(pts, LEFT).values())


def test_lids_on_one_line_give_no_iris_lid_position():
    pts = drawn_eye()
    pts[[380, 374, 373]] = pts[[385, 386, 387]]  # the eye closed: no span between the lids
    got = eye_geometry(pts, LEFT)
    assert math.isnan(got["eye_l_iris_lid"])
    assert got["eye_l_open"] == 0.0 and got["eye_l_iris_u"] == pytest.approx(0.1)


def test_a_batch_gives_each_pictures_geometry():
    """``geometry_values`` of K pictures at once: row k is picture k's geometry alone, both eyes
    in column order, whatever else is in the batch (a closed eye, coinciding corners, an eye
    without landmarks)."""
    rng = np.random.default_rng(3)
    pictures = [drawn_eye(a, s, (x, y)) for a, s, x, y in rng.uniform([-20, 0.5, -50, -50], [20, 3, 50, 50], (6, 4))]
    for pts in pictures:  # the right eye: the left one moved 200 px to image left, its iris elsewhere
        right = [33, 133, 160, 159, 158, 144, 145, 153, 468]
        pts[right] = pts[[362, 263, 385, 386, 387, 380, 374, 373, 473]] - (200, 0)
        pts[468] += rng.normal(0, 2, 2)
    pictures[1][263] = pictures[1][362]
    pictures[2][[380, 374, 373]] = pictures[2][[385, 386, 387]]
    pictures[3][[33, 133]] = np.nan
    batch = geometry_values(np.stack(pictures))
    assert batch.shape == (6, 12)
    columns = [c for eye in EYES for c in geometry_columns(eye.name)]
    for k, pts in enumerate(pictures):
        alone = {c: v for eye in EYES for c, v in eye_geometry(pts, eye).items()}
        np.testing.assert_array_equal(batch[k], [alone[c] for c in columns])
        np.testing.assert_array_equal(geometry_values(pts), batch[k])
    assert np.isnan(batch[1, :6]).all() and np.isfinite(batch[1, 6:]).all()
    assert np.isnan(batch[3, 6:]).all() and np.isfinite(batch[3, :6]).all()
