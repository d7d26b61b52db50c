"""The simulated 3-D face used to test the calibration under head movement."""
from __future__ import annotations

import numpy as np

from gazepref.signals import synthetic_gaze as sg


def test_face_model_is_a_face_in_head_axes():
    face = sg.face_model()
    assert face.shape == (478, 3)
    assert np.isclose(np.linalg.norm(face[263] - face[33]), sg.EYE_SPAN_CM)
    assert face[1, 2] < face[33, 2] - 1.0  # the nose tip is nearer the camera than the eye corners
    assert face[152, 1] > face[1, 1] > face[33, 1]  # chin below the nose below the eyes (y down)


def test_eyes_turn_to_the_target():
    """The viewport's right is the picture's left (the camera faces the person): the irises move
    to picture left; a target lower on the screen moves them down; the corners stay."""
    at = {t: sg.landmarks(sg.Person(), np.eye(3), np.array([0.0, 10.0, 60.0]), t) for t in
          ((200, 475), (1350, 475), (775, 100), (775, 850))}
    for iris in (468, 473):
        assert at[(1350, 475)][iris, 0] < at[(200, 475)][iris, 0] - 2
        assert at[(775, 850)][iris, 1] > at[(775, 100)][iris, 1] + 1
    np.testing.assert_allclose(at[(200, 475)][[33, 133, 263, 362]], at[(1350, 475)][[33, 133, 263, 362]])


def test_people_are_reproducible_sittings():
    a = sg.people(2, 2, seed=7, repeats=1)
    b = sg.people(2, 2, seed=7, repeats=1)
    assert len(a) == 2
    rows, targets, sessions = a[0]
    assert len(rows) == len(targets) == len(sessions) == 2 * len(sg.GRID)
    assert list(np.unique(sessions)) == ["s0", "s1"]
    assert np.isfinite(rows[["sight_x_cm", "sight_y_cm", "eye_l_iris_u", "head_yaw"]].to_numpy()).all()
    np.testing.assert_allclose(rows["sight_x_cm"], b[0][0]["sight_x_cm"])
    # a new sitting puts the head elsewhere
    assert abs(rows.loc[sessions == "s0", "head_tz"].mean() - rows.loc[sessions == "s1", "head_tz"].mean()) > 0.5 or \
        abs(rows.loc[sessions == "s0", "head_tx"].mean() - rows.loc[sessions == "s1", "head_tx"].mean()) > 0.5
