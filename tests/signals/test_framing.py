"""Camera set-up advice from a frame's tracker row, with distance bounds derived from the stated
geometry; real Face Mesh rows of the astronaut photo in several framings."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gazepref.signals.framing import GEOMETRY, FramingGeometry, face_size_bounds, framing_advice, span_fraction

pytest.importorskip("mediapipe")
pytest.importorskip("skimage.data")


def test_bounds_follow_from_the_geometry():
    lo, hi = face_size_bounds()
    # 8.82 cm eye-corner span; 90 cm with a 75-degree camera, 40 cm with a 55-degree one
    assert GEOMETRY.span_cm == pytest.approx(8.82)
    assert lo == pytest.approx(8.82 / (180 * math.tan(math.radians(37.5))), abs=1e-3)
    assert hi == pytest.approx(8.82 / (80 * math.tan(math.radians(27.5))), abs=1e-3)
    # the former fixed bound (0.12) is ~58 cm with a 65-degree camera: a normal framing failed it
    assert 55 < 8.82 / (0.12 * 2 * math.tan(math.radians(32.5))) < 60
    assert span_fraction(78, 65) == pytest.approx(0.089, abs=0.002)  # the head-and-shoulders framing
    narrow = face_size_bounds(FramingGeometry(distance_cm=(50.0, 70.0)))
    assert lo < narrow[0] < narrow[1] < hi


def row_of(image):
    from gazepref.signals.webcam import GazeTracker

    with GazeTracker(static_image_mode=True) as tracker:
        return tracker.process_image(image, 0.0)


@pytest.mark.parametrize("framing, code", [
    ("head-and-shoulders", "ok"),   # eye span ~9 % of the width: ~78 cm from a 65-degree camera
    ("near", "near"),
    ("far", "far"),
    # off centre and small: the mesh's own detector misses these (face_mesh.py, "Small faces")
    ("small-to-the-side", "ok"),    # eye span ~0.069, accepted from 0.064
    ("far-to-the-side", "far"),     # eye span ~0.061: "move closer", not "no face found"
    ("image-left", "left"),         # the face in the image's left part: the participant's right
    ("image-right", "right"),
    ("dim", "dark"),
    ("black", "dark"),              # a covered camera: "dark", not "no face found"
    ("over-exposed", "bright"),     # most of the face saturated (webcam.QualityThresholds.overexposed)
    ("empty", "no-face"),
    ("two-faces", "several"),
])
def test_advice_for_real_framings(framing, code):
    from gazepref.signals.synthetic_face import face_frame, head_and_shoulders

    frames = {
        "head-and-shoulders": lambda: head_and_shoulders(),
        "near": lambda: face_frame(2.2),
        "far": lambda: face_frame(0.48, size=(640, 480)),  # eye span ~5.6 % of the width
        "small-to-the-side": lambda: face_frame(0.55, dx=-110, size=(640, 480)),
        "far-to-the-side": lambda: face_frame(0.48, dx=120, size=(640, 480)),
        "image-left": lambda: face_frame(0.9, dx=-120),
        "image-right": lambda: face_frame(0.9, dx=120),
        "dim": lambda: head_and_shoulders(brightness=0.2),
        "black": lambda: np.zeros((240, 320, 3), np.uint8),
        "over-exposed": lambda: face_frame(1.0, size=(640, 480), brightness=1.8),
        "empty": lambda: np.full((240, 320, 3), 128, np.uint8),
        "two-faces": lambda: np.hstack([face_frame(0.9, size=(320, 480))] * 2),
    }
    row = row_of(frames[framing]())
    got, message = framing_advice(row)
    assert got == code, (framing, got, message, row.get("face_size"))
    assert message and (code == "ok") == (message == "Face well placed.")


def test_no_frame_waits():
    assert framing_advice(None)[0] == "no-frame"
