"""The per-frame webcam gaze pipeline, shared by the study site and the offline commands.

One :class:`GazeTracker` per stream (participant): it owns a MediaPipe Face Mesh (refined iris;
tracking mode for video) and the head-pose warm start, and is reused for every frame of that
stream. It is not thread-safe: call one tracker from one thread at a time. In video mode the
mesh tracks one face and a face detector checks now and then (once a second of stream time by
default) whether more faces are in view (:class:`~.face_mesh.FaceCounter`): MULTIPLE_FACES
holds from one check to the next. Still images ask the mesh itself for up to two faces.

:meth:`GazeTracker.process_jpeg` / :meth:`GazeTracker.process_image` return a *row*: a dict whose
keys are the ``gaze`` stream's columns (``t``, ``x``, ``y``, ``confidence``, ``flags``) plus the
extra feature columns ``eye_*``, ``head_*``, ``sight_*``, ``face_*`` (see :mod:`.eye_features`,
:mod:`.head_pose`, :mod:`.line_of_sight` and :data:`FACE_COLUMNS`). ``x``/``y`` are NaN until a calibration is set.
The site-facing entry point is :func:`process_frame`.

Landmarks computed elsewhere (the participant's browser, ``[gaze] compute = "browser"``) take the
same path from the landmarks on: :meth:`GazeTracker.process_sample` gets a :class:`FaceSample`
(the landmarks of :data:`SAMPLE_LANDMARKS`, the face centre, the eye patches and the image
measures that need the picture) and runs the same eye-geometry, head-pose, flag, confidence and
calibration code as :meth:`GazeTracker.process_image`, which itself builds a :class:`FaceSample`
from the image and calls it. So every feature has one definition; only what needs the pixels
(the landmarks, the 10x6 eye patches of :func:`.eye_features.eye_patch`, brightness, sharpness)
is computed in the page (capture_site/static/facemesh.js, the same crop definition).
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np

from ..schema import GazeFlag
from . import eye_features, head_pose, line_of_sight
from .face_mesh import FaceCounter, FaceMeshRunner, distinct_boxes
from .frame_decode import FrameError, decode_jpeg

if TYPE_CHECKING:
    from .calibration import GazeCalibration

__all__ = ["FACE_COLUMNS", "SAMPLE_LANDMARKS", "FaceSample", "FrameError", "GazeTracker", "QualityThresholds",
           "feature_columns", "image_sample", "process_frame", "sample_confidence"]

FACE_COLUMNS = (
    "face_x",  # face centre (mean landmark), fraction of image width
    "face_y",  # ... of image height
    "face_size",  # outer-eye-corner distance / image width
    "face_count",  # faces in view (0, 1, 2 = two or more; video: from the last FaceCounter check)
    "face_brightness",  # mean grey level 0-255 of the face box (whole frame when no face)
    "face_sharpness",  # least sharp direction's second-difference variance / face box variance, at 64 px wide
)


def feature_columns(patch_size: tuple[int, int] | None = eye_features.PATCH_SIZE) -> list[str]:
    """The extra gaze-stream columns a tracker emits, in order."""
    cols: list[str] = []
    for eye in eye_features.EYES:
        cols += eye_features.geometry_columns(eye.name)
    if patch_size is not None:
        for eye in eye_features.EYES:
            cols += eye_features.patch_columns(eye.name, patch_size)
    return cols + list(head_pose.COLUMNS) + list(line_of_sight.COLUMNS) + list(FACE_COLUMNS)


#: face-mesh indices every landmark-derived feature reads (eye geometry, head pose, face size):
#: what a page computing landmarks sends of the 478 (MediaPipe's numbering)
SAMPLE_LANDMARKS: tuple[int, ...] = tuple(sorted(
    {i for eye in eye_features.EYES for i in eye_features._gather(eye)} | set(head_pose.LANDMARKS) | {33, 263}
    | {i for eye in line_of_sight.EYE_POINTS for i in eye}))
_N_LANDMARKS = 478
_SAMPLE_INDEX = np.array(SAMPLE_LANDMARKS)


@dataclass
class FaceSample:
    """What the landmark path of :class:`GazeTracker` needs of one picture.

    ``pts``: landmark pixel coordinates (N x 2, at least the rows of :data:`SAMPLE_LANDMARKS`;
    None: no face found); ``width``/``height``: the picture's size; ``centre``: the mean of the
    468 face-mesh points (px); ``count``: faces in view; ``brightness``: mean grey level 0-255
    of the face box (the whole picture without a face); ``sharpness``: see :func:`_sharpness`;
    ``patches``: eye name -> flattened patch of :func:`.eye_features.eye_patch` (None: none);
    ``clipped``: the share of the face box's grey pixels at 250 or above (saturated; NaN: not
    measured, as in samples from the browser).
    """

    pts: np.ndarray | None
    width: int
    height: int
    centre: tuple[float, float] = (math.nan, math.nan)
    count: int = 0
    brightness: float = math.nan
    sharpness: float = math.nan
    patches: dict[str, np.ndarray] | None = None
    clipped: float = math.nan


#: grey level from which a pixel counts as saturated (JPEG ringing keeps clipped areas at ~250-255)
SATURATED = 250


def image_sample(grey: np.ndarray, faces: list[np.ndarray], patch_size: tuple[int, int] | None) -> FaceSample:
    """The :class:`FaceSample` of a grey image and its faces' landmarks (the nearest first)."""
    h, w = grey.shape[:2]
    if not faces:
        return FaceSample(None, w, h, brightness=float(grey.mean()))
    pts = faces[0]
    lo, hi = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
    x0, y0 = int(min(max(lo[0], 0), w - 1)), int(min(max(lo[1], 0), h - 1))
    x1, y1 = int(min(max(hi[0], 0), w - 1)), int(min(max(hi[1], 0), h - 1))
    box = grey[y0:y1 + 1, x0:x1 + 1]
    cx, cy = pts[:468].mean(axis=0).tolist()
    patches = None if patch_size is None else {
        eye.name: eye_features.eye_patch(grey, pts, eye, patch_size) for eye in eye_features.EYES}
    return FaceSample(pts, w, h, (cx, cy), len(faces), float(box.mean()) if box.size else float(grey.mean()),
                      _sharpness(box), patches,
                      float(np.count_nonzero(box >= SATURATED)) / box.size if box.size else math.nan)


