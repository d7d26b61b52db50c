"""MediaPipe wrappers of the webcam pipeline: landmark decoding and the periodic face count."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from mediapipe.framework.formats import landmark_pb2

from gazepref.signals.face_mesh import (SMALL_FACE_PAUSE_FRAMES, FaceCounter, FaceMeshRunner, _proto_landmarks,
                                       decode_landmarks)


def landmark_list(points, **extra) -> landmark_pb2.NormalizedLandmarkList:
    out = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        out.landmark.add(x=x, y=y, z=z, **extra)
    return out


def test_decode_matches_protobuf_parsing():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.2, 1.2, (478, 3)).astype(np.float32)
    pts[5] = 0.0  # zeros are written too (proto2 optional fields)
    msg = landmark_list(pts.tolist())
    decoded = decode_landmarks(msg.SerializeToString(), 320, 240)
    assert decoded is not None and decoded.shape == (478, 2) and decoded.dtype == np.float64
    np.testing.assert_array_equal(decoded, _proto_landmarks(msg, 320, 240))
    with_visibility = landmark_list(pts.tolist(), visibility=0.5, presence=0.9)
    np.testing.assert_array_equal(decode_landmarks(with_visibility.SerializeToString(), 320, 240), decoded)


def test_decode_refuses_other_layouts():
    msg = landmark_list([(0.1, 0.2, 0.3)] * 3)
    msg.landmark[1].ClearField("x")  # records of different lengths
    assert decode_landmarks(msg.SerializeToString(), 320, 240) is None
    missing_x = landmark_pb2.NormalizedLandmarkList()
    for _ in range(3):
        missing_x.landmark.add(y=0.5, z=0.1, visibility=0.2)
    assert decode_landmarks(missing_x.SerializeToString(), 320, 240) is None
    assert decode_landmarks(b"", 320, 240) is None


def test_runner_lean_call_equals_the_public_api(face_frame):
    rgb = cv2.cvtColor(face_frame(scale=1.1), cv2.COLOR_BGR2RGB)
    lean, public = FaceMeshRunner(static_image_mode=True), FaceMeshRunner(static_image_mode=True)
    public._lean = None
    try:
        a, b = lean.process(rgb), public.process(rgb)
        assert lean._lean is not None, "the installed MediaPipe offers the lean call"
        assert len(a) == len(b) == 1 and a[0].shape == (478, 2)
        np.testing.assert_array_equal(a[0], b[0])
        assert lean.process(np.zeros((240, 320, 3), np.uint8)) == []
    finally:
        lean.close()
        public.close()


class FakeDetector(FaceCounter):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.faces = 1

    def _detect(self, rgb):
        self.checks += 1
        return self.faces


def test_counter_checks_by_stream_time_and_after_a_lost_face():
    c = FakeDetector(every_ms=1000)
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert c.count(rgb, 0.0) == 1 and c.checks == 1
    c.faces = 2
    assert [c.count(rgb, t) for t in (100.0, 500.0, 999.0)] == [1, 1, 1] and c.checks == 1
    assert c.count(rgb, 1000.0) == 2 and c.checks == 2
    assert c.count(rgb, 50.0) == 2 and c.checks == 3, "time going back (a new task) checks again"
    c.faces = 1
    c.lost()
    assert c.count(rgb, 60.0) == 1 and c.checks == 4


def test_counter_without_times_checks_every_n_frames():
    c = FakeDetector(every_frames=3)
    rgb = np.zeros((2, 2, 3), np.uint8)
    for _ in range(7):
        c.count(rgb, math.nan)
    assert c.checks == 3  # frames 1, 4, 7


@pytest.mark.parametrize("faces", [1, 2])
def test_counter_counts_real_faces(astronaut_face, faces):
    face = cv2.resize(astronaut_face, (125, 150))
    canvas = np.full((240, 320, 3), 96, np.uint8)
    canvas[45:195, 10:135] = face
    if faces == 2:
        canvas[45:195, 185:310] = face[:, ::-1]
    c = FaceCounter()
    try:
        assert c.count(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), 0.0) == faces
    finally:
        c.close()


def test_lost_track_is_redetected_in_the_same_frame(face_frame):
    runner = FaceMeshRunner()  # video mode: one face, tracked
    try:
        near = runner.process(cv2.cvtColor(face_frame(scale=1.1), cv2.COLOR_BGR2RGB))
        far = runner.process(cv2.cvtColor(face_frame(scale=0.6), cv2.COLOR_BGR2RGB))  # too far a jump to track
    finally:
        runner.close()
    assert len(near) == len(far) == 1
    assert np.ptp(far[0][:, 0]) < 0.7 * np.ptp(near[0][:, 0])


# the third: at the left edge, cut off by 20 px, so the crop is clipped (not square)
@pytest.mark.parametrize("size, scale, dx", [((1280, 720), 0.4, 256), ((640, 480), 0.4, 0), ((1280, 720), 0.4, -560)])
def test_a_face_too_small_for_the_mesh_detector_is_found_with_its_landmarks(astronaut_face, face_frame, size, scale, dx):
    """A head-and-shoulders face at an eye span of ~4-5 % of the picture: the mesh's own
    detector misses it; the full-range detector and a crop find it, and the landmarks land where
    the same face's landmarks, found at full size, move to when the face is shrunk and placed."""
    w, h = size
    rgb = cv2.cvtColor(face_frame(scale=scale, dx=dx, size=size), cv2.COLOR_BGR2RGB)
    fh = int(round(200 * scale * h / 240))  # face_frame's placement
    fw = int(round(fh * astronaut_face.shape[1] / astronaut_face.shape[0]))
    origin = np.array([round(w / 2 - fw / 2 + dx), round(h / 2 - fh / 2)])
    with FaceMeshRunner(static_image_mode=True, small_faces=False) as plain, FaceMeshRunner(static_image_mode=True) as runner:
        (reference,) = plain.process(cv2.cvtColor(astronaut_face, cv2.COLOR_BGR2RGB))
        assert plain.process(rgb) == [], "the premise: the mesh's own detector misses this face"
        faces = runner.process(rgb)
        assert runner.small_face_runs == 1
        assert runner.process(cv2.cvtColor(face_frame(scale=1.1), cv2.COLOR_BGR2RGB)) and runner.small_face_runs == 1, \
            "a face the mesh finds takes no second search"
        assert runner.process(np.full((h, w, 3), 96, np.uint8)) == []
    assert len(faces) == 1 and faces[0].shape == (478, 2)
    expected = (reference + 0.5) * (fh / astronaut_face.shape[0]) - 0.5 + origin
    eye_span = np.linalg.norm(expected[263] - expected[33])
    error = np.linalg.norm(faces[0] - expected, axis=1)
    assert eye_span < 0.06 * w
    assert np.median(error) < 0.02 * eye_span, (np.median(error), eye_span)  # measured 0.007
    assert error[[33, 133, 362, 263, 468, 473]].max() < 0.03 * eye_span  # eye corners, irises (measured <= 0.014)


