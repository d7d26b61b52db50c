"""The ``calibration`` flow step and what the pages need to capture webcam frames.

The page ``calibration.js`` runs the set-up (face indicator), the calibration and validation
rounds (``POST /api/gaze/round``, :mod:`.gaze`; one retry by default) and then submits the step.
Without a camera: ``webcam = "optional"`` continues mouse-only, ``"required"`` stops.
``recalibrate_every`` adds ``calibration:i`` steps between tasks (the same page; each needs a new
calibration). :func:`page_data` is what the task and calibration pages get to send frames.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, request, url_for
from sqlalchemy import func, select

from .. import store
from .config import StudyConfig
from .gaze_settings import gaze_settings
from .gaze_store import next_gaze_seq
from .plan import parse_step
from .runtime import db

__all__ = ["gaze_state", "page_data", "register"]


def gaze_state(p: store.Participant) -> str | None:
    """``"calibrated"``, ``"no-camera"`` or None (step not reached / webcam off)."""
    return (p.state or {}).get("gaze")


def page_data(p: store.Participant, cfg: StudyConfig, task: store.Task | None, token: str) -> dict[str, Any] | None:
    """What the page scripts need to capture frames (None: no webcam for this participant)."""
    if cfg.webcam == "off" or (task is not None and gaze_state(p) != "calibrated"):
        return None
    data = {"mode": cfg.webcam, "token": token, "settings": gaze_settings(cfg).page(),
            "urls": {"frames": url_for("gaze.frames"), "round": url_for("gaze.calibration_round"),
                     "camera_error": url_for("gaze.camera_error")}}
    if current_app.config.get("GAZE_WEBSOCKET", True):  # False: the page posts frame batches only
        data["urls"]["ws"] = url_for("gaze_ws.frames_ws")
    if task is not None:
        data |= {"task": task.id, "next_seq": next_gaze_seq(task)}
    return data


def _render_calibration(ctx) -> str:
    from .flow import _page
    from .security import participant_token

    p = ctx.participant
    recalibration = ctx.index is not None
    skip = recalibration and gaze_state(p) == "no-camera"  # mouse-only since the first calibration step
    data = None if skip else page_data(p, ctx.config, None, participant_token(p.id))
    return _page("calibration.html", ctx, gaze=data, recalibration=recalibration,
                 keep_frames=bool(data and data["settings"]["keep_frames"]))


def _calibration_round_number(p: store.Participant) -> int:
    """1 for the first calibration step, k for the k-th (recalibrations between tasks)."""
    st = p.state or {}
    done = st.get("steps", [])[:st.get("pos", 0) + 1]
    return sum(1 for step in done if parse_step(step)[0] == "calibration")


def _submit_calibration(ctx) -> list[str]:
    from .flow import set_state

    p = ctx.participant
    if ctx.index is not None and gaze_state(p) == "no-camera":
        return []  # a recalibration step of a mouse-only session
    outcome = request.form.get("outcome", "")
    if outcome == "no-camera":
        if ctx.config.webcam == "required":
            return ["This study needs a webcam; it cannot continue without one."]
        set_state(p, gaze="no-camera")
        return []
    has_cal = db().scalar(select(func.count()).select_from(store.Calibration).where(
        store.Calibration.participant_id == p.id, store.Calibration.kind == "calibration"))
    if has_cal < _calibration_round_number(p):  # a recalibration step needs a new calibration
        return ["Please complete the camera calibration first."]
    set_state(p, gaze="calibrated")
    return []


def register(app) -> None:
    """Install the calibration step in ``app``'s flow (called by the app factory)."""
    from .flow import register_step

    register_step("calibration", _render_calibration, _submit_calibration, app=app)
