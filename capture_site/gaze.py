"""Webcam gaze in the study site: frame ingest, the calibration step and per-participant trackers.

* ``POST /api/gaze/frames`` (multipart, participant token): ``meta`` = JSON ``{"phase": "setup" |
  "task", "task": id, "seq": n, "origin": performance.timeOrigin, "calibration": id, "t": [ms,
  ...]}`` and one part ``frame`` (``image/jpeg``) per time. Each frame goes through the participant's
  :class:`~gazepref.signals.webcam.GazeTracker`, task frames scored with the calibration the
  page names (its ``gaze.calibration``: one reaching the server after a recalibration still gets
  the model it was taken under; not one of the participant's in force: 403; none: the latest,
  :func:`.gaze_pipeline.frame_context`); in a task the rows are stored as one ``gaze``
  chunk keyed (task, "gaze", seq), so a replayed batch adds nothing, and frames the task has
  stored already (a lost WebSocket's, resent in a batch) are left out
  (:func:`.gaze_store.store_gaze`). Frames are discarded after
  processing unless the study keeps them (``keep_frames``: ``store.GazeFrame`` rows). With
  ``drift_correction`` / ``interaction_calibration``, clicks of the task correct later rows
  (:mod:`.gaze_drift`). Answers ``{ok, seq, stored (rows), duplicate, face: {found, ok, code, message}}``
  and, in the set-up phase, ``usable`` (the times of the frames a calibration can use); a corrupt, oversized or non-JPEG
  frame gets 400 ``{"error"}`` and nothing of the batch is stored.
* ``POST /api/gaze/samples`` (JSON, gzip allowed; ``[gaze] compute = "browser"``, the default):
  ``{"phase", "task", "seq", "origin", "calibration", "samples": [...]}``, the landmark samples the page computes
  instead of sending pictures (:mod:`.gaze_samples`); answered as ``/frames``. A study takes only
  its own kind: pictures (``/frames``, the WebSocket, multipart rounds) in server mode, samples
  in browser mode (403 otherwise).
* ``POST /api/gaze/round`` (multipart; in browser mode JSON with the targets' ``samples``): ``meta`` = ``{"kind": "calibration" | "validation",
  "viewport": [w, h], "targets": [{"x", "y", "t": [...], "seen"}, ...]}`` with the frames of each target
  (those after the eyes settled, until the dot had ``min_frames`` usable frames; at most
  ``target_frames``, the usable ones first, of the ``seen`` the page recorded), in target
  order. The server counts the usable rows per target (``usable_per_target``, ``starved``). A
  calibration round with a starved target is refused (422) and stored as an attempt without a
  model; else it fits :func:`~gazepref.signals.gaze_session.calibrate` and stores a
  ``store.Calibration(kind="calibration")`` row with the model (an attempt); a validation round
  stores ``kind="validation"`` with the metrics (data loss per point, of the ``seen`` frames; the
  page is answered only ``passed`` and a word, ``quality``: good/fair/poor, no figures) and ``passed`` (a starved
  point fails it). When a validation passes or the ``attempts`` are used up, the step's outcome
  (:mod:`.gaze_attempts`: the best attempt, or a failed calibration) is stored and answered as
  ``outcome`` (``{passed, quality: good|fair|poor, fallback, attempts}``). Self-contained, so it
  works with several server processes. Rounds are taken only while the participant is on a
  calibration step that is not yet decided (409 otherwise: a second window or a resent request
  after the outcome would otherwise become the calibration in force).

The parts, by job: request parsing :mod:`.gaze_requests` (multipart: :mod:`.multipart`), the
per-participant trackers :mod:`.gaze_trackers`, rate limit, pipeline slots and load shedding
:mod:`.gaze_limits`, the way of a frame batch shared with the WebSocket :mod:`.gaze_pipeline`,
the database :mod:`.gaze_store` (chunks through :func:`.chunks.insert_chunks`, as the telemetry
batches), the ``calibration`` flow step and the pages' capture settings :mod:`.gaze_step`.

Settings: the study TOML's ``[gaze]`` table (:class:`~.gaze_settings.GazeSettings`); server-side:
app config ``GAZE_RATE_PER_S`` / ``GAZE_BURST`` (per-participant rate limit) and ``GAZE_SHED_MS`` (or
``$GAZEPREF_GAZE_SHED_MS``: frames reached later than this after their request arrived are stored
unprocessed with the DROPPED flag; off by default), ``GAZE_CONCURRENCY`` (frames in the pipeline
at once per process; default the CPU count, 0 = no limit) and ``GAZE_WEBSOCKET`` (False: the pages
post batches only, no WebSocket, :mod:`.gaze_ws`). See docs/gaze.md, "In the site".
"""
from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import insert

