"""MediaPipe for the webcam pipeline: a lean Face Mesh call and a periodic count of the faces in view.

:class:`FaceMeshRunner` runs ``mp.solutions.face_mesh.FaceMesh`` (refined iris landmarks) on an
RGB image and returns each face's landmarks as an ``N x 2`` array of pixel coordinates. It
feeds the graph and reads the serialized ``NormalizedLandmarkList`` protos itself, decoding
them with numpy (~0.5 ms per frame less than ``FaceMesh.process`` plus a Python loop over 478
protobuf landmarks); if the installed MediaPipe lacks the internals used, it falls back to the
public ``process``. The values are the same either way (float32 coordinates times the image size).
In video mode it asks the mesh for one face (see below) and, when the track is lost, runs the
frame once more so the face is re-detected in the same frame.

Small faces. The mesh finds faces with MediaPipe's short-range face detector, whose input is
128 x 128 px: the whole picture is shrunk to it, so a face narrower than ~1/6 of the picture is
~20 px there, near the detector's smallest anchors, and is missed. The astronaut's head and
shoulders on a grey ground (``benchmarks/face_detection.py``) was missed centred at eye spans of
0.052 of the picture's width and below (found from 0.062-0.065), and a fifth of the width off
centre up to ~0.07 in 4:3 pictures and 0.067 in 16:9 ones, from 320 x 240 to 1920 x 1080; the
set-up accepts eye spans from 0.064 and a head-and-shoulders laptop framing is near 0.09. (The
page's detector, in ``@vladmandic/human``, takes 256 x 256 px.) So where the mesh finds no face,
:class:`FaceMeshRunner` asks MediaPipe's full-range detector (192 x 192 px, made for faces up to
5 m away), crops a square ``SMALL_FACE_CROP`` (3) times each face box's side around it, runs a
still-image mesh on that crop (where the face is a third of the picture) and moves its landmarks
back into the picture. The landmarks come from the same pixels (the crop is not resized), so
nothing but the search changes. Cost: ~5 ms for the detector and ~5 ms per box tried for the
mesh, only on pictures in which the mesh found none. In video mode a search that finds nothing
pauses the search for ``SMALL_FACE_PAUSE_FRAMES`` (9) frames, so a participant who has left the
picture costs the server ~1-2 ms a frame, not ~10; while a small face is found, every frame
searches (the mesh's tracker cannot hold it).

:class:`FaceCounter` answers "is more than one face in view?" cheaply for a video stream. In
tracking mode a Face Mesh asked for up to two faces re-runs its face detector on every frame
while it tracks only one (4.7 ms instead of 3.2 ms per 320x240 frame here), so the tracker asks
the mesh for one face and counts faces with MediaPipe's short-range face detector (~1.8 ms) once
per ``every_ms`` of stream time (or every ``every_frames`` frames when frames have no time),
and again whenever a face comes back after a frame without one. The count holds until the next
check.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

#: field tags (fixed32) of NormalizedLandmark.x and .y; C++ serializes fields in number order
_X_TAG, _Y_TAG = 0x0D, 0x15

#: side of the crop around a face box of the full-range detector, in box sides (module docstring)
SMALL_FACE_CROP = 3.0
#: video mode: frames without the search after one that found no face (module docstring)
SMALL_FACE_PAUSE_FRAMES = 9


def decode_landmarks(data: bytes, width: int, height: int) -> np.ndarray | None:
    """Pixel coordinates (N x 2, float64) from a serialized ``NormalizedLandmarkList``.

    Face Mesh writes every landmark with the same fields (x, y, z: 17 bytes each), so the list is
    a fixed-stride record array. None when the bytes are laid out otherwise (a landmark without
    x or y, records of different lengths): the caller then parses them with protobuf."""
    n = len(data)
    if n < 2 or data[0] != 0x0A:
        return None
    stride = data[1] + 2
    if stride < 12 or data[1] >= 0x80 or n % stride:  # x and y at least; a one-byte length
        return None
    buf = np.frombuffer(data, np.uint8).reshape(-1, stride)
    if not ((buf[:, 0] == 0x0A).all() and (buf[:, 1] == stride - 2).all()
            and (buf[:, 2] == _X_TAG).all() and (buf[:, 7] == _Y_TAG).all()):
        return None
    xy = np.empty((len(buf), 2), np.float64)
    xy[:, 0] = np.ndarray((len(buf),), "<f4", data, 3, (stride,))
    xy[:, 1] = np.ndarray((len(buf),), "<f4", data, 8, (stride,))
    xy[:, 0] *= width
    xy[:, 1] *= height
    return xy


def _proto_landmarks(landmarks: Any, width: int, height: int) -> np.ndarray:
    return np.array([(p.x * width, p.y * height) for p in landmarks.landmark], dtype=np.float64)


class FaceMeshRunner:
    """One MediaPipe Face Mesh (refined landmarks) and a lean way to call it.

    ``small_faces``: where the mesh finds no face, look for small ones with the full-range
    detector and run the mesh on a crop around each (module docstring); ``small_face_runs``
    counts the pictures that took this path, ``small_faces_found`` those in which it found a
    face."""

    def __init__(self, *, static_image_mode: bool = False, max_num_faces: int = 1,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 small_faces: bool = True) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode, max_num_faces=max_num_faces, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence,
        )
        self._lean = _lean_api()
        self._retry = not static_image_mode
        self._tracking = False
        self._max_faces = max_num_faces
        self._min_detection = min_detection_confidence
        self.small_faces = small_faces
        self._small: tuple[Any, FaceMeshRunner] | None = None  # full-range detector, still-image mesh
        self._pause = 0  # video mode: frames left without the search
        self.small_face_runs = 0
        self.small_faces_found = 0

    def close(self) -> None:
        self._mesh.close()
        if self._small is not None:
            for part in self._small:
                part.close()
            self._small = None

    def __enter__(self) -> FaceMeshRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Landmarks (N x 2 px) of each face found in an RGB ``uint8`` image.

        Video mode: when the tracked face is lost (a jump or zoom too large for the tracker), the
        same image is run again, so the face detector looks for it in this frame, not the next.
        """
        faces = self._run(rgb)
        if not faces and self._tracking and self._retry:
            faces = self._run(rgb)
        self._tracking = bool(faces)
        if not faces and self.small_faces:
            if self._pause > 0:
                self._pause -= 1
            else:
                faces = self._small_faces(rgb)
                if not faces and self._retry:  # video mode: nobody small here either; look again later
                    self._pause = SMALL_FACE_PAUSE_FRAMES
        return faces

    def _small_faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Faces the mesh's own detector missed: the full-range detector's boxes (distinct ones,
        largest first), the mesh run on a crop ``SMALL_FACE_CROP`` box sides wide around each
        until ``max_num_faces`` are found (a box the mesh rejects, such as a blurred face, takes
        no face's place), its landmarks moved back into the picture."""
        if self._small is None:
            import mediapipe as mp

            self._small = (mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self._min_detection),
                FaceMeshRunner(static_image_mode=True, max_num_faces=1,
                               min_detection_confidence=self._min_detection, small_faces=False))
        detector, mesh = self._small
        self.small_face_runs += 1
        h, w = rgb.shape[:2]
        boxes = [(b.xmin * w, b.ymin * h, b.width * w, b.height * h)
                 for b in (d.location_data.relative_bounding_box for d in detector.process(rgb).detections or [])]
        faces = []
        for i in distinct_boxes(boxes):
            if len(faces) >= self._max_faces:
                break
            x, y, bw, bh = boxes[i]
            half = SMALL_FACE_CROP * max(bw, bh) / 2
            cx, cy = x + bw / 2, y + bh / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            found = mesh.process(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
            if found:
                faces.append(found[0] + (x0, y0))
        self.small_faces_found += bool(faces)
        return faces

    def _run(self, rgb: np.ndarray) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        if self._lean is None:
            return self._public(rgb, w, h)
        create, fmt, serialized = self._lean
        mesh = self._mesh
        mesh._graph_outputs.clear()
        mesh._simulated_timestamp += 33333  # as FaceMesh.process: a 30 fps clock
        mesh._graph.add_packet_to_input_stream(
            stream="image", packet=create(rgb, image_format=fmt).at(mesh._simulated_timestamp))
        mesh._graph.wait_until_idle()
        packet = mesh._graph_outputs.get("multi_face_landmarks")
        if packet is None or packet.is_empty():
            return []
        out = []
        for data in serialized(packet):
            pts = decode_landmarks(data, w, h)
            if pts is None:
                from mediapipe.framework.formats import landmark_pb2

                pts = _proto_landmarks(landmark_pb2.NormalizedLandmarkList.FromString(data), w, h)
            out.append(pts)
        return out

    def _public(self, rgb: np.ndarray, w: int, h: int) -> list[np.ndarray]:
        result = self._mesh.process(rgb)
        return [_proto_landmarks(f, w, h) for f in result.multi_face_landmarks or []]


def _lean_api() -> tuple[Any, Any, Any] | None:
    """MediaPipe internals the lean call needs (present in 0.10.x), or None."""
    try:
        from mediapipe.python import packet_creator
        from mediapipe.python._framework_bindings import _packet_getter, image_frame
    except ImportError:
        return None
    serialized = getattr(_packet_getter, "_get_serialized_proto_list", None)
    if serialized is None or not hasattr(packet_creator, "create_image_frame"):
        return None
    return packet_creator.create_image_frame, image_frame.ImageFormat.SRGB, serialized


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def distinct_boxes(boxes: list[tuple[float, float, float, float]], max_overlap: float = 0.5) -> list[int]:
    """Indices of the (x, y, w, h) boxes that stand for distinct faces, largest first: a box that
    overlaps a larger kept one by more than ``max_overlap`` (IoU) is the same face again."""
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i][2] * boxes[i][3])
    kept: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[k]) <= max_overlap for k in kept):
            kept.append(i)
    return kept