def sample_landmarks(values: np.ndarray) -> np.ndarray:
    """A 478 x 2 landmark array (NaN where unknown) from the (x, y) of :data:`SAMPLE_LANDMARKS`
    (L x 2, or flattened); from K x 2L values (K samples' flattened (x, y)) K x 478 x 2."""
    v = np.asarray(values, np.float64)
    n = len(SAMPLE_LANDMARKS)
    lead = v.shape[:1] if v.ndim == 2 and v.shape[1] == 2 * n else ()
    pts = np.full((*lead, _N_LANDMARKS, 2), np.nan)
    pts[..., _SAMPLE_INDEX, :] = v.reshape(*lead, n, 2)
    return pts


class _Faces(NamedTuple):
    """A batch's pictures with a face (:meth:`GazeTracker._face_values`): their rows' values
    (K x the row's keys), landmarks (K x N x 2), picture sizes (K), mean eye openness (K)."""

    values: np.ndarray
    pts: np.ndarray
    width: np.ndarray
    height: np.ndarray
    openness: list[float]


@dataclass(frozen=True)
class QualityThresholds:
    """Limits for the quality flags."""

    too_dark: float = 40.0  # mean grey level of the face box (or frame) below this: TOO_DARK
    blur: float = 0.015  # face_sharpness below this: BLUR (the sharp astronaut ~0.04-0.055; a motion
    #  smear as long as the iris is wide ~0.006-0.012, half as long ~0.016-0.03: _sharpness)
    blink: float = 0.10  # mean eye aspect ratio below this: BLINK
    blink_relative: float = 0.5  # ... or below this fraction of the stream's recent median
    #  (looking down narrows the eyes by a third or so; a blink closes them)
    overexposed: float = 0.5  # share of the face box saturated above this: OVEREXPOSED
    #  (the lid, corner and iris edges that place the landmarks are then largely erased: on the
    #  astronaut, 0.54 saturated raised gaze evaluate's error by a third, 0.69 gave iris offsets
    #  3x off, and from ~0.7 the mesh lost the face; benchmarks/gaze_conditions.py)


