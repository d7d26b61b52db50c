"""The ``calibration`` flow step and what the pages need to capture webcam frames.

The page ``calibration.js`` runs the set-up (face indicator), the calibration and validation
rounds (``POST /api/gaze/round``, :mod:`.gaze`; ``attempts`` in all) and then submits the step.
The server decides the step's outcome (:mod:`.gaze_attempts`): the best attempt when one passed,
else a failed calibration and the study's ``calibration_fallback`` (state ``gaze``:
``"failed"`` mouse-only, ``"uncalibrated"`` features recorded without gaze, or the step stops).
Without a camera: ``webcam = "optional"`` continues mouse-only, ``"required"`` stops.
``recalibrate_every`` adds ``calibration:i`` steps between tasks (the same page; each needs a new
calibration). :func:`page_data` is what the task and calibration pages get to send frames.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request, url_for
from sqlalchemy import select

from .. import store
from .config import StudyConfig
from .gaze_settings import gaze_settings
from .gaze_store import calibration_in_force, next_gaze_seq
from .plan import parse_step
from .runtime import db
from .vendor import base_url as vendor_base_url

__all__ = ["calibrating", "gaze_state", "page_data", "register"]


#: states whose task pages send webcam frames
RECORDING = ("calibrated", "uncalibrated")
#: states that skip later calibration steps (the session went on without the webcam)
WITHOUT_CAMERA = ("no-camera", "skipped", "failed")


def _skipped_recalibration(p: store.Participant, index: int | None) -> bool:
    """Whether the calibration step ``index`` (None: the first) is a recalibration step of a
    session that went on mouse-only at an earlier one: skipped, it takes no rounds."""
    return index is not None and gaze_state(p) in WITHOUT_CAMERA


def gaze_state(p: store.Participant) -> str | None:
    """``"calibrated"``, ``"uncalibrated"`` (calibration failed; features recorded without gaze),
    ``"failed"`` (calibration failed; mouse-only), ``"no-camera"`` (no usable camera; mouse-only),
    ``"skipped"`` (the camera worked, but the set-up's face check did not pass in time and the
    participant went on mouse-only: "Continue without eye tracking") or None (step not reached /
    webcam off)."""
    return (p.state or {}).get("gaze")


def page_data(p: store.Participant, cfg: StudyConfig, task: store.Task | None, token: str) -> dict[str, Any] | None:
    """What the page scripts need to capture frames (None: no webcam for this participant); a
    task page also its task, next gaze seq and ``calibration``, the calibration row in force (the
    step's outcome) that the page sends with every batch and frame, so that one reaching the
    server after a later recalibration is still scored with it (:func:`.gaze_pipeline.frame_context`)."""
    if cfg.webcam == "off" or (task is not None and gaze_state(p) not in RECORDING):
        return None
    data = {"mode": cfg.webcam, "token": token, "settings": gaze_settings(cfg).page(),
            "urls": {"frames": url_for("gaze.frames"), "round": url_for("gaze.calibration_round"),
                     "camera_error": url_for("gaze.camera_error"), "camera_started": url_for("gaze.camera_started"),
                     "samples": url_for("gaze.samples"), "vendor": vendor_base_url()}}
    if current_app.config.get("GAZE_WEBSOCKET", True):  # False: the page posts frame batches only
        data["urls"]["ws"] = url_for("gaze_ws.frames_ws")
    if task is not None:
        data |= {"task": task.id, "next_seq": next_gaze_seq(task), "calibration": calibration_in_force(p.id)}
    return data


def _render_calibration(ctx) -> str:
    from .flow import _page
    from .security import participant_token

    p = ctx.participant
    recalibration = ctx.index is not None
    skip = _skipped_recalibration(p, ctx.index)
    data = None if skip else page_data(p, ctx.config, None, participant_token(p))
    outcome = _step_outcome(p)
    if (not skip and outcome is not None and outcome.model is None
            and gaze_settings(ctx.config).calibration_fallback == "screen-out"):
        return _screen_out(p)  # the page was reloaded after a failed calibration
    if data is not None and outcome is not None:  # reloaded after the step's outcome: show it, calibrate no more
        from .gaze_attempts import outcome_for_page

        data["outcome"] = outcome_for_page(outcome)
    return _page("calibration.html", ctx, gaze=data, recalibration=recalibration,
                 keep_frames=bool(data and data["settings"]["keep_frames"]))


def _screen_out(p: store.Participant) -> str:
    """A failed calibration in a study whose fallback is ``"screen-out"``: the session ends with
    the platform's screen-out page (its code, where the study sets one); the flow shows that page
    from now on (the step view commits the mark)."""
    from .pages import screened_out_page
    from .platforms import mark_screened_out

    mark_screened_out(p, "calibration-failed")
    return screened_out_page(p, "calibration-failed")


def _step_outcome(p: store.Participant) -> store.Calibration | None:
    """The outcome of the current calibration step (None while it has none)."""
    outcomes = db().scalars(select(store.Calibration).where(
        store.Calibration.participant_id == p.id, store.Calibration.kind == "outcome")
        .order_by(store.Calibration.id)).all()
    return outcomes[-1] if len(outcomes) >= _calibration_round_number(p) else None


def calibrating(p: store.Participant) -> bool:
    """Whether ``p`` is on a calibration step that has no outcome yet: the only time the page posts
    calibration and validation rounds. A round at any other time (a second window, a resent
    request, a script) would become the calibration in force after the step was decided; nor
    does a participant who was screened out calibrate."""
    from .platforms import screened_out

    st = p.state or {}
    if screened_out(p) or st.get("finished_at"):
        return False
    steps, pos = st.get("steps", []), st.get("pos", 0)
    if not (isinstance(pos, int) and 0 <= pos < len(steps)):
        return False
    name, index = parse_step(steps[pos])
    if name != "calibration" or _skipped_recalibration(p, index):
        return False
    return _step_outcome(p) is None


def _calibration_round_number(p: store.Participant) -> int:
    """1 for the first calibration step, k for the k-th (recalibrations between tasks)."""
    st = p.state or {}
    done = st.get("steps", [])[:st.get("pos", 0) + 1]
    return sum(1 for step in done if parse_step(step)[0] == "calibration")


def _submit_calibration(ctx) -> list[str]:
    from .flow import set_state

    p = ctx.participant
    if _skipped_recalibration(p, ctx.index):
        return []
    outcome = request.form.get("outcome", "")
    if outcome in ("no-camera", "skipped"):
        if ctx.config.webcam == "required":  # screened out: the platform's screen-out code, if any
            from .platforms import mark_screened_out

            mark_screened_out(p, "no-camera", camera=outcome)
            return []
        set_state(p, gaze=outcome)
        return []
    outcome = _step_outcome(p)  # a recalibration step needs a new outcome
    if outcome is None:
        return ["Please complete the camera calibration first."]
    if outcome.model is not None:
        set_state(p, gaze="calibrated")
        return []
    fallback = gaze_settings(ctx.config).calibration_fallback
    if fallback == "screen-out":  # the flow shows the platform's screen-out page from now on
        from .platforms import mark_screened_out

        mark_screened_out(p, "calibration-failed")
        return []
    set_state(p, gaze="failed" if fallback == "mouse-only" else "uncalibrated")
    return []


def register(app) -> None:
    """Install the calibration step in ``app``'s flow (called by the app factory)."""
    from .flow import register_step

    register_step("calibration", _render_calibration, _submit_calibration, app=app)