class FaceCounter:
    """Faces in view, by a face detector run now and then (see the module docstring)."""

    def __init__(self, every_ms: float = 1000.0, every_frames: int = 10, max_overlap: float = 0.5,
                 min_confidence: float = 0.5) -> None:
        self.every_ms, self.every_frames, self.max_overlap = every_ms, every_frames, max_overlap
        self.min_confidence = min_confidence
        self._detector: Any = None
        self._count = 0
        self._last_t = math.nan
        self._frames = 0  # frames since the last check
        self._due = True
        self.checks = 0  # detector runs so far (for tests and benchmarks)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def lost(self) -> None:
        """The tracked face is gone: check again as soon as one is back."""
        self._due = True

    def count(self, rgb: np.ndarray, t: float) -> int:
        """Faces in view at stream time ``t`` (ms; NaN: unknown), from the last check or a new one."""
        self._frames += 1
        if math.isfinite(t) and math.isfinite(self._last_t):
            due = not 0 <= t - self._last_t < self.every_ms  # also when time went back (a new task)
        else:
            due = self._frames >= self.every_frames
        if self._due or due:
            self._count = self._detect(rgb)
            self._last_t, self._frames, self._due = t, 0, False
        return self._count

    def _detect(self, rgb: np.ndarray) -> int:
        if self._detector is None:
            import mediapipe as mp

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=self.min_confidence)
        self.checks += 1
        detections = self._detector.process(rgb).detections or []
        boxes = [(b.xmin, b.ymin, b.width, b.height)
                 for b in (d.location_data.relative_bounding_box for d in detections)]
        return len(distinct_boxes(boxes, self.max_overlap))
