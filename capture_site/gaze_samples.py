"""Landmark samples from the participant's page (``[gaze] compute = "browser"``): reading and
checking them, and running them through the participant's tracker.

The page (capture_site/static/facemesh.js) runs the face mesh itself and sends, per camera
picture, one JSON object instead of the picture::

    {"t": ms, "w": width, "h": height, "n": faces in view, "b": brightness 0-255,
     "s": sharpness, "c": [cx, cy], "lm": [x, y, ...], "p": [patch values 0-1, ...]}

``lm`` holds the (x, y) pixel coordinates of the landmarks of
:data:`gazepref.signals.webcam.SAMPLE_LANDMARKS` in that order; ``p`` the left eye's then the
right eye's 10x6 patch (:func:`gazepref.signals.eye_features.eye_patch`); ``c``, ``lm`` and
``p`` are left out when no face was found (``n`` = 0). The server turns each sample into a gaze
row with :meth:`~gazepref.signals.webcam.GazeTracker.process_sample`: the same feature code as
for pictures.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .api import ApiError
from .gaze_trackers import TrackerEntry, face_status

__all__ = ["parse_samples", "process_samples"]


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ApiError(400, f"{where} must be a finite number")
    return float(v)


def _nums(v: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != n:
        raise ApiError(400, f"{where} must be a list of {n} numbers")
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise ApiError(400, f"{where} must be a list of {n} numbers") from None
    if a.dtype != np.float64 or not np.isfinite(a).all():
        raise ApiError(400, f"{where} must be a list of {n} finite numbers")
    return a


def parse_samples(items: Any, limit: int) -> tuple[list[Any], list[float]]:
    """Checked :class:`~gazepref.signals.webcam.FaceSample` objects and their times from the
    page's ``samples`` list (ApiError 400 naming the first problem, 413 for too many)."""
    from gazepref.signals.eye_features import EYES, PATCH_SIZE
    from gazepref.signals.webcam import SAMPLE_LANDMARKS, FaceSample, sample_landmarks

    if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
        raise ApiError(400, "samples must be a list of objects")
    if len(items) > limit:
        raise ApiError(413, f"too many samples in one request: {len(items)} (limit {limit})")
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
        if not n:
            out.append(FaceSample(None, int(w), int(h), brightness=brightness))
            times.append(t)
            continue
        sharp = s.get("s")
        sharp = math.nan if sharp is None else _num(sharp, f"{where}.s")  # NaN: the box was too small
        centre = _nums(s.get("c"), 2, f"{where}.c")
        lm = _nums(s.get("lm"), 2 * len(SAMPLE_LANDMARKS), f"{where}.lm")
        patches = s.get("p")
        if patches is not None:
            p = _nums(patches, n_patch * len(EYES), f"{where}.p").astype(np.float32)
            patches = {eye.name: p[k * n_patch:(k + 1) * n_patch] for k, eye in enumerate(EYES)}
        out.append(FaceSample(sample_landmarks(lm), int(w), int(h), (float(centre[0]), float(centre[1])), n,
                              brightness, sharp, patches))
        times.append(t)
    return out, times


def process_samples(entry: TrackerEntry, samples: list[Any], times: list[float]) -> list[dict[str, float]]:
    """The participant's tracker rows of ``samples`` (no pipeline slot: a sample costs ~0.2 ms)."""
    rows = []
    with entry.lock:
        for sample, t in zip(samples, times):
            rows.append(entry.tracker.process_sample(sample, t))
        entry.last_used = time.monotonic()
    if rows:
        entry.face = face_status(rows[-1])
    return rows
