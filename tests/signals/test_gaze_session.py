"""Calibration and validation rounds from tracker rows (what the study site calls)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gazepref.schema import GazeFlag
from gazepref.signals.calibration import GazeCalibration, target_grid
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
    assert summary["n_blinks_rejected"] == 0 and summary["n_outliers_rejected"] <= 5

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


def test_starved_targets_count_only_usable_rows():
    from gazepref.signals.gaze_session import starved_targets, usable_counts

    rng = np.random.default_rng(1)
    points = [((100, 100), rows_at((100, 100), 6, rng)),
              ((500, 100), rows_at((500, 100), 3, rng) + rows_at((500, 100), 4, rng, flags=GazeFlag.BLINK)),
              ((900, 100), rows_at((900, 100), 5, rng, flags=GazeFlag.NO_FACE)),
              ((900, 500), [])]
    assert usable_counts(points) == [6, 3, 0, 0]
    assert starved_targets(points, 5) == [1, 2, 3]
    assert starved_targets(points, 3) == [2, 3]


def test_best_attempt_is_kept_not_the_last():
    from gazepref.signals.gaze_session import best_attempt

    first = {"calibration": 1, "passed": False, "accuracy_px": 556.0}
    second = {"calibration": 3, "passed": False, "accuracy_px": 849.0}
    starved = {"calibration": 5, "passed": False, "accuracy_px": None}
    assert best_attempt([first, second, starved]) is first
    passed = {"calibration": 7, "passed": True, "accuracy_px": 180.0}
    assert best_attempt([first, passed]) is passed
    better_but_failed = {"calibration": 9, "passed": False, "accuracy_px": 150.0}  # e.g. a point without data
    assert best_attempt([better_but_failed, passed]) is passed
    assert best_attempt([starved]) is None and best_attempt([]) is None
    assert best_attempt([first, dict(first, calibration=2)])["calibration"] == 1  # ties: the earlier
    # a validation stopped at a starved point averages the points before it: a whole check goes first
    one_point = {"calibration": 11, "passed": False, "accuracy_px": 80.0, "validation_starved": [1]}
    whole = {"calibration": 13, "passed": False, "accuracy_px": 250.0, "validation_starved": []}
    assert best_attempt([one_point, whole]) is whole and best_attempt([whole, one_point]) is whole
    assert best_attempt([one_point, dict(one_point, calibration=15, accuracy_px=60.0)])["calibration"] == 15


@pytest.mark.parametrize("accuracy, word", [(50.0, "good"), (100.0, "good"), (150.0, "fair"), (200.0, "fair"),
                                            (201.0, "poor"), (None, "poor"), (float("nan"), "poor")])
def test_participants_get_a_plain_word(accuracy, word):
    from gazepref.signals.gaze_session import quality_word

    assert quality_word(accuracy, 200.0) == word
    assert quality_word(accuracy, 200.0, passed=False) == "poor"  # a round that did not pass


@pytest.mark.parametrize("accuracy, word", [(90.0, "good"), (150.0, "fair"), (450.0, "fair"), (900.0, "fair"),
                                            (1100.0, "poor")])
def test_a_lenient_threshold_does_not_make_a_poor_gaze_good(accuracy, word):
    """With a lenient pass threshold (1000 px) a passed calibration is "good" only within 100 px
    (half the default threshold, the dashboard panel's line): 450 px, ~11 degrees, is "fair"."""
    from gazepref.signals.gaze_session import quality_word

    assert quality_word(accuracy, 1000.0) == word


def test_webgazer_score():
    """WebGazer's score (IFLLM's ``accuracy``): each sample's ``100 - distance / (height / 2) x
    100``, 0 from half the height on, then the mean: a sample on the target and one 800 px off
    score 50 % together, not 0 as the score of their mean distance (400 px) would."""
    from gazepref.signals.gaze_validation import webgazer_score_pct

    assert webgazer_score_pct(0.0, 800) == 100.0
    assert webgazer_score_pct(100.0, 800) == pytest.approx(75.0)
    assert webgazer_score_pct(500.0, 800) == 0.0
    assert webgazer_score_pct([0.0, 800.0], 800) == pytest.approx(50.0)
    assert webgazer_score_pct([100.0, 300.0, float("nan")], 800) == pytest.approx(50.0)
    assert webgazer_score_pct(None, 800) is None and webgazer_score_pct([float("nan")], 800) is None
    assert webgazer_score_pct(100.0, 0) is None and webgazer_score_pct(100.0, None) is None


def test_rounds_of_one_sitting_do_not_choose_the_model():
    """Two rounds in one sitting (the head placed once): the rounds choose the penalties
    leave-one-round-out, but they do not choose the model: it is the blend of the line-of-sight
    and the one-stage model, as without rounds, even where the one-stage model would fit these
    rounds better (a broken sight point)."""
    from gazepref.signals import synthetic_gaze as sg

    rng = np.random.default_rng(2)
    person, sitting = sg.Person.random(rng), sg.Sitting.random(rng)
    rounds = [sg.session_rows(person, sitting, rng, repeats=1) for _ in range(2)]
    points, labels = [], []
    for k, (rows, targets) in enumerate(rounds):
        rows = rows.assign(sight_x_cm=rng.normal(size=len(rows)), sight_y_cm=rng.normal(size=len(rows)))
        points += [(tuple(t), [r]) for t, r in zip(targets, rows.to_dict("records"))]
        labels += [k] * len(rows)
    assert calibrate(points, rounds=labels).model_kind_ == "blend"
    assert GazeCalibration().fit(pd.DataFrame([p[1][0] for p in points]), [p[0] for p in points],
                                 groups=labels).model_kind_ == "one-stage"  # as if they were sittings
