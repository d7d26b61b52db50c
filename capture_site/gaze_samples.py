"""Landmark samples from the participant's page (``[gaze] compute = "browser"``): reading and
checking them, and running them through the participant's tracker.

The page (capture_site/static/facemesh.js) runs the face mesh itself and sends, per camera
picture, one JSON object instead of the picture::

    {"t": ms, "w": width, "h": height, "n": faces in view, "b": brightness 0-255,
     "s": sharpness, "o": saturated share 0-1, "c": [cx, cy], "lm": [x, y, ...],
     "p": [patch values 0-1, ...]}

``lm`` holds the (x, y) pixel coordinates of the landmarks of
:data:`gazepref.signals.webcam.SAMPLE_LANDMARKS` in that order; ``p`` the left eye's then the
right eye's 10x6 patch (:func:`gazepref.signals.eye_features.eye_patch`); ``o`` the share of
the face box's grey pixels at ``webcam.SATURATED`` (250) or above (``FaceSample.clipped``, for
the OVEREXPOSED flag; optional: a page without it is never flagged); ``c``, ``lm``, ``o`` and
``p`` are left out when no face was found (``n`` = 0), and ``c``, ``lm`` and ``p`` are required
when one was (a sample without its patches was once taken, reported usable, and its round then
failed to fit, spending an attempt). Values no camera picture of a face gives
are refused (400, naming the sample and the value; nothing of the request is stored, no
calibration attempt spent): numbers as strings, lists of booleans or of lists, a brightness
outside 0-255, a sharpness outside 0-1000, patch values outside 0-1, a landmark or the face's
centre more than a picture's size outside it, outer eye corners less than 1 px apart. (A
boolean among numbers reads as 0 or 1, as numpy reads it: harmless, and not worth a look at
every value.) The server turns a batch's samples into gaze
rows with :meth:`~gazepref.signals.webcam.GazeTracker.process_samples`: the same feature code as
for pictures.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .api import ApiError
from .gaze_trackers import Scoring, TrackerEntry, face_status, refuse_closed

__all__ = ["parse_samples", "process_samples"]


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ApiError(400, f"{where} must be a finite number")
    return float(v)


def _nums(v: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != n:
        raise ApiError(400, f"{where} must be a list of {n} numbers")
    try:
        a = _numbers(v)
    except (TypeError, ValueError):
        raise ApiError(400, f"{where} must be a list of {n} numbers") from None
    if a.shape != (n,) or not np.isfinite(a).all():
        raise ApiError(400, f"{where} must be a list of {n} finite numbers")
    return a


def _numbers(v: Any) -> np.ndarray:
    """``v`` (nested lists of JSON numbers) as float64; ValueError where an item is not a number
    (a string, a boolean, null: numpy would turn "160" or true into one)."""
    a = np.asarray(v)
    if a.dtype.kind not in "fi":
        raise ValueError("not numbers")
    return a.astype(np.float64, copy=False)


#: a landmark (or the face box's centre) at most this many picture widths / heights outside the
#: picture: a face partly out of view has some of its landmarks outside, none this far
OUTSIDE_PICTURE = 1.0
#: the outer eye corners (landmarks 33, 263) at least this far apart (px): closer, the
#: landmarks are no face's (a head pose fitted to them is nonsense and would be carried over to
#: the pictures after it by the pose's warm start)
MIN_EYE_SPAN_PX = 1.0
#: the sharpness a page can report at most (webcam._sharpness: the face box's second differences'
#: variance over its grey levels' variance, at most ~24; real faces 0.02-0.1): far above it
MAX_SHARPNESS = 1e3
_PATCH_SLACK = 1e-6  # 0-1 patch values as the page's float arithmetic gives them
_CORNERS = None


def _corner_columns() -> tuple[int, int]:
    """The positions of landmarks 33 and 263 among :data:`~gazepref.signals.webcam.SAMPLE_LANDMARKS`."""
    global _CORNERS
    if _CORNERS is None:
        from gazepref.signals.webcam import SAMPLE_LANDMARKS

        _CORNERS = (SAMPLE_LANDMARKS.index(33), SAMPLE_LANDMARKS.index(263))
    return _CORNERS


def _face_checks(w: np.ndarray, h: np.ndarray, centre: np.ndarray, lm: np.ndarray, brightness: np.ndarray,
                 sharp: np.ndarray, patches: np.ndarray | None) -> list[tuple[np.ndarray, str]]:
    """For K samples with a face (picture sizes ``w``, ``h``, whole px; ``centre`` K x 2, ``lm`` K
    x 2L, ``brightness``, ``sharp`` K, NaN: not sent; ``patches`` K x P, or None: not checked
    here), each check as (which samples it refuses, K booleans; what is wrong): values no camera
    picture of a face gives."""
    w, h = w[:, None], h[:, None]
    x, y = lm[:, 0::2], lm[:, 1::2]
    far = OUTSIDE_PICTURE
    outside = ((x < -far * w) | (x > (1 + far) * w) | (y < -far * h) | (y > (1 + far) * h)).any(axis=1)
    off = ((centre[:, :1] < -far * w) | (centre[:, :1] > (1 + far) * w)
           | (centre[:, 1:] < -far * h) | (centre[:, 1:] > (1 + far) * h)).any(axis=1)
    a, b = _corner_columns()
    span = np.hypot(x[:, b] - x[:, a], y[:, b] - y[:, a])
    checks = [(outside, "lm: a landmark lies far outside the picture"),
              (off, "c: the face's centre lies far outside the picture"),
              (span < MIN_EYE_SPAN_PX, f"lm: the outer eye corners are less than {MIN_EYE_SPAN_PX:g} px apart"),
              ((brightness < 0) | (brightness > 255), "b must be a brightness from 0 to 255"),
              ((sharp < 0) | (sharp > MAX_SHARPNESS), f"s must be a sharpness from 0 to {MAX_SHARPNESS:g}")]  # (NaN: not sent)
    if patches is not None:
        checks.append((_bad_patches(patches), "p must hold values from 0 to 1"))
    return checks


def _bad_patches(patches: np.ndarray) -> np.ndarray:
    """Which rows of ``patches`` (K x P) hold a value outside 0-1."""
    return ((patches < -_PATCH_SLACK) | (patches > 1 + _PATCH_SLACK)).any(axis=1)


class _Irregular(Exception):
    """A sample the quick reading does not take: :func:`_parse_checked` names the problem."""


def parse_samples(items: Any, limit: int) -> tuple[list[Any], list[float]]:
    """Checked :class:`~gazepref.signals.webcam.FaceSample` objects and their times from the
    page's ``samples`` list (ApiError 400 naming the first problem, 413 for too many).

    Read all at once (one numpy array for the batch's landmarks, one for its patches); a batch
    with anything irregular is read again sample by sample (:func:`_parse_checked`), which
    names the first problem."""
    if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
        raise ApiError(400, "samples must be a list of objects")
    if len(items) > limit:
        raise ApiError(413, f"too many samples in one request: {len(items)} (limit {limit})")
    try:
        return _parse_batch(items)
    except _Irregular:
        return _parse_checked(items)


def _finite(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _parse_batch(items: list[dict]) -> tuple[list[Any], list[float]]:
    """:func:`parse_samples` for a regular batch; raises _Irregular at anything else."""
    from gazepref.signals.eye_features import EYES, PATCH_SIZE
    from gazepref.signals.webcam import SAMPLE_LANDMARKS, FaceSample, sample_landmarks

    n_patch = PATCH_SIZE[0] * PATCH_SIZE[1]
    times, heads, faces, centres, lms, patch_rows = [], [], [], [], [], []
    for s in items:
        t, w, h, n, b = s.get("t"), s.get("w"), s.get("h"), s.get("n"), s.get("b")
        if not (_finite(t) and _finite(w) and _finite(h) and _finite(b) and 16 <= w <= 4096 and 16 <= h <= 4096
                and type(n) is int and 0 <= n <= 100 and 0 <= b <= 255):
            raise _Irregular
        times.append(float(t))
        heads.append((int(w), int(h), n, float(b)))
        if not n:
            continue
        sharp, c, lm, p, o = s.get("s"), s.get("c"), s.get("lm"), s.get("p"), s.get("o")
        if not (sharp is None or _finite(sharp)) or type(c) is not list or type(lm) is not list or \
                type(p) is not list or not (o is None or (_finite(o) and 0 <= o <= 1)):
            raise _Irregular
        faces.append((len(heads) - 1, math.nan if sharp is None else float(sharp), math.nan if o is None else float(o)))
        centres.append(c)
        lms.append(lm)
        patch_rows.append(p)
    try:  # (each exactly its shape: a list of one-number lists is not a list of numbers)
        centre = _numbers(centres) if centres else np.zeros((0, 2))
        lm = _numbers(lms) if lms else np.zeros((0, 2 * len(SAMPLE_LANDMARKS)))
        patches = _numbers(patch_rows) if patch_rows else np.zeros((0, n_patch * len(EYES)))
    except (TypeError, ValueError):  # ragged, not numbers
        raise _Irregular from None
    if (centre.shape != (len(faces), 2) or lm.shape != (len(faces), 2 * len(SAMPLE_LANDMARKS))
            or patches.shape != (len(patch_rows), n_patch * len(EYES))):
        raise _Irregular
    if not (np.isfinite(centre).all() and np.isfinite(lm).all() and np.isfinite(patches).all()):
        raise _Irregular
    if faces:
        at = [i for i, _, _ in faces]
        size = np.array([heads[i][:2] for i in at], np.float64)
        checks = _face_checks(size[:, 0], size[:, 1], centre, lm, np.array([heads[i][3] for i in at]),
                              np.array([sharp for _, sharp, _ in faces]), None)
        if any(refused.any() for refused, _ in checks) or (patch_rows and _bad_patches(patches).any()):
            raise _Irregular
    pts = sample_landmarks(lm)
    patches = patches.astype(np.float32)
    out = [FaceSample(None, w, h, brightness=b) for w, h, _, b in heads]
    for k, (i, sharp, clipped) in enumerate(faces):  # (each face's patches: row k)
        w, h, n, b = heads[i]
        eyes = {eye.name: patches[k, e * n_patch:(e + 1) * n_patch] for e, eye in enumerate(EYES)}
        out[i] = FaceSample(pts[k], w, h, (float(centre[k, 0]), float(centre[k, 1])), n, b, sharp, eyes, clipped)
    return out, times


def _parse_checked(items: list[dict]) -> tuple[list[Any], list[float]]:
    """:func:`parse_samples` sample by sample, checking each value (ApiError 400 at the first problem)."""
    from gazepref.signals.eye_features import EYES, PATCH_SIZE
    from gazepref.signals.webcam import SAMPLE_LANDMARKS, FaceSample, sample_landmarks

    n_patch = PATCH_SIZE[0] * PATCH_SIZE[1]
    out, times = [], []
    for i, s in enumerate(items):
        where = f"samples[{i}]"
        t = _num(s.get("t"), f"{where}.t")
        w, h = _num(s.get("w"), f"{where}.w"), _num(s.get("h"), f"{where}.h")
        if not (16 <= w <= 4096 and 16 <= h <= 4096):
            raise ApiError(400, f"{where}: picture size {w:g}x{h:g} out of range")
        n = s.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 100:
            raise ApiError(400, f"{where}.n must be the number of faces in view")
        brightness = _num(s.get("b"), f"{where}.b")
        if not 0 <= brightness <= 255:
            raise ApiError(400, f"{where}.b must be a brightness from 0 to 255")
        if not n:
            out.append(FaceSample(None, int(w), int(h), brightness=brightness))
            times.append(t)
            continue
        sharp = s.get("s")
        sharp = math.nan if sharp is None else _num(sharp, f"{where}.s")  # NaN: the box was too small
        clipped = s.get("o")
        clipped = math.nan if clipped is None else _num(clipped, f"{where}.o")  # NaN: not sent
        if not (math.isnan(clipped) or 0 <= clipped <= 1):
            raise ApiError(400, f"{where}.o must be a share between 0 and 1")
        centre = _nums(s.get("c"), 2, f"{where}.c")
        lm = _nums(s.get("lm"), 2 * len(SAMPLE_LANDMARKS), f"{where}.lm")
        patches = s.get("p")
        if patches is None:  # (the model's patch block: a face without them calibrates nothing)
            raise ApiError(400, f"{where}.p: the eye patches are missing (a sample with a face has them)")
        p = _nums(patches, n_patch * len(EYES), f"{where}.p")
        checks = _face_checks(np.array([int(w)]), np.array([int(h)]), centre[None], lm[None], np.array([brightness]),
                              np.array([sharp]), p[None])
        problem = next((why for refused, why in checks if refused[0]), None)
        if problem:
            raise ApiError(400, f"{where}.{problem}")
        p = p.astype(np.float32)
        patches = {eye.name: p[k * n_patch:(k + 1) * n_patch] for k, eye in enumerate(EYES)}
        out.append(FaceSample(sample_landmarks(lm), int(w), int(h), (float(centre[0]), float(centre[1])), n,
                              brightness, sharp, patches, clipped))
        times.append(t)
    return out, times


def process_samples(entry: TrackerEntry, samples: list[Any], times: list[float],
                    scoring: Scoring | None = None) -> list[dict[str, float]]:
    """The participant's tracker rows of ``samples``, gaze predicted with ``scoring``'s model
    (default: the latest calibration's; no pipeline slot: a sample costs ~0.2 ms)."""
    with entry.lock, entry.scoring_with(scoring):
        refuse_closed(entry)
        rows = entry.tracker.process_samples(samples, times)
        entry.last_used = time.monotonic()
    if rows:
        entry.face = face_status(rows[-1])
    return rows