from .. import json_safe, store
from .api import UNKNOWN_PARTICIPANT, ApiError, install_error_handlers, request_token, token_participant
from .gaze_limits import frame_key, frame_limiter
from .gaze_pacing import pacer
from .gaze_pipeline import check_compute, frame_context, store_task_rows, track_frames, track_samples
from .gaze_requests import frame_meta, frame_parts, integer, json_body, multipart_form, numbers
from .gaze_samples import parse_samples, process_samples
from .gaze_settings import (MAX_FRAMES_PER_BATCH, MAX_FRAMES_PER_ROUND, MAX_ROUND_BYTES, MAX_SAMPLES_PER_BATCH,
                            GazeSettings, validation_targets)
from .chunks import participant_lock
from .gaze_attempts import MAX_ROUNDS_PER_ATTEMPT, checked, decide, outcome_for_page, spent, step_rows
from .gaze_step import calibrating
from .gaze_store import F, frame_rows, participant_settings, sync_calibration
from .gaze_trackers import decode_frames, process_frames, registry, usable_times
from .plan import step_at
from .purge import commit_in_study, deletion_of, withdrawal_of
from .runtime import db
from .validation import InvalidInput, page_time_ms

__all__ = ["bp"]

bp = Blueprint("gaze", __name__, url_prefix="/api/gaze")
install_error_handlers(bp)


# --------------------------------------------------------------------------- frames


@bp.post("/frames")
def frames():
    arrived = time.monotonic()
    token = request_token()
    refusal = "too many frame batches; slow down"
    meta_, parts = multipart_form((frame_limiter(), frame_key(token.id)), refusal)
    meta = frame_meta(meta_)
    frames_ = frame_parts(parts, len(meta.times), MAX_FRAMES_PER_BATCH)
    ctx = frame_context(token, meta, limited=refusal)
    seq = meta.seq
    if ctx.replay:
        return jsonify(ok=True, seq=seq, stored=0, duplicate=True, face=ctx.entry.face)
    rows, dropped = track_frames(ctx, frames_, meta.times, arrived)
    stored = 0
    if meta.phase == "task" and rows:
        stored = store_task_rows(ctx, seq, rows, frames_, meta.times)  # (frames stored already left out)
    entry = ctx.entry
    extra = {"usable": usable_times(rows)} if meta.phase == "setup" else {}
    return jsonify(ok=True, seq=seq, stored=stored, duplicate=meta.phase == "task" and not stored and bool(rows),
                   dropped=dropped, face=entry.face, calibrated=ctx.calibrated, **extra)


@bp.post("/camera-error")
def camera_error():
    """The set-up page could not open the camera: ``{"reason": "denied" | "not-found" | ...}``
    (kept for the dashboard, :mod:`.setup_log`)."""
    from .setup_log import note_camera_error

    p = _setup_participant()
    body = json_body((frame_limiter(), frame_key(p.id)), "too many camera reports; slow down")
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string")
    note_camera_error((p.id, p.pseudonym), reason)
    return jsonify(ok=True)


def _setup_participant() -> store.Participant:
    """The token's participant for a camera report (:mod:`.setup_log`): one of their frame-batch
    tokens taken (429 when none: each report is a write), 409 once their study is done (the
    dashboard's set-up summary stays what it was)."""
    p = token_participant(request_token())
    if step_at(p.state, "done") == "done":
        raise ApiError(409, "the study is over for this participant: no camera to report on")
    if not frame_limiter().allow(frame_key(p.id)):
        raise ApiError(429, "too many camera reports; slow down", retry_after=1)
    return p


@bp.post("/camera-started")
def camera_started():
    """The set-up page opened the camera (no body): an earlier camera error of the participant
    (denied, then allowed on "Try the camera again") is superseded (:mod:`.setup_log`)."""
    from .setup_log import note_camera_started

    p = _setup_participant()
    note_camera_started((p.id, p.pseudonym))
    return jsonify(ok=True)


