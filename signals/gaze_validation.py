"""Validation metrics of a gaze calibration, per target point and overall.

The fields follow what jsPsych's ``webgazer-validate`` plugin records (offset from each point,
share of samples in the ROI, samples found), with the usual eye-tracking definitions:

* ``accuracy_px``: mean Euclidean distance of the valid samples from the target;
  ``offset_x_px`` / ``offset_y_px``: mean signed offset (gaze - target), the centroid's bias;
* ``accuracy_deg``: ``accuracy_px`` as visual angle for a viewing distance and pixel density,
  ``2 * atan(size_cm / (2 * distance_cm))``;
* ``precision_px``: RMS of the distances between successive valid samples (RMS-S2S);
* ``in_roi``: share of valid samples within ``roi_radius_px`` of the target;
* ``webgazer_score_pct`` (with ``score_height_px``, the viewport's height): the score WebGazer's
  calibration demo reports as "precision" (IFLLM's task-table ``accuracy``): each valid sample
  scores ``100 - distance / (height / 2) x 100``, 0 from half the height on, and the point gets
  their mean (WebGazer's one centre point, 50 samples; here every validation point);
* ``data_loss``: share of samples with no gaze estimate (NaN, or flagged NO_FACE by default);
  with ``seen``, of the samples recorded while the target was shown, of which those given are the
  ones kept (the usable ones first): the others count as lost.

Overall figures average the per-point values over the points that have valid samples, except
``data_loss`` and ``in_roi_all``, which pool all samples.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..schema import GazeFlag

#: CSS px per cm at the CSS reference density (96 px per inch).
CSS_PX_PER_CM = 96 / 2.54


def px_to_deg(px: float, distance_cm: float = 60.0, px_per_cm: float = CSS_PX_PER_CM) -> float:
    """Visual angle (degrees) of ``px`` on a screen seen from ``distance_cm``."""
    return math.degrees(2 * math.atan(px / px_per_cm / (2 * distance_cm)))


def webgazer_score_pct(distance_px: float | Sequence[float] | np.ndarray | None,
                       viewport_height_px: float | None) -> float | None:
    """WebGazer's score (%) of gaze samples ``distance_px`` from their target on a viewport
    ``viewport_height_px`` high: the mean of each sample's ``100 - distance / (height / 2) x 100``,
    a sample half the height away or farther scoring 0 (``calculatePrecisionPercentages`` of
    WebGazer's calibration demo, which IFLLM's ``accuracy`` column reports). None without a
    finite distance or a height."""
    if distance_px is None or viewport_height_px is None or not viewport_height_px > 0:
        return None
    d = np.asarray(distance_px, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if not len(d):
        return None
    return float(np.mean(np.clip(100.0 - d / (viewport_height_px / 2) * 100.0, 0.0, 100.0)))


def point_metrics(gaze: np.ndarray, target: Sequence[float], roi_radius_px: float,
                  valid: np.ndarray | None = None, distance_cm: float = 60.0,
                  px_per_cm: float = CSS_PX_PER_CM, seen: int | None = None,
                  score_height_px: float | None = None) -> dict[str, Any]:
    """Metrics for the samples (n x 2, in time order) recorded while one target was shown; with
    ``seen`` (>= n), ``seen`` were recorded and these are the ones kept: the rest count as lost;
    with ``score_height_px`` (the viewport's height), WebGazer's score of the samples."""
    gaze = np.asarray(gaze, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(gaze).all(axis=1)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    n = len(gaze) if seen is None else max(len(gaze), int(seen))
    good = gaze[ok]
    out: dict[str, Any] = {"target_x": float(target[0]), "target_y": float(target[1]), "n_samples": n,
                           "n_valid": int(ok.sum()), "data_loss": float(1 - ok.sum() / n) if n else 1.0}
    nan = float("nan")
    if not len(good):
        out.update(accuracy_px=nan, accuracy_deg=nan, offset_x_px=nan, offset_y_px=nan,
                   precision_px=nan, in_roi=nan)
        if score_height_px is not None:
            out["webgazer_score_pct"] = nan
        return out
    diff = good - np.asarray(target, dtype=np.float64)
    dist = np.linalg.norm(diff, axis=1)
    step = np.linalg.norm(np.diff(good, axis=0), axis=1)
    acc = float(dist.mean())
    out.update(
        accuracy_px=acc,
        accuracy_deg=px_to_deg(acc, distance_cm, px_per_cm),
        offset_x_px=float(diff[:, 0].mean()),
        offset_y_px=float(diff[:, 1].mean()),
        precision_px=float(np.sqrt(np.mean(step ** 2))) if len(step) else nan,
        in_roi=float((dist <= roi_radius_px).mean()),
    )
    if score_height_px is not None:
        score = webgazer_score_pct(dist, score_height_px)
        out["webgazer_score_pct"] = nan if score is None else score
    return out


def validate(points: Sequence[tuple[Sequence[float], np.ndarray]], roi_radius_px: float = 100.0,
             flags: Sequence[np.ndarray] | None = None, distance_cm: float = 60.0,
             px_per_cm: float = CSS_PX_PER_CM, pass_accuracy_px: float | None = None,
             lost_flags: int = GazeFlag.NO_FACE, seen: Sequence[int | None] | None = None,
             score_height_px: float | None = None) -> dict[str, Any]:
    """Validation result for ``points``: a list of (target (x, y), samples n x 2 px).

    ``flags``: per point, the samples' GazeFlag bits; samples with any of ``lost_flags`` count
    as lost (as do NaN samples). ``seen``: per point, how many samples were recorded while it was
    shown when only some were kept (None: all were; the others count as lost).
    Overall ``data_loss`` is the share of the samples expected that have no estimate: a point
    that yielded no sample at all (the camera gave nothing while it was shown) is charged as many
    samples as the median point that yielded some (it was shown as long), all lost; ``n_empty``
    counts such points. Per point, an empty one's ``data_loss`` is 1.
    ``pass_accuracy_px``: when given, ``passed`` says whether the overall accuracy is at most it.
    ``score_height_px`` (the viewport's height, CSS px): when given, each point and the overall
    result (the mean over points, as ``accuracy_px``) get ``webgazer_score_pct``.
    Returns ``{"points": [...], "overall": {...}, "settings": {...}}``, JSON-ready.
    """
    per_point = []
    in_roi_count = valid_count = 0
    for i, (target, samples) in enumerate(points):
        valid = None
        if flags is not None:
            valid = (np.asarray(flags[i], dtype=np.int64) & lost_flags) == 0
        m = point_metrics(samples, target, roi_radius_px, valid, distance_cm, px_per_cm,
                          seen=None if seen is None else seen[i], score_height_px=score_height_px)
        per_point.append(m)
        valid_count += m["n_valid"]
        if m["n_valid"]:
            in_roi_count += round(m["in_roi"] * m["n_valid"])
    counts = [p["n_samples"] for p in per_point]
    yielded = [n for n in counts if n]
    n_empty = len(counts) - len(yielded)
    total = sum(yielded) + n_empty * (float(np.median(yielded)) if yielded else 0.0)
    lost = total - valid_count

    def mean_of(key: str) -> float:
        vals = [p[key] for p in per_point if p["n_valid"] and math.isfinite(p[key])]
        return float(np.mean(vals)) if vals else float("nan")

    overall = {
        "accuracy_px": mean_of("accuracy_px"),
        "accuracy_deg": mean_of("accuracy_deg"),
        "precision_px": mean_of("precision_px"),
        "in_roi": mean_of("in_roi"),
        "in_roi_all": in_roi_count / valid_count if valid_count else float("nan"),
        "data_loss": lost / total if total else 1.0,
        "n_points": len(per_point),
        "n_samples": sum(counts),
        "n_empty": n_empty,
    }
    if score_height_px is not None:
        overall["webgazer_score_pct"] = mean_of("webgazer_score_pct")
    if pass_accuracy_px is not None:
        overall["passed"] = bool(math.isfinite(overall["accuracy_px"]) and overall["accuracy_px"] <= pass_accuracy_px)
    settings = {"roi_radius_px": roi_radius_px, "distance_cm": distance_cm, "px_per_cm": px_per_cm,
                "pass_accuracy_px": pass_accuracy_px, "score_height_px": score_height_px}
    return {"points": per_point, "overall": overall, "settings": settings}
