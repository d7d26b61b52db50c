"""Calibration and validation rounds from tracker rows: the functions the study site calls.

A round shows targets one after another (:func:`gazepref.signals.calibration.target_grid`); for
each target the site keeps the tracker rows (:func:`gazepref.signals.webcam.process_frame`)
recorded while the participant fixated it, after the eyes settled (skip ~300 ms after the target
appears). Then:

* :func:`calibrate` fits a :class:`GazeCalibration` on those rows; store it with
  ``store.Calibration(kind="calibration", model=model.to_bytes(), result=calibration_summary(model))``;
* :func:`validate_round` predicts the rows of a validation round (other points) and returns
  jsPsych-style metrics (:mod:`.gaze_validation`), with ``overall.passed`` for a pass threshold;
  store it with ``store.Calibration(kind="validation", result=...)``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..schema import GazeFlag
from .calibration import GazeCalibration
from .gaze_validation import CSS_PX_PER_CM, validate

#: Samples that do not show where the eyes point.
UNUSABLE = GazeFlag.NO_FACE | GazeFlag.BLINK


def usable(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Mask of rows usable for calibration (a face, eyes open)."""
    return np.array([not int(r.get("flags", 0)) & UNUSABLE for r in rows], dtype=bool)


def calibrate(points: Sequence[tuple[Sequence[float], Sequence[Mapping[str, float]]]],
              model: GazeCalibration | None = None, rounds: Sequence[Any] | None = None) -> GazeCalibration:
    """Fit a calibration on ``points``: a list of (target (x, y) px, tracker rows at it).

    ``rounds``: per point, the calibration round it came from; with two or more rounds the
    hyper-parameters are chosen leave-one-round-out. Rounds of one sitting do not choose the
    model: an ``auto`` model is fitted as ``blend``, as without rounds (the head barely moves
    between them, so they cannot show which model holds when it does). Raises ValueError when too
    few samples are usable.
    """
    rows, targets, groups = [], [], []
    for i, (target, samples) in enumerate(points):
        ok = usable(samples)
        rows += [s for s, k in zip(samples, ok) if k]
        targets += [tuple(target)] * int(ok.sum())
        groups += [rounds[i] if rounds is not None else 0] * int(ok.sum())
    if len(rows) < 4:
        raise ValueError(f"only {len(rows)} usable calibration samples (face found, eyes open); need at least 4")
    model = model if model is not None else GazeCalibration()
    if rounds is not None and model.kind == "auto":
        model = clone(model).set_params(kind="blend")
    return model.fit(pd.DataFrame(rows), np.asarray(targets, dtype=np.float64),
                     groups=groups if rounds is not None else None)


def calibration_summary(model: GazeCalibration) -> dict[str, Any]:
    """JSON-ready facts about a fitted calibration (for ``store.Calibration.result``)."""
    return {"n_samples": model.n_samples_fit_, "cv_error_px": model.cv_error_px_,
            # "sight": the line-of-sight model (head movement by geometry); "one-stage": eye
            # features and head pose in one ridge (also rows recorded before the sight columns);
            # "blend": the mean of the two (the default within one sitting)
            "model": getattr(model, "model_kind_", "one-stage"),
            "alpha": model.alpha_.tolist(), "head_weight": model.head_weight_.tolist(),
            "eye_weight": getattr(model, "eye_weight_", np.ones(2)).tolist(),
            "appearance_weight": model.appearance_weight_.tolist(),
            # rows left out of the fit: eyes nearly shut, or disagreeing with the rest of the round
            "n_blinks_rejected": getattr(model, "n_blinks_rejected_", 0),
            "n_outliers_rejected": getattr(model, "n_outliers_rejected_", 0)}