#: a sample batch's body above this size (as JSON) is parsed only once the participant's bucket
#: was seen to hold a token (:func:`.batches.out_of_tokens_for`): the page's samples take ~1.4 KB
#: of JSON each, so its largest batches (:data:`MAX_SAMPLES_PER_BATCH`, what a paced page sends
#: while the server is short of CPU: ~83 KB) stay below and cost no extra read then
LARGE_SAMPLES_BYTES = MAX_SAMPLES_PER_BATCH * 2048


@bp.post("/samples")
def samples():
    """Landmark samples of the page (``compute = "browser"``; :mod:`.gaze_samples`): JSON (gzip
    allowed) ``{phase, task, seq, origin, calibration, samples: [...]}``; answered as ``/frames``,
    a task batch's answer with ``batch_ms``, when the page should post its next one
    (:mod:`.gaze_pacing`)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    token = request_token()
    refusal = "too many sample batches; slow down"
    body = json_body((frame_limiter(), frame_key(token.id)), refusal, large=LARGE_SAMPLES_BYTES)
    items, times = parse_samples(body.get("samples"), MAX_SAMPLES_PER_BATCH)
    meta = frame_meta(body, times)
    ctx = frame_context(token, meta, "samples", limited=refusal)
    seq = meta.seq
    pace, settings = pacer(), ctx.settings
    if ctx.replay:
        return jsonify(ok=True, seq=seq, stored=0, duplicate=True, face=ctx.entry.face,
                       batch_ms=pace.interval_ms(settings.task_batch_ms, settings.task_batch_max_ms))
    rows = track_samples(ctx, items, times)
    stored = 0
    extra: dict = {}
    if meta.phase == "task":
        stored = store_task_rows(ctx, seq, rows, [], times) if rows else 0
        pace.observe(time.perf_counter() - wall, time.thread_time() - cpu)
        extra["batch_ms"] = pace.interval_ms(settings.task_batch_ms, settings.task_batch_max_ms)
    else:
        extra["usable"] = usable_times(rows)
    return jsonify(ok=True, seq=seq, stored=stored, duplicate=meta.phase == "task" and not stored and bool(rows),
                   dropped=0, face=ctx.entry.face, calibrated=ctx.calibrated, **extra)


# --------------------------------------------------------------------------- calibration rounds

#: a round's viewport (CSS px) beyond these is no browser window
MIN_VIEWPORT_PX, MAX_VIEWPORT_PX = 100, 16384


@bp.post("/round")
def calibration_round():
    from gazepref.signals.gaze_session import calibrate, calibration_summary, usable_counts

    request.max_content_length = MAX_ROUND_BYTES  # a round carries all its targets' frames at once
    token = request_token()
    pid = token.id
    if not frame_limiter().allow(frame_key(pid)):
        raise ApiError(429, "too many requests; slow down", retry_after=1)
    landmarks = request.mimetype == "application/json" or request.headers.get("Content-Encoding", "").lower() == "gzip"
    p, settings = participant_settings(token)
    # (before the body is read: a round of the other kind is told what this study takes)
    check_compute(settings, "samples" if landmarks else "frames")
    db().rollback()  # no transaction held while a round of up to MAX_ROUND_BYTES arrives
    meta, parts = (json_body(), []) if landmarks else multipart_form()
    kind = meta.get("kind")
    if kind not in ("calibration", "validation"):
        raise ApiError(400, f"kind must be 'calibration' or 'validation' (got {kind!r})")
    viewport = meta.get("viewport")
    if not (isinstance(viewport, list) and len(viewport) == 2):
        raise ApiError(400, "viewport must be [width, height]")
    viewport = numbers(viewport, "viewport")
    if not all(MIN_VIEWPORT_PX <= v <= MAX_VIEWPORT_PX for v in viewport):
        raise ApiError(400, f"viewport must be [width, height] in CSS px, each from {MIN_VIEWPORT_PX} to {MAX_VIEWPORT_PX}")
    targets = meta.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        raise ApiError(400, "targets must be a non-empty list of {x, y, t}")
    per_target = [numbers(t.get("t"), f"targets[{i}].t") for i, t in enumerate(targets)]
    # page-clock times (performance.now(): from 0), as a task batch's (a round stored with t = 1e300
    # spent an attempt); not in order: the page sends a dot's usable pictures first
    try:
        for i, ts in enumerate(per_target):
            for v in ts:
                page_time_ms(v, f"targets[{i}].t")
    except InvalidInput as e:
        raise ApiError(400, str(e)) from None
    xy = [tuple(numbers([t.get("x"), t.get("y")], f"targets[{i}] x/y")) for i, t in enumerate(targets)]
    # in the window the dots were shown in (CSS px from its top left): the page ends a round whose
    # window changes size or zoom meanwhile (calibration.js), and sends the window its dots were
    # placed in; a dot outside it was never seen where it is said to be (dots left off a window
    # made smaller, once regressed onto as if looked at)
    if not all(0 <= x <= viewport[0] + 1 and 0 <= y <= viewport[1] + 1 for x, y in xy):
        raise ApiError(400, f"every target must lie in the round's viewport (0 to {viewport[0]:g} x 0 to "
                            f"{viewport[1]:g} CSS px)")
    all_times = [v for ts in per_target for v in ts]
    _still_calibrating(p)  # (a first look; again under the lock. Gone meanwhile: 401)
    points_asked = settings.calibration_points if kind == "calibration" else settings.validation_points
    if len(xy) > points_asked:
        raise ApiError(400, f"a {kind} round of this study has {points_asked} targets (got {len(xy)})")
    places = len({(round(x), round(y)) for x, y in xy})
    if places < len(xy):  # a round's dots are apart
        raise ApiError(400, f"a {kind} round has its targets at different places (got {places} places for {len(xy)})")
    if kind == "calibration" and _attempts_used(p.id, settings):  # a reloaded page, a script: decided now
        with participant_lock(p):
            _still_calibrating(p)  # (another request may have decided it meanwhile; the counts only grow)
            return _attempts_refusal(p, settings, viewport)
    # per target, the frames the page recorded while the dot was shown, of which it sent these
    # (the usable ones first, at most target_frames): the others are the point's data loss too
    seen = [None if t.get("seen") is None else integer(t, "seen", len(ts), max(len(ts), settings.target_seen_max),
                                                          f"targets[{i}].seen")
            for i, (t, ts) in enumerate(zip(targets, per_target))]
    page_mesh = _page_mesh(meta.get("mesh")) if landmarks else None
    if landmarks:  # the page's landmark samples, in target order (their times are the targets' t)
        frames_ = []
        samples_, times_ = parse_samples(meta.get("samples"), MAX_FRAMES_PER_ROUND)
        if times_ != all_times:
            raise ApiError(400, "the samples' times must be the targets' t, in order")
    else:
        frames_ = frame_parts(parts, len(all_times), MAX_FRAMES_PER_ROUND)
        images = decode_frames(frames_, settings.max_side)
    entry = registry().get((p.id, p.pseudonym), settings)
    db().rollback()
    rows = process_samples(entry, samples_, all_times) if landmarks else process_frames(entry, images, all_times)[0]
    points, k = [], 0
    for target, ts in zip(xy, per_target):
        points.append((target, rows[k:k + len(ts)]))
        k += len(ts)
    found = sum(1 for r in rows if not int(r["flags"]) & 1)
    usable_per_target = usable_counts(points)
    starved = [i for i, n in enumerate(usable_per_target) if n < settings.min_frames]
    ended_early = len(xy) < points_asked and not starved
    if ended_early:
        # the page ends a round at a dot it judged starved (on its live answers, which frames
        # shed under load, or a slow computer's late ones, leave out): that dot is, whatever
        # these frames say
        starved = [len(xy) - 1]
    base = {"viewport": viewport, "targets": [list(t) for t in xy], "frames": len(rows), "face_found": found,
            "usable_per_target": usable_per_target, "starved": starved, "min_frames": settings.min_frames}
    if page_mesh is not None:
        base["page_mesh"] = page_mesh
    if kind == "calibration":
        model, error = None, None
        if ended_early:
            error = (f"the page ended the round at dot {len(xy)} of {points_asked}: it had too few usable camera "
                     f"pictures of it in time (each dot needs {settings.min_frames}: face found, eyes open)")
        elif starved:
            # (a round the page ended at its last dot: of the dots shown, and of how many asked)
            shown = f"{len(xy)} dots" if len(xy) == points_asked else f"{len(xy)} dots shown (of {points_asked})"
            error = (f"too few usable camera pictures at {len(starved)} of {shown} (each needs "
                     f"{settings.min_frames}: face found, eyes open)")
        else:
            try:
                model = calibrate(points)
            except ValueError as e:
                error = str(e)
        result = base | (calibration_summary(model) if model is not None else {"error": error})
        row = store.Calibration(participant_id=p.id, kind="calibration",
                                model=model.to_bytes() if model is not None else None, result=json_safe(result))
        with participant_lock(p):  # the step's rows as they are now, no other round of theirs meanwhile
            _still_calibrating(p)
            if _attempts_used(p.id, settings):  # copies of a round sent at once all passed the look above
                return _attempts_refusal(p, settings, viewport)
            db().add(row)
            db().flush()
            _keep_round_frames(settings, frames_, all_times, p.id, row.id)
            outcome = decide(p.id, settings, viewport) if model is None else None
            _commit_in_study(p.id)
        if model is None:  # frame-starved or not fittable: this attempt is repeated, never used
            extra = {"outcome": outcome_for_page(outcome)} if outcome is not None else {}
            return jsonify(ok=False, error=error, starved=starved, usable_per_target=usable_per_target,
                           face=entry.face, **extra), 422
        with entry.lock:
            entry.set_latest(row.id, model, False)
        vt = validation_targets(settings.validation_points, *viewport)
        return jsonify(ok=True, calibration=row.id, validation_targets=[list(t) for t in vt])
    with participant_lock(p):  # two copies of a check (a proxy's retry, a double submit): one is taken
        _still_calibrating(p)
        outcome, row, passed, quality = _validate(p, settings, entry, points, seen, base, viewport, frames_, all_times)
    extra = {"outcome": outcome_for_page(outcome)} if outcome is not None else {}
    # the participant's page gets a plain word, never the figures (researchers: the dashboard, exports)
    return jsonify(ok=True, passed=passed, quality=quality, validation=row.id, starved=starved,
                   usable_per_target=usable_per_target, **extra)


def _attempts_refusal(p: store.Participant, settings: GazeSettings, viewport: list[float]):
    """The 409 of a calibration round beyond the step's attempts, the step decided now (under the
    participant's lock: :func:`.chunks.participant_lock`)."""
    outcome = decide(p.id, settings, viewport, force=True)
    _commit_in_study(p.id)
    return jsonify(ok=False, error=f"all {settings.attempts} calibration attempts are used",
                   outcome=outcome_for_page(outcome)), 409


