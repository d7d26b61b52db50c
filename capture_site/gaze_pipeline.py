"""A participant's webcam frames on their way through the server, the same for an HTTP batch
(:mod:`.gaze`) and the WebSocket (:mod:`.gaze_ws`): look up who sends them, where they go and
which calibration they were taken under (:func:`frame_context`), run them through the tracker
(:func:`track_frames`: decoding, load shedding, drift correction) and store a task's rows as one
gaze chunk (:func:`store_task_rows`)."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from . import gaze_drift
from .api import ApiError
from .chunks import check_seq_room
from .gaze_limits import frame_key, frame_limiter, shed_ms
from .gaze_requests import FrameMeta
from .gaze_settings import GazeSettings
from .gaze_store import LOOKUP, frame_rows, older_scoring, store_gaze, study_settings, sync_calibration
from .gaze_trackers import Scoring, TrackerEntry, decode_frames, process_frames, registry
from .ratelimit import with_take
from .runtime import site
from .security import ParticipantToken

__all__ = ["FrameContext", "frame_context", "store_task_rows", "track_frames", "track_samples", "uncalibrated"]


class FrameContext(NamedTuple):
    """What one lookup tells about a participant's frames (:func:`frame_context`)."""
    pid: int
    pseudonym: str             # the row's: with pid, who the participant is (a deleted row's id may be reused)
    meta: FrameMeta
    settings: GazeSettings
    entry: TrackerEntry
    replay: bool               # (task, origin, seq) is stored already (an HTTP replay)
    last_seq: int | None       # the page load's (origin's) highest stored gaze chunk seq
    set_anchor: bool           # the task has no clock anchor yet
    # task frames: the calibration they are scored with (the one they were taken under); None:
    # the tracker's latest when they are processed (set-up frames, replays)
    scoring: Scoring | None = None

    @property
    def calibrated(self) -> bool:
        """Whether the frames get a gaze estimate (their calibration has a model)."""
        return (self.entry.tracker.calibration if self.scoring is None else self.scoring.model) is not None


_LOOKUP_TAKING = with_take(LOOKUP)


def frame_context(token: ParticipantToken, meta: FrameMeta, kind: str = "frames",
                  limited: str | None = None) -> FrameContext:
    """One query (:data:`.gaze_store.LOOKUP`): the token's participant (its row, whose pseudonym
    the token's digest must match: :meth:`.security.ParticipantToken.matches`), consent, study
    settings, task ownership, replay; then the participant's tracker with the latest calibration
    and the calibration task frames are scored with (``scoring``): the one ``meta.calibration``
    names, which must be one of the participant's in force (ApiError 403 otherwise; an older one
    is loaded beside the latest, which stays as it is, drift state included), else the latest
    (and, in a task with drift correction, the clicks stored since the last look, into that
    calibration's drift state). ``kind``: ``"frames"`` (pictures; refused where the
    study computes the landmarks in the browser: no picture is taken in) or ``"samples"``
    (landmarks from the page; refused where the server computes them). ``limited``: take a token
    of the participant's frame-batch limit (:func:`.gaze_limits.frame_limiter`; on PostgreSQL in
    the lookup's own statement) and refuse with this message (429) when there is none. Raises
    ApiError 401/403/429."""
    task_id, seq, pid = meta.task_id, meta.seq, token.id
    tag = meta.calibration if meta.phase == "task" else None
    params = {"pid": pid, "task": -1 if task_id is None else task_id, "seq": -1 if seq is None else seq,
              "origin": -1.0 if meta.origin is None else float(meta.origin), "cal": -1 if tag is None else tag}
    limiter, key = frame_limiter(), frame_key(pid)
    networked = limited is not None and site().engine.dialect.name != "sqlite"
    allowed = True
    if limited is not None and not networked:
        allowed = limiter.allow(key)
    with site().statements.connect() as conn:
        found = conn.execute(_LOOKUP_TAKING if networked else LOOKUP,
                             params | limiter.params(key) if networked else params).first()
    if found is not None and not token.matches(found.pseudonym):
        found = None  # the row took a deleted participant's id: not the token's participant
    if networked and found is not None:
        allowed = bool(found.took) and limiter.burst >= 1.0
    if not allowed:
        raise ApiError(429, limited, retry_after=1)
    if found is None or not found.consent:
        raise ApiError(401, "unknown participant")
    cfg, settings = study_settings(found.study_id)
    if cfg.webcam == "off":
        raise ApiError(403, "this study records no webcam")
    check_compute(settings, kind)
    if meta.phase == "task" and found.owner != pid:
        raise ApiError(403, f"task {task_id} is not yours")
    if meta.phase == "task" and not found.replay and seq is not None:  # (a socket's context has none:
        check_seq_room(task_id, seq)                                    # it looks at each frame's)
    if tag is not None and found.tagged is None:  # another participant's, unknown, or never in force
        raise ApiError(403, f"calibration {tag} is not one of yours")
    entry = registry().get((pid, found.pseudonym), settings)
    ctx = FrameContext(pid, found.pseudonym, meta, settings, entry, bool(found.replay), found.last_seq, found.anchor is None)
    if found.replay or meta.phase != "task":
        return ctx
    # taken under an older calibration, reaching the server after a newer one (a retried batch, the
    # outbox, a reconnect): scored with that one and its own drift state; the latest's stays
    older = tag is not None and tag != found.calibration
    if not (older or found.calibration != entry.calibration_id):
        with entry.lock:
            scoring = entry.latest()
            # the correction from clicks: nothing new to read unless the page made a click this
            # process has not read (gaze_drift.needs_update)
            read = not settings.click_correction or not gaze_drift.needs_update(
                scoring.drift, task_id, meta.origin, meta.clicks)
        if read and (tag is None or scoring.id == tag):
            return ctx._replace(scoring=_recording(scoring, settings))
    with site().statements.connect() as conn:  # reads: one round trip each
        if not older:
            sync_calibration(entry, found.calibration, conn)
        with entry.lock:
            scoring = entry.latest()
        if tag is not None and scoring.id != tag:
            # (also when a newer calibration became the latest since the lookup: a round of the
            # participant's next calibration step, another request's newer lookup)
            scoring = older_scoring(entry, tag, conn)
        _recording(scoring, settings)
        if settings.click_correction:  # into the drift state of the calibration that scores the batch
            with entry.lock:
                gaze_drift.update(conn, scoring.drift, task_id, meta.origin)
    return ctx._replace(scoring=scoring)