def test_a_small_face_is_found_frame_after_frame_in_video_mode(face_frame):
    """Video mode (``gaze track``, the server's webcam pipeline): the mesh's tracker never holds
    a face it did not find, so every frame of a small face takes the search, and finds it."""
    frames = [cv2.cvtColor(face_frame(scale=0.4, dx=200 + 4 * i, size=(1280, 720)), cv2.COLOR_BGR2RGB) for i in range(3)]
    with FaceMeshRunner() as runner:
        found = [runner.process(f) for f in frames]
    assert [len(f) for f in found] == [1, 1, 1] and runner.small_face_runs == 3
    shifts = [np.median(b[0][:, 0] - a[0][:, 0]) for a, b in zip(found, found[1:])]
    assert shifts == pytest.approx([4, 4], abs=1)  # the landmarks follow the face


def test_video_mode_pauses_the_search_while_nobody_is_there(face_frame):
    """A participant who left the picture: one search, then none for SMALL_FACE_PAUSE_FRAMES
    frames; a small face coming back is found at the next search. Still pictures search always."""
    empty = np.full((720, 1280, 3), 96, np.uint8)
    small = cv2.cvtColor(face_frame(scale=0.4, dx=200, size=(1280, 720)), cv2.COLOR_BGR2RGB)
    with FaceMeshRunner() as runner:
        assert [runner.process(empty) for _ in range(SMALL_FACE_PAUSE_FRAMES + 1)] == [[]] * (SMALL_FACE_PAUSE_FRAMES + 1)
        assert runner.small_face_runs == 1
        assert runner.process(small) and runner.small_face_runs == 2
    with FaceMeshRunner(static_image_mode=True) as runner:
        for _ in range(3):
            runner.process(empty)
        assert runner.small_face_runs == 3


def test_a_rejected_larger_box_does_not_hide_a_small_face(face_frame):
    """The full-range detector also boxes a large blurred face (someone out of focus) that the
    mesh on its crop rejects; a runner asked for one face (video mode, the server's) must go on to
    the next box, the small sharp face, not give up after the first."""
    size = (1280, 720)
    blurred = cv2.GaussianBlur(face_frame(scale=0.7, dx=300, size=size), (0, 0), 12)
    small = face_frame(scale=0.4, dx=-300, size=size)
    bgr = blurred.copy()
    face = (small != 96).any(axis=2)
    bgr[face] = small[face]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with FaceMeshRunner(small_faces=False) as plain, FaceMeshRunner() as runner:
        assert plain.process(rgb) == [], "the premise: the mesh's own detector misses both"
        faces = runner.process(rgb)
    assert len(faces) == 1
    xs, ys = np.nonzero(face.T)
    assert xs.min() < np.median(faces[0][:, 0]) < xs.max() and ys.min() < np.median(faces[0][:, 1]) < ys.max()