def _attempts_used(participant_id: int, settings: GazeSettings) -> bool:
    """The step's attempts are used up (or its rounds, a page or script that never checks them)."""
    rounds, checks = step_rows(participant_id)
    return (len(spent(rounds, checks)) >= settings.attempts
            or len(rounds) >= MAX_ROUNDS_PER_ATTEMPT * settings.attempts)


def _still_calibrating(p: store.Participant) -> None:
    """Under the participant's lock: 401 if they left the study meanwhile (their data deleted, a
    withdrawal), 409 unless the step is still open (another copy of this round, or another
    request, decided it meanwhile)."""
    if not p.consent or withdrawal_of(p) is not None or deletion_of(p) is not None:
        raise ApiError(401, UNKNOWN_PARTICIPANT)
    if not calibrating(p):
        raise ApiError(409, "calibration rounds are taken only on a calibration step that is not yet decided")


#: where the page's face mesh ran (facemesh.js startMesh)
PAGE_MESH_THREADS = ("worker", "main")
#: a TF.js backend's name as the page reports it (the study's, or one TF.js fell back to)
PAGE_MESH_BACKEND = re.compile(r"[a-z0-9-]{1,16}")
#: the most ms a picture the page may report (a computer taking longer gets no round through)
MAX_MESH_MS = 600_000