def _recording(scoring: Scoring, settings: GazeSettings) -> Scoring:
    """``scoring`` when task gaze is recorded under it: a calibration in force (one that passed,
    or a failed one's outcome where the study's fallback is ``record-uncalibrated``); else
    ApiError 409, nothing stored: the session goes on without the webcam (no calibration: no
    camera, the set-up skipped; a failed one: ``mouse-only``), and its task pages send nothing.
    A late batch taken under an earlier calibration that recorded is scored with that one."""
    if scoring.id is None or (scoring.failed and settings.calibration_fallback != "record-uncalibrated"):
        raise ApiError(409, "this session goes on without the webcam: its tasks record no gaze")
    return scoring


def track_frames(ctx: FrameContext, frames_: list[bytes], times: list[float], arrived: float | None = None,
                 stale: Callable[[], bool] | None = None) -> tuple[list[dict[str, float]], int]:
    """Decode ``frames_`` (all first: one bad frame, ApiError 400, processes none), run them through
    the participant's tracker (load shedding as configured, and ``stale``: see
    :func:`.gaze_trackers.process_frames`), scored with the frames' calibration (``ctx.scoring``),
    drift-correct task rows."""
    images = decode_frames(frames_, ctx.settings.max_side)
    rows, dropped = process_frames(ctx.entry, images, times, arrived, shed_ms(), stale, ctx.scoring)
    _task_rows(ctx, rows)
    return rows, dropped


def track_samples(ctx: FrameContext, samples: list, times: list[float]) -> list[dict[str, float]]:
    """Run the page's landmark samples (:mod:`.gaze_samples`) through the participant's tracker and
    drift-correct task rows, as :func:`track_frames` does for pictures."""
    from .gaze_samples import process_samples

    rows = process_samples(ctx.entry, samples, times, ctx.scoring)
    _task_rows(ctx, rows)
    return rows


def _task_rows(ctx: FrameContext, rows: list[dict[str, float]]) -> None:
    if ctx.meta.phase == "task" and rows:
        scoring = ctx.scoring if ctx.scoring is not None else ctx.entry.latest()
        uncalibrated(rows, scoring.failed)
        if ctx.settings.click_correction:
            with ctx.entry.lock:
                gaze_drift.apply(rows, scoring.drift, float(ctx.meta.origin or 0.0), ctx.meta.task_id)
    if ctx.meta.phase == "setup":
        from .setup_log import note_setup_frames

        note_setup_frames((ctx.pid, ctx.pseudonym), rows)  # the dashboard's "why they stopped" (no face, too far, ...)


def check_compute(settings: GazeSettings, kind: str) -> None:
    """ApiError 403 when the study takes the other kind of data (``frames`` / ``samples``)."""
    if kind == "frames" and settings.compute == "browser":
        raise ApiError(403, "this study computes the face landmarks in the browser: camera pictures are not accepted")
    if kind == "samples" and settings.compute != "browser":
        raise ApiError(403, "this study computes the face landmarks on the server: send camera pictures")


def uncalibrated(rows: list[dict[str, float]], failed: bool) -> None:
    """Rows without a gaze estimate (no calibration in force, or no usable face) get confidence 0:
    the confidence is that of the gaze x/y, and there is none; after a failed calibration they
    also carry CALIBRATION_FAILED."""
    from gazepref.schema import GazeFlag

    for r in rows:
        if not (math.isfinite(r["x"]) and math.isfinite(r["y"])):
            r["confidence"] = 0.0
            if failed:
                r["flags"] = int(r["flags"]) | GazeFlag.UNCALIBRATED | GazeFlag.CALIBRATION_FAILED


def store_task_rows(ctx: FrameContext, seq: int, rows: list[dict[str, float]], frames_: list[bytes],
                    times: list[float], set_anchor: bool | None = None, seqs: list[int] | None = None) -> int:
    """Store task ``rows`` as the gaze chunk ``seq`` (with the frames when the study keeps them),
    leaving out the frames stored already (:func:`.gaze_store.store_gaze`; ``seqs``: the frames'
    own seqs, the WebSocket's); the number of rows stored (0: all stored already, or a replay)."""
    kept = (frame_rows(frames_, times, ctx.pid, task_id=ctx.meta.task_id, seq=seq)
            if ctx.settings.keep_frames else None)
    return store_gaze(ctx.meta.task_id, seq, float(ctx.meta.origin), rows,
                      set_anchor=ctx.set_anchor if set_anchor is None else set_anchor, frames=kept, seqs=seqs)