def validate_round(model: GazeCalibration, points: Sequence[tuple[Sequence[float], Sequence[Mapping[str, float]]]],
                   roi_radius_px: float = 100.0, distance_cm: float = 60.0, px_per_cm: float = CSS_PX_PER_CM,
                   pass_accuracy_px: float | None = None, seen: Sequence[int | None] | None = None,
                   viewport_height_px: float | None = None) -> dict[str, Any]:
    """Validation metrics of ``model`` on (target, tracker rows) pairs; blinks and frames without
    a face count as data loss, as do, with ``seen`` (per target, the frames recorded while it was
    shown, of which these rows are the ones the page kept), the frames not kept. With
    ``viewport_height_px``, each point and the round get WebGazer's score of the samples
    (``webgazer_score_pct``, IFLLM's ``accuracy``)."""
    predicted, flags = [], []
    for _, samples in points:
        xy = model.predict(pd.DataFrame(list(samples))) if len(samples) else np.empty((0, 2))
        predicted.append(xy)
        flags.append(np.array([int(s.get("flags", 0)) for s in samples], dtype=np.int64))
    return validate([(target, xy) for (target, _), xy in zip(points, predicted)], roi_radius_px=roi_radius_px,
                    flags=flags, distance_cm=distance_cm, px_per_cm=px_per_cm, pass_accuracy_px=pass_accuracy_px,
                    lost_flags=UNUSABLE, seen=seen, score_height_px=viewport_height_px)


def usable_counts(points: Sequence[tuple[Sequence[float], Sequence[Mapping[str, float]]]]) -> list[int]:
    """Usable rows (a face, eyes open: :func:`usable`) per target."""
    return [int(usable(samples).sum()) if len(samples) else 0 for _, samples in points]


def starved_targets(points: Sequence[tuple[Sequence[float], Sequence[Mapping[str, float]]]],
                    min_frames: int) -> list[int]:
    """Indices of the targets with fewer than ``min_frames`` usable rows: a round with any of them
    does not check what it claims to (a model fitted on 1-2 frames of a dot, or a validation
    point without data)."""
    return [i for i, n in enumerate(usable_counts(points)) if n < min_frames]


#: what participants are told about their calibration, by validation accuracy: "good" within half
#: the study's pass threshold and within GOOD_PX_MAX, "fair" within the threshold, "poor" beyond (failed)
QUALITY_WORDS = ("good", "fair", "poor")
#: "good" is never worse than this (half the default pass threshold, 200 px, the line the
#: dashboard's quality panel draws): a study with a lenient threshold (500 px) would otherwise tell
#: a participant whose gaze is 12 degrees off that it works well, while its researchers' panel flags it
GOOD_PX_MAX = 100.0


def quality_word(accuracy_px: float | None, pass_accuracy_px: float, passed: bool = True) -> str:
    """``"good"`` (accuracy within half the pass threshold and within :data:`GOOD_PX_MAX`),
    ``"fair"`` (within the threshold) or ``"poor"``.

    A round or step that did not pass (``passed=False``, e.g. a frame-starved point) is
    ``"poor"`` whatever its accuracy."""
    if not passed or accuracy_px is None or not np.isfinite(accuracy_px):
        return "poor"
    if accuracy_px <= min(0.5 * pass_accuracy_px, GOOD_PX_MAX):
        return "good"
    return "fair" if accuracy_px <= pass_accuracy_px else "poor"


def best_attempt(attempts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The attempt to keep among validated ``attempts`` (dicts with ``passed``, ``accuracy_px``
    and optionally ``validation_starved``, the validation's points without enough data): a passed
    one before a failed one, then one whose validation checked every point before one stopped at
    a starved point (its accuracy averages the points before it only: one good point would beat a
    whole check), then the smallest accuracy (offset) in px; attempts without an accuracy (not
    validated, frame-starved) are never chosen. Ties keep the earlier attempt. None when there is
    none to keep."""
    best, key_best = None, None
    for a in attempts:
        acc = a.get("accuracy_px")
        if acc is None or not np.isfinite(acc):
            continue
        key = (not a.get("passed", False), bool(a.get("validation_starved")), float(acc))
        if key_best is None or key < key_best:
            best, key_best = a, key
    return best