def _page_mesh(mesh: Any) -> dict[str, Any] | None:
    """A browser-mode round's ``mesh``: how the page's face mesh ran while it was taken,
    ``{thread, backend, ms_per_picture}`` (the median of its recent pictures; null before the
    first), stored with the round for researchers (exports' ``mesh_thread``,
    ``mesh_ms_per_picture``: a slow computer, a worker that fell back). Pages of earlier
    releases send none (None)."""
    if mesh is None:
        return None
    if not isinstance(mesh, dict):
        raise ApiError(400, "mesh must be {thread, backend, ms_per_picture}")
    thread, backend, ms = mesh.get("thread"), mesh.get("backend"), mesh.get("ms_per_picture")
    if thread not in PAGE_MESH_THREADS:
        raise ApiError(400, f"mesh.thread must be one of {', '.join(PAGE_MESH_THREADS)}")
    if not (isinstance(backend, str) and PAGE_MESH_BACKEND.fullmatch(backend)):
        raise ApiError(400, "mesh.backend must be a TF.js backend's name (e.g. wasm, webgl)")
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, float))
                           or not 0 <= ms <= MAX_MESH_MS):
        raise ApiError(400, f"mesh.ms_per_picture must be null or ms from 0 to {MAX_MESH_MS}")
    return {"thread": thread, "backend": backend, "ms_per_picture": None if ms is None else round(float(ms), 1)}