#: :func:`_sharpness`' second differences along the horizontal, the vertical and both diagonals
#: (correlation kernels); a diagonal step is sqrt(2) px long and a second difference grows with
#: the step squared, so the diagonal ones are halved
_SECOND_DIFFERENCES = tuple(np.array(k, np.float64) for k in (
    [[0, 0, 0], [1, -2, 1], [0, 0, 0]], [[0, 1, 0], [0, -2, 0], [0, 1, 0]],
    [[0.5, 0, 0], [0, -1, 0], [0, 0, 0.5]], [[0, 0, 0.5], [0, -1, 0], [0.5, 0, 0]]))


def _sharpness(grey_box: np.ndarray) -> float:
    """Contrast-normalised focus measure of the least sharp direction: the box resized to 64 px
    wide, the variance of its second difference along each of 4 directions (horizontal,
    vertical, both diagonals: :data:`_SECOND_DIFFERENCES`; edge pixels reflected as
    ``cv2.BORDER_REFLECT_101``), the smallest divided by the box's variance (independent of
    face size and lighting).

    Motion blur, a webcam's usual blur (the head moves during the exposure), smears one
    direction only: an isotropic measure (the Laplacian's variance, used before) keeps the
    other direction's detail and fell only 3-4x for a smear as long as the iris is wide, which
    doubled ``gaze evaluate``'s one-round error, while the least sharp direction falls 5x. The
    sharp astronaut gives ~0.04-0.055 (320-640 px pictures; sensor noise raises it)."""
    h, w = grey_box.shape[:2]
    if h < 4 or w < 4:
        return float("nan")
    small = cv2.resize(grey_box, (64, max(4, round(64 * h / w))), interpolation=cv2.INTER_AREA).astype(np.float64)
    var = small.var()
    if var <= 1e-6:
        return 0.0
    # filter2D's default border is BORDER_REFLECT_101; ~40 us more than one Laplacian
    least = min(cv2.meanStdDev(cv2.filter2D(small, cv2.CV_64F, k))[1][0, 0] ** 2 for k in _SECOND_DIFFERENCES)
    return float(least / var)


