"""The attempts of a calibration step and the step's outcome, decided by the server.

``store.Calibration`` rows of a participant, by ``kind``:

* ``"calibration"``: one per calibration round, an *attempt* of the current step; ``model`` is the
  fitted model, or None when the round was frame-starved (a target with fewer than
  ``min_frames`` usable frames) or could not be fitted (``result["error"]``);
* ``"validation"``: one per validation round (``result["calibration"]``: the attempt it checks);
* ``"outcome"``: one per calibration step, written when a validation passes or the step's last
  attempt (``attempts``) is used up: ``model`` is a copy of the *best* attempt's model
  (:func:`gazepref.signals.gaze_session.best_attempt`: passed first, then one validated at
  every point, then the smallest offset, not the last attempt) when it passed, None when no attempt passed: gaze stays uncalibrated
  (x/y NaN, flags UNCALIBRATED | CALIBRATION_FAILED, confidence 0) and the study's
  ``calibration_fallback`` applies. ``result`` holds every attempt's figures (accuracy px and
  degrees, precision, data loss per point), what the exports carry.

The attempts of the current step are the participant's calibration rows after their last
outcome. The trackers use the latest outcome, or during a step its latest fitted attempt
(:data:`.gaze_store.LOOKUP`); a task batch that names an earlier one (taken under it, reaching the
server after a recalibration) is scored with that one (:func:`.gaze_pipeline.frame_context`).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .. import store
from .gaze_settings import GazeSettings
from .runtime import db

__all__ = ["decide", "outcome_for_page", "step_rows"]

CAL = store.Calibration


def step_rows(participant_id: int) -> tuple[list[store.Calibration], list[store.Calibration]]:
    """(attempts, validations) of the participant's current calibration step, oldest first."""
    last = db().scalar(select(CAL.id).where(CAL.participant_id == participant_id, CAL.kind == "outcome")
                       .order_by(CAL.id.desc()).limit(1))
    rows = db().scalars(select(CAL).where(CAL.participant_id == participant_id, CAL.id > (last or 0),
                                          CAL.kind.in_(("calibration", "validation"))).order_by(CAL.id)).all()
    return [r for r in rows if r.kind == "calibration"], [r for r in rows if r.kind == "validation"]


def _attempt_figures(attempt: store.Calibration, validation: store.Calibration | None) -> dict[str, Any]:
    a = attempt.result or {}
    out: dict[str, Any] = {"calibration": attempt.id, "fitted": attempt.model is not None,
                           "starved": a.get("starved", []), "usable_per_target": a.get("usable_per_target"),
                           "error": a.get("error"), "cv_error_px": a.get("cv_error_px"), "validation": None,
                           "passed": False, "accuracy_px": None, "accuracy_deg": None, "precision_px": None,
                           "data_loss": None, "in_roi": None, "webgazer_score_pct": None, "points": []}
    if validation is not None:
        v = validation.result or {}
        overall = v.get("overall", {})
        out.update(validation=validation.id, passed=bool(v.get("passed")), accuracy_px=v.get("accuracy_px"),
                   accuracy_deg=overall.get("accuracy_deg"), precision_px=overall.get("precision_px"),
                   data_loss=overall.get("data_loss"), in_roi=overall.get("in_roi"),
                   validation_starved=v.get("starved", []), webgazer_score_pct=v.get("webgazer_score_pct"),
                   points=[{k: p.get(k) for k in ("target_x", "target_y", "n_samples", "n_valid", "data_loss",
                                                  "accuracy_px", "accuracy_deg", "precision_px", "in_roi",
                                                  "webgazer_score_pct")}
                           for p in v.get("points", [])])
    return out


#: calibration rounds of one step (a multiple of ``attempts``) after which a further round decides
#: it: attempts left unchecked by a reloaded page do not count, a page (or script) that never
#: checks one does not go on for ever
MAX_ROUNDS_PER_ATTEMPT = 2


def spent(attempts: list[store.Calibration], validations: list[store.Calibration]) -> list[store.Calibration]:
    """The attempts that count toward ``attempts``: frame-starved (not fitted) or checked. A fitted
    attempt without a check was left by a page reloaded before it (a crash, F5, another window
    taking the camera over), which then calibrates afresh: the participant did not fail it."""
    done = checked(validations)
    return [a for a in attempts if a.model is None or a.id in done]


def checked(validations: list[store.Calibration]) -> set[int]:
    """The ids of the attempts these validation rows checked."""
    return {(v.result or {}).get("calibration") for v in validations}


def decide(participant_id: int, settings: GazeSettings, viewport: list[float] | None = None,
           force: bool = False) -> store.Calibration | None:
    """The step's outcome row (added to the session, not committed) once a validation passed, the
    attempts are used up, or ``force``; None while the step goes on."""
    from gazepref.signals.gaze_session import best_attempt, quality_word
    from gazepref.signals.gaze_validation import CSS_PX_PER_CM, webgazer_score_pct

    attempts, validations = step_rows(participant_id)
    by_attempt = {(v.result or {}).get("calibration"): v for v in validations}  # the last one per attempt
    figures = [_attempt_figures(a, by_attempt.get(a.id)) for a in attempts]
    if not (force or any(f["passed"] for f in figures) or len(spent(attempts, validations)) >= settings.attempts):
        return None
    best = best_attempt(figures)
    passed = bool(best and best["passed"])
    model = next((a.model for a in attempts if best and a.id == best["calibration"]), None) if passed else None
    keys = ("accuracy_px", "accuracy_deg", "precision_px", "data_loss", "in_roi")
    acc = best["accuracy_px"] if best else None
    score = best.get("webgazer_score_pct") if best else None
    if score is None and acc is not None:  # a validation stored before its samples were scored: from its accuracy
        score = webgazer_score_pct(acc, (viewport or [0, 0])[1])
    result = {
        "passed": passed, "selected": best["calibration"] if best else None,
        **{k: (best[k] if best else None) for k in keys},
        "quality": quality_word(acc, settings.pass_accuracy_px, passed),
        # the kept attempt's score whether it passed or not (IFLLM's ``accuracy``: one unit, %)
        "webgazer_score_pct": score,
        # the kept attempt's validation dots without enough data (a reason it failed)
        "validation_starved": list(best.get("validation_starved") or []) if best else None,
        # the attempts that counted (:func:`spent`: a fitted one left unchecked by a reload does
        # not); n_rounds: every calibration round of the step, ``attempts`` the figures of each
        "n_attempts": len(spent(attempts, validations)), "n_rounds": len(attempts), "attempts": figures,
        "fallback": None if passed else settings.calibration_fallback,
        "settings": {"pass_accuracy_px": settings.pass_accuracy_px, "min_frames": settings.min_frames,
                     "distance_cm": settings.viewing_distance_cm, "px_per_cm": CSS_PX_PER_CM,
                     "attempts": settings.attempts},
        "viewport": viewport,
    }
    row = CAL(participant_id=participant_id, kind="outcome", model=model, result=result)
    db().add(row)
    db().flush()
    return row


def outcome_for_page(row: store.Calibration) -> dict[str, Any]:
    """What the calibration page gets of the outcome: no pixel figures, a plain word."""
    r = row.result or {}
    return {"passed": r.get("passed", False), "quality": r.get("quality", "poor"),
            "fallback": r.get("fallback"), "attempts": r.get("n_attempts", 0)}