def _validate(p, settings, entry, points, seen, base, viewport, frames_, all_times):
    """The validation round of the step's last attempt, stored with the step's outcome if it
    decides it (under the participant's lock): (outcome or None, row, passed, quality)."""
    from gazepref.signals.calibration import GazeCalibration
    from gazepref.signals.gaze_session import quality_word, validate_round

    attempts, validations = step_rows(p.id)
    attempt = next((a for a in reversed(attempts) if a.model is not None), None)
    if attempt is None or attempt.id != attempts[-1].id:
        raise ApiError(409, "calibrate before validating")
    if attempt.id in checked(validations):
        raise ApiError(409, "this calibration is validated already (one check an attempt): calibrate again")
    starved = base["starved"]
    sync_calibration(entry, attempt.id)
    # the attempt's own model, not the tracker's: that is, while a late task batch of an older
    # calibration is scored in another thread, the older one's (TrackerEntry.scoring_with)
    model = GazeCalibration.from_bytes(attempt.model)
    result = validate_round(model, points, roi_radius_px=settings.roi_radius_px,
                            pass_accuracy_px=settings.pass_accuracy_px, distance_cm=settings.viewing_distance_cm,
                            seen=seen, viewport_height_px=viewport[1])
    result = json_safe(result)
    overall = result.get("overall", {})
    passed = bool(overall.get("passed")) and not starved  # a point without data checks nothing
    # the page's word for the round, stored with it (exports' calibrations ``quality``); as for the
    # step's outcome, a round that did not pass is "poor" whatever its accuracy (a starved point)
    quality = quality_word(overall.get("accuracy_px"), settings.pass_accuracy_px, passed)
    result = base | result | {"accuracy_px": overall.get("accuracy_px"), "passed": passed,
                              "calibration": attempt.id, "quality": quality,
                              # WebGazer's % of this round, from its samples (as the step's outcome
                              # has it for the kept one)
                              "webgazer_score_pct": overall.get("webgazer_score_pct")}
    row = store.Calibration(participant_id=p.id, kind="validation", result=result)
    db().add(row)
    db().flush()
    _keep_round_frames(settings, frames_, all_times, p.id, row.id)
    outcome = decide(p.id, settings, viewport)
    _commit_in_study(p.id)
    return outcome, row, passed, quality


def _commit_in_study(participant_id: int) -> None:
    """Commit the round unless its participant stopped consenting while it was processed (their
    data deleted, a withdrawal): then nothing of it is stored, 401 (:func:`.purge.commit_in_study`)."""
    if not commit_in_study(db(), participant_id):
        raise ApiError(401, UNKNOWN_PARTICIPANT)


def _keep_round_frames(settings: GazeSettings, frames_: list[bytes], times: list[float], participant_id: int,
                       calibration_id: int) -> None:
    """With ``keep_frames``, the round's frames as GazeFrame rows of its Calibration row."""
    if settings.keep_frames:
        db().execute(insert(F), frame_rows(frames_, times, participant_id, calibration_id=calibration_id))