class GazeTracker:
    """Per-stream state of the webcam pipeline (Face Mesh, head-pose warm start, calibration).

    ``static_image_mode=True`` re-detects the face in every image and solves every head pose
    from scratch, pictures and landmark samples alike (for unrelated still images);
    the default tracks it across video frames (faster, steadier). In video mode the faces in view
    are counted every ``face_check_ms`` of stream time (frames without a time: every
    ``face_check_frames`` frames) and whenever a face comes back after a frame without one.
    """

    def __init__(
        self,
        calibration: GazeCalibration | None = None,
        *,
        static_image_mode: bool = False,
        patch_size: tuple[int, int] | None = eye_features.PATCH_SIZE,
        thresholds: QualityThresholds = QualityThresholds(),
        max_side: int | None = None,
        face_check_ms: float = 1000.0,
        face_check_frames: int = 10,
    ) -> None:
        self.calibration = calibration
        self.patch_size = patch_size
        self.thresholds = thresholds
        self.max_side = max_side
        self._static = static_image_mode
        self._mesh_runner: FaceMeshRunner | None = None  # created on the first image (landmark samples need none)
        self._counter = None if static_image_mode else FaceCounter(face_check_ms, face_check_frames)
        self._pose = head_pose.HeadPoseEstimator()
        self._openness: deque[float] = deque(maxlen=90)  # recent eye aspect ratios of this stream
        self._columns = feature_columns(patch_size)
        #: a row's keys in order, and the position of each
        self._keys = ("t", "x", "y", "confidence", "flags", *self._columns)
        self._at = {key: i for i, key in enumerate(self._keys)}
        index = lambda cols: np.array([self._at[c] for c in cols])  # noqa: E731
        self._geometry = index([c for eye in eye_features.EYES for c in eye_features.geometry_columns(eye.name)])
        self._patches = () if patch_size is None else tuple(
            (eye.name, index(eye_features.patch_columns(eye.name, patch_size))) for eye in eye_features.EYES)
        self._head, self._sight = index(head_pose.COLUMNS), index(line_of_sight.COLUMNS)

    # ------------------------------------------------------------------ lifecycle
    @property
    def _mesh(self) -> FaceMeshRunner:
        if self._mesh_runner is None:
            self._mesh_runner = FaceMeshRunner(static_image_mode=self._static,
                                               max_num_faces=2 if self._static else 1)
        return self._mesh_runner

    @property
    def small_faces_found(self) -> int:
        """Pictures in which only the search for small faces found the face
        (:class:`~.face_mesh.FaceMeshRunner`)."""
        return 0 if self._mesh_runner is None else self._mesh_runner.small_faces_found

    def close(self) -> None:
        if self._mesh_runner is not None:
            self._mesh_runner.close()
        if self._counter is not None:
            self._counter.close()

    def __enter__(self) -> GazeTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frames
    def process_jpeg(self, data: bytes, t: float = float("nan")) -> dict[str, float]:
        """Decode a JPEG frame and process it; raises FrameError/TypeError for unusable data."""
        kw = {} if self.max_side is None else {"max_side": self.max_side}
        return self.process_image(decode_jpeg(data, **kw), t)

    def process_image(self, image: np.ndarray, t: float = float("nan")) -> dict[str, float]:
        """Process one BGR ``uint8`` image (H x W x 3) taken at task-clock time ``t`` (ms)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FrameError(f"expected a BGR uint8 image, got shape {image.shape} {image.dtype}")
        t = float(t)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        faces = self._mesh.process(rgb)
        if len(faces) > 1:
            faces = _distinct_faces(faces)
        sample = image_sample(grey, faces, self.patch_size)
        if faces:
            if self._counter is not None:
                sample.count = max(sample.count, self._counter.count(rgb, t))
        elif self._counter is not None:
            self._counter.lost()
        return self.process_sample(sample, t)

    def process_sample(self, sample: FaceSample, t: float = float("nan")) -> dict[str, float]:
        """The row of one picture from its landmarks (:class:`FaceSample`), taken at time ``t`` (ms):
        eye geometry, head pose, face measures, flags, confidence and, when calibrated, gaze x/y.
        The part of the pipeline shared by pictures (:meth:`process_image`) and landmarks
        computed in the participant's browser (:meth:`process_samples`)."""
        return self.process_samples((sample,), (t,))[0]

    def process_samples(self, samples: Sequence[FaceSample], times: Sequence[float]) -> list[dict[str, float]]:
        """The rows of consecutive pictures of the stream (a batch of the page's samples), as
        :meth:`process_sample` gives them one by one.

        What depends on the pictures before (the head pose's warm start, the blink baseline) is
        found picture after picture; the rest for the batch's faces at once in numpy: the eye
        geometry (:func:`.eye_features.geometry_values`), the line of sight
        (:func:`.line_of_sight.sight_points`) and the gaze
        (:meth:`~.calibration.GazeCalibration.predict_rows`: one matrix product)."""
        at, th = self._at, self.thresholds
        values = np.full((len(samples), len(self._keys)), np.nan)
        values[:, at["t"]] = np.asarray(times, np.float64)
        values[:, at["confidence"]] = 0.0
        flags = [0] * len(samples)
        faces = [k for k, sample in enumerate(samples) if sample.pts is not None]
        face = self._face_values([samples[k] for k in faces]) if faces else None
        rotation, translation = np.full((len(faces), 3, 3), np.nan), np.full((len(faces), 3), np.nan)
        j = 0
        for k, sample in enumerate(samples):  # picture after picture: the head pose's warm start, the blink baseline
            if self._static or sample.pts is None:  # unrelated pictures, or the face was lost: a cold start
                self._pose.reset()
            if sample.pts is None:
                values[k, at["face_count"]] = 0.0
                values[k, at["face_brightness"]] = sample.brightness
                flags[k] = GazeFlag.NO_FACE | (GazeFlag.TOO_DARK if sample.brightness < th.too_dark else 0)
                continue
            face.values[j, self._head] = list(self._pose.estimate(sample.pts, sample.width, sample.height).values())
            if self._pose.rotation is not None:
                rotation[j], translation[j] = self._pose.rotation, self._pose.translation
            f = GazeFlag.MULTIPLE_FACES if sample.count > 1 else 0
            if sample.brightness < th.too_dark:
                f |= GazeFlag.TOO_DARK
            if sample.sharpness < th.blur:
                f |= GazeFlag.BLUR
            if sample.clipped > th.overexposed:
                f |= GazeFlag.OVEREXPOSED
            if self._is_blink(face.openness[j]):
                f |= GazeFlag.BLINK
            flags[k] = f
            j += 1
        if faces:
            v = face.values
            v[:, self._sight] = line_of_sight.sight_points(face.pts, face.width, face.height, rotation, translation)
            turn = np.fmax(np.abs(v[:, at["head_yaw"]]), np.abs(v[:, at["head_pitch"]])).tolist()
            v[:, at["confidence"]] = [sample_confidence(flags[k], t) for k, t in zip(faces, turn)]
            v[:, at["t"]] = values[faces, at["t"]]
            values[faces] = v
        rows = [dict(zip(self._keys, row)) for row in values.tolist()]
        unset = GazeFlag.UNCALIBRATED if self.calibration is None else 0
        for row, f in zip(rows, flags):
            row["flags"] = int(f | unset)
        if self.calibration is not None and faces:
            face_rows = [rows[k] for k in faces]
            for row, (x, y) in zip(face_rows, self.calibration.predict_rows(face_rows).tolist()):
                row["x"], row["y"] = x, y
                if not (math.isfinite(x) and math.isfinite(y)):
                    row["flags"] |= GazeFlag.UNCALIBRATED
        return rows

    def _face_values(self, samples: list[FaceSample]) -> _Faces:
        """What the rows of ``samples`` (each with a face) take from the samples alone: the face
        measures, the eye geometry and the eye patches (the rest NaN)."""
        at, n = self._at, len(samples)
        pts = np.stack([s.pts for s in samples])
        width = np.array([s.width for s in samples], np.float64)
        height = np.array([s.height for s in samples], np.float64)
        centre = np.array([s.centre for s in samples], np.float64).reshape(n, 2)
        v = np.full((n, len(self._keys)), np.nan)
        span = pts[:, 263] - pts[:, 33]  # the outer eye corners
        v[:, at["face_x"]] = centre[:, 0] / width
        v[:, at["face_y"]] = centre[:, 1] / height
        v[:, at["face_size"]] = np.sqrt(span[:, 0] * span[:, 0] + span[:, 1] * span[:, 1]) / width
        v[:, at["face_count"]] = [min(s.count, 2) for s in samples]
        v[:, at["face_brightness"]] = [s.brightness for s in samples]
        v[:, at["face_sharpness"]] = [s.sharpness for s in samples]
        geometry = eye_features.geometry_values(pts)
        v[:, self._geometry] = geometry
        for j, sample in enumerate(samples):
            if sample.patches is not None:
                for name, where in self._patches:
                    patch = sample.patches.get(name)
                    if patch is not None:
                        v[j, where] = patch
        return _Faces(v, pts, width, height, eye_features.blink_scores(geometry).tolist())

    def _is_blink(self, openness: float) -> bool:
        if not math.isfinite(openness):
            return False
        recent = self._openness
        baseline = _median(recent) if len(recent) >= BLINK_BASELINE_MIN else 0.0  # too few to judge
        recent.append(openness)
        return is_blink(openness, baseline, self.thresholds)

    def reflag_blinks(self, rows: list[dict[str, float]], groups: Sequence[Any] | None = None) -> None:
        """Set BLINK on still images' ``rows`` (in place; their ``confidence`` follows) against the
        median eye openness of the images of their group (``groups``: each row's sitting; None:
        all of them), in place of the stream's recent median: pictures of one person taken at
        different sittings have no order, and a baseline carried over from the pictures before
        made which of them count as blinks depend on the order they are listed in. A sitting's
        own pictures are what a study's stream compares a frame with (its recent frames, in that
        posture and light), and they leave the other sittings out: an evaluation predicting a
        sitting does not let the pictures it predicts decide which calibration pictures count."""
        columns = [c for eye in eye_features.EYES for c in eye_features.geometry_columns(eye.name)]
        geometry = np.array([[row.get(c, math.nan) for c in columns] for row in rows], np.float64).reshape(-1, len(columns))
        openness = eye_features.blink_scores(geometry).tolist()
        keys = [None] * len(rows) if groups is None else list(groups)
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} groups for {len(rows)} rows")
        known: dict[Any, list[float]] = {}
        for key, o in zip(keys, openness):
            if math.isfinite(o):
                known.setdefault(key, []).append(o)
        baselines = {k: _median(v) if len(v) >= BLINK_BASELINE_MIN else 0.0 for k, v in known.items()}
        for row, o, key in zip(rows, openness, keys):
            baseline = baselines.get(key, 0.0)
            flags = int(row["flags"])
            if flags & GazeFlag.NO_FACE:
                continue
            flags = (flags | GazeFlag.BLINK) if math.isfinite(o) and is_blink(o, baseline, self.thresholds) \
                else (flags & ~GazeFlag.BLINK)
            if flags != row["flags"]:
                row["flags"] = flags
                turn = float(np.fmax(abs(row.get("head_yaw", math.nan)), abs(row.get("head_pitch", math.nan))))
                row["confidence"] = sample_confidence(flags, turn)


