"""Calibration and validation rounds from tracker rows (what the study site calls)."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.schema import GazeFlag
from gazepref.signals.calibration import target_grid
from gazepref.signals.gaze_session import calibrate, calibration_summary, validate_round


def rows_at(target, n, rng, flags=0):
    """Tracker-like rows whose iris offsets encode the target (1 px ~ 1e-4)."""
    x, y = target
    return [{"eye_l_iris_u": (x - 800) * 1e-4 + rng.normal(0, 2e-4), "eye_l_iris_v": (y - 450) * 1e-4 + rng.normal(0, 2e-4),
             "head_yaw": rng.normal(), "flags": flags} for _ in range(n)]


def test_calibrate_and_validate_round():
    rng = np.random.default_rng(0)
    cal_points = [(t, rows_at(t, 6, rng)) for t in target_grid(9, 1600, 900)]
    # blinks carry garbage features and must be ignored
    cal_points[0][1].extend({**r, "eye_l_iris_u": 5.0, "flags": GazeFlag.BLINK} for r in rows_at((0, 0), 3, rng))
    model = calibrate(cal_points)
    assert model.n_samples_fit_ == 54
    summary = calibration_summary(model)
    assert summary["cv_error_px"] < 20 and len(summary["alpha"]) == 2

    val_targets = target_grid(13, 1600, 900)[9:]  # the four points not calibrated on
    val_points = [(t, rows_at(t, 5, rng)) for t in val_targets]
    val_points[0][1].append({"eye_l_iris_u": np.nan, "eye_l_iris_v": np.nan, "head_yaw": np.nan,
                             "flags": GazeFlag.NO_FACE})
    val_points[1][1].append({**rows_at((0, 0), 1, rng)[0], "flags": GazeFlag.BLINK})
    result = validate_round(model, val_points, roi_radius_px=50, pass_accuracy_px=40)
    o = result["overall"]
    assert o["accuracy_px"] < 20 and o["passed"] and o["in_roi"] == 1.0
    assert o["data_loss"] == pytest.approx(2 / 22)
    assert result["points"][0]["n_valid"] == 5 and result["points"][1]["n_valid"] == 5


def test_calibrate_with_rounds_and_too_few_samples():
    rng = np.random.default_rng(1)
    points = [(t, rows_at(t, 3, rng)) for t in target_grid(9, 1600, 900)] * 2
    model = calibrate(points, rounds=[0] * 9 + [1] * 9)
    assert model.n_samples_fit_ == 54
    with pytest.raises(ValueError, match="usable calibration samples"):
        calibrate([((0, 0), rows_at((0, 0), 3, rng, flags=GazeFlag.NO_FACE))])