#: openness values a baseline for relative blinks needs (fewer: only the absolute threshold)
BLINK_BASELINE_MIN = 5


def is_blink(openness: float, baseline: float, thresholds: QualityThresholds) -> bool:
    """Whether a mean eye aspect ratio ``openness`` is a blink: below ``thresholds.blink``, or below
    ``thresholds.blink_relative`` x ``baseline`` (the person's usual openness; 0: not known)."""
    return openness < thresholds.blink or openness < thresholds.blink_relative * baseline


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _distinct_faces(meshes: list[np.ndarray], max_overlap: float = 0.5) -> list[np.ndarray]:
    """Landmark pixel arrays (N x 2) of the detected faces, largest first.

    In tracking mode a face that jumps can come back twice (the tracked one and a fresh
    detection); meshes whose boxes overlap by more than ``max_overlap`` (IoU) count as one.
    """
    boxes = []
    for m in meshes:
        (x0, y0), (x1, y1) = m.min(axis=0), m.max(axis=0)
        boxes.append((float(x0), float(y0), max(0.0, float(x1 - x0)), max(0.0, float(y1 - y0))))
    return [meshes[i] for i in distinct_boxes(boxes, max_overlap)]


def sample_confidence(flags: int, turn: float) -> float:
    """The ``confidence`` of a gaze estimate from a picture with ``flags``: 1 for a single,
    well-lit, sharp, open-eyed, frontal face; lower for each problem (``turn``: the larger of the
    head's yaw and pitch in degrees, either sign; NaN: not known)."""
    c = 1.0
    for bit, factor in ((GazeFlag.MULTIPLE_FACES, 0.7), (GazeFlag.TOO_DARK, 0.6), (GazeFlag.BLUR, 0.6),
                        (GazeFlag.OVEREXPOSED, 0.6), (GazeFlag.BLINK, 0.2)):
        if flags & bit:
            c *= factor
    if math.isfinite(turn) and turn > 25:  # beyond ~25 deg the iris landmarks degrade
        c *= max(0.2, 1 - (turn - 25) / 30)
    return round(c, 3)


def process_frame(state: GazeTracker, jpeg_bytes: bytes, t: float) -> dict[str, float]:
    """Site entry point: one frame of one participant -> one gaze-stream row.

    ``state`` is the participant's :class:`GazeTracker` (create one per participant and keep it
    for the session). Raises :class:`FrameError` (-> HTTP 400) or ``TypeError`` for unusable data;
    a frame without a usable face is *not* an error: it comes back with ``flags`` set.
    """
    return state.process_jpeg(jpeg_bytes, t)
