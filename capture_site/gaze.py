"""Webcam gaze in the study site: frame ingest, the calibration step and per-participant trackers.

* ``POST /api/gaze/frames`` (multipart, participant token): ``meta`` = JSON ``{"phase": "setup" |
  "task", "task": id, "seq": n, "origin": performance.timeOrigin, "t": [ms, ...]}`` and one part
  ``frame`` (``image/jpeg``) per time. Each frame goes through the participant's
  :class:`~gazepref.signals.webcam.GazeTracker`; in a task the rows are stored as one ``gaze``
  chunk keyed (task, "gaze", seq), so a replayed batch adds nothing. Frames are discarded after
  processing unless the study keeps them (``keep_frames``: ``store.GazeFrame`` rows). With
  ``drift_correction``, clicks of the task correct later rows (:mod:`.gaze_drift`). Answers
  ``{ok, seq, stored, duplicate, face: {found, ok, message}}``; a corrupt, oversized or non-JPEG
  frame gets 400 ``{"error"}`` and nothing of the batch is stored.
* ``POST /api/gaze/round`` (multipart): ``meta`` = ``{"kind": "calibration" | "validation",
  "viewport": [w, h], "targets": [{"x", "y", "t": [...]}, ...]}`` with the frames of each target
  (those of the last ~600 ms before the participant clicked it, so the eyes had settled), in
  target order. A calibration round fits :func:`~gazepref.signals.gaze_session.calibrate` and
  stores a ``store.Calibration(kind="calibration")`` row with the model; a validation round stores
  ``kind="validation"`` with the metrics and ``passed``. Self-contained, so it works with several
  server processes.
* The ``calibration`` flow step (:func:`register`): the page ``calibration.js`` runs the set-up
  (face indicator), the calibration and validation rounds (one retry by default) and then submits
  the step. Without a camera: ``webcam = "optional"`` continues mouse-only, ``"required"`` stops.
  ``recalibrate_every`` adds ``calibration:i`` steps between tasks (the same page; each needs a
  new calibration).

Settings: the study TOML's ``[gaze]`` table (:class:`~.gaze_settings.GazeSettings`); server-side:
app config ``GAZE_RATE_PER_S`` / ``GAZE_BURST`` (per-participant rate limit) and ``GAZE_SHED_MS`` (or
``$GAZEPREF_GAZE_SHED_MS``: frames reached later than this after their request arrived are stored
unprocessed with the DROPPED flag; off by default), ``GAZE_CONCURRENCY`` (frames in the pipeline
at once per process; default the CPU count, 0 = no limit) and ``GAZE_WEBSOCKET`` (False: the pages
post batches only, no WebSocket, :mod:`.gaze_ws`). See docs/gaze.md, "In the site".
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable, NamedTuple

from flask import Blueprint, current_app, jsonify, request, url_for
from sqlalchemy import and_, bindparam, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import store
from . import gaze_drift
from .api import ApiError, install_error_handlers, loads_object, request_participant_id
from .config import StudyConfig
from .gaze_settings import (MAX_FRAMES_PER_BATCH, MAX_FRAMES_PER_ROUND, MAX_ROUND_BYTES, GazeSettings, gaze_settings,
                            validation_targets)
from .ingest import _write_lock
from .multipart import MultipartError, Part, parse_multipart
from .plan import parse_step
from .ratelimit import RateLimiter
from .runtime import db, site
from .validation import InvalidInput, origin_ms, page_time_ms
from ..signals.gaze_batch import rows_to_chunk_batch

__all__ = ["GazeSettings", "bp", "gaze_settings", "page_data", "register", "validation_targets"]

bp = Blueprint("gaze", __name__, url_prefix="/api/gaze")
install_error_handlers(bp)

MAX_FRAME_BYTES = 200 * 1024


# --------------------------------------------------------------------------- trackers


class _Entry:
    def __init__(self, tracker: Any):
        self.tracker = tracker
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.calibration_id: int | None = None
        self.face: dict[str, Any] = {"found": False, "ok": False, "message": "no frame yet"}
        self.drift = gaze_drift.ParticipantDrift()


class TrackerRegistry:
    """One GazeTracker per participant (one lock each); trackers idle for ``idle_s`` are closed."""

    def __init__(self, idle_s: float = 300.0, max_side: int = 640):
        self.idle_s, self.max_side = idle_s, max_side
        self._entries: dict[int, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, participant_id: int, settings: GazeSettings | None = None) -> _Entry:
        from gazepref.signals.webcam import GazeTracker

        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            entry = self._entries.get(participant_id)
            if entry is None:
                check_ms = float(settings.face_check_ms if settings is not None else 1000)
                entry = self._entries[participant_id] = _Entry(
                    GazeTracker(max_side=self.max_side, face_check_ms=check_ms))
            entry.last_used = now
            return entry

    def _sweep(self, now: float) -> None:
        for pid, e in list(self._entries.items()):
            if now - e.last_used > self.idle_s and not e.lock.locked():
                del self._entries[pid]
                e.tracker.close()

    def __len__(self) -> int:
        return len(self._entries)


def registry() -> TrackerRegistry:
    reg = current_app.extensions.get("gazepref_trackers")
    if reg is None:
        with site()._lock:
            reg = current_app.extensions.setdefault("gazepref_trackers", TrackerRegistry())
    return reg


CAL = store.Calibration.__table__


def _sync_calibration(entry: _Entry, latest: int | None, conn: Any = None) -> None:
    """Give the tracker the participant's latest stored calibration ``latest`` (id; another
    process may have fitted it); a new calibration resets the drift correction."""
    from gazepref.signals.calibration import GazeCalibration

    if latest is None or latest == entry.calibration_id:
        return
    query = select(CAL.c.model).where(CAL.c.id == latest)
    model = conn.scalar(query) if conn is not None else db().scalar(query)
    with entry.lock:
        entry.tracker.calibration = GazeCalibration.from_bytes(model)
        entry.calibration_id = latest
        entry.drift.reset()


def _latest_calibration_id(participant_id: int) -> int | None:
    return db().scalar(select(func.max(CAL.c.id)).where(
        CAL.c.participant_id == participant_id, CAL.c.kind == "calibration", CAL.c.model.is_not(None)))


def face_status(row: dict[str, float] | None) -> dict[str, Any]:
    """Whether the last frame shows one face, well placed (what the page shows green/red)."""
    from gazepref.schema import GazeFlag

    if row is None:
        return {"found": False, "ok": False, "message": "no frame yet"}
    flags = int(row.get("flags", 0))
    if flags & GazeFlag.NO_FACE:
        return {"found": False, "ok": False, "message": "No face found: face the camera."}
    message = ""
    size, fx, fy = row.get("face_size", math.nan), row.get("face_x", math.nan), row.get("face_y", math.nan)
    if flags & GazeFlag.MULTIPLE_FACES:
        message = "Several faces: make sure only you are in view."
    elif flags & GazeFlag.TOO_DARK:
        message = "Too dark: add light in front of you."
    elif math.isfinite(size) and size < 0.12:
        message = "Too far: move closer to the camera."
    elif math.isfinite(size) and size > 0.6:
        message = "Too close: move back a little."
    elif math.isfinite(fx) and not (0.2 <= fx <= 0.8 and 0.15 <= fy <= 0.85):
        message = "Move to the middle of the picture."
    return {"found": True, "ok": not message, "message": message or "Face well placed."}


# --------------------------------------------------------------------------- request parsing


def _form() -> tuple[dict[str, Any], list[Part]]:
    """The JSON ``meta`` part and the ``frame`` parts of a multipart request (:mod:`.multipart`)."""
    ctype = request.mimetype
    if ctype != "multipart/form-data":
        raise ApiError(400, f"frames must be sent as multipart/form-data (got {ctype or 'no content type'!r})")
    try:
        parts = parse_multipart(request.get_data(cache=False), request.mimetype_params.get("boundary", ""))
    except MultipartError as e:
        raise ApiError(400, str(e)) from None
    meta_part = next((p for p in parts if p.name == "meta"), None)
    meta = loads_object(meta_part.data if meta_part is not None else None)
    if meta is None:
        raise ApiError(400, "meta must be a JSON object")
    return meta, [p for p in parts if p.name == "frame"]


def _frames(parts: list[Part], expected: int, limit: int) -> list[bytes]:
    if len(parts) != expected:
        raise ApiError(400, f"{len(parts)} frame parts for {expected} times")
    if len(parts) > limit:
        raise ApiError(413, f"too many frames in one request: {len(parts)} (limit {limit})")
    for i, part in enumerate(parts):
        if part.content_type != "image/jpeg":
            raise ApiError(400, f"frame {i}: wrong content type {part.content_type or 'none'!r} (expected image/jpeg)")
        if len(part.data) > MAX_FRAME_BYTES:
            raise ApiError(413, f"frame {i}: larger than the limit of {MAX_FRAME_BYTES} bytes")
    return [p.data for p in parts]


def _times(values: Any, name: str = "t") -> list[float]:
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ApiError(400, f"{name} must be a list of finite numbers")
    return [float(v) for v in values]


def _int(meta: dict[str, Any], key: str, lo: int = 0) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > 2**31 - 1:
        raise ApiError(400, f"{key} must be an integer >= {lo} (got {v!r})")
    return v


def _decode_all(frames: list[bytes], max_side: int) -> list[Any]:
    """Decode every frame before any is processed: one bad frame rejects the whole batch."""
    from gazepref.signals.frame_decode import FrameError, decode_jpeg

    images = []
    for i, data in enumerate(frames):
        try:
            images.append(decode_jpeg(data, max_side=max_side, max_bytes=MAX_FRAME_BYTES))
        except FrameError as e:
            raise ApiError(400, f"frame {i}: {e}") from None
    return images


def dropped_row(t: float) -> dict[str, float]:
    """The row of a frame stored without processing: its time, no estimate, the DROPPED flag."""
    from gazepref.schema import GazeFlag

    return {"t": t, "x": math.nan, "y": math.nan, "confidence": 0.0, "flags": int(GazeFlag.DROPPED)}


def _process(entry: _Entry, images: list[Any], times: list[float], arrived: float | None = None,
             shed_ms: float = 0.0, stale: Callable[[], bool] | None = None) -> tuple[list[dict[str, float]], int]:
    """Tracker rows of ``images``; frames the server is too far behind for are not processed but
    kept as rows without features, confidence 0 and the DROPPED flag (no estimate): with
    ``shed_ms`` > 0, frames reached later than ``shed_ms`` after the request ``arrived``; with
    ``stale``, frames for which ``stale()`` says so once they get a pipeline slot (the WebSocket:
    a newer frame of the participant is already waiting while other frames queue for the slots)."""
    rows, dropped, last = [], 0, None
    slots = _pipeline_slots()
    with entry.lock:
        for img, t in zip(images, times):
            with slots:
                late = shed_ms > 0 and arrived is not None and (time.monotonic() - arrived) * 1000.0 > shed_ms
                if not (late or (stale is not None and stale())):
                    last = entry.tracker.process_image(img, t)
                    rows.append(last)
                    continue
            rows.append(dropped_row(t))
            dropped += 1
        entry.last_used = time.monotonic()
    if last is not None:
        entry.face = face_status(last)
    return rows, dropped


class PipelineSlots:
    """At most ``n`` frames in the pipeline at once (0: no limit), and how many threads wait."""

    def __init__(self, n: int) -> None:
        self._free = threading.Semaphore(n) if n > 0 else None
        self._lock = threading.Lock()
        self.waiting = 0  # threads waiting for a slot now

    def __enter__(self) -> PipelineSlots:
        if self._free is not None and not self._free.acquire(blocking=False):
            with self._lock:
                self.waiting += 1
            try:
                self._free.acquire()
            finally:
                with self._lock:
                    self.waiting -= 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._free is not None:
            self._free.release()


def _pipeline_slots() -> PipelineSlots:
    """At most GAZE_CONCURRENCY (app config or $GAZEPREF_GAZE_CONCURRENCY; default: the CPU count;
    0: no limit) frames in the pipeline at once in this process; the other threads wait their turn
    (with one socket per participant, 30 pipelines would otherwise compete for the cores)."""
    slots = current_app.extensions.get("gazepref_gaze_slots")
    if slots is None:
        n = current_app.config.get("GAZE_CONCURRENCY")
        if n is None:
            n = os.environ.get("GAZEPREF_GAZE_CONCURRENCY") or os.cpu_count() or 0
        slots = current_app.extensions.setdefault("gazepref_gaze_slots", PipelineSlots(int(n)))
    return slots


def _limiter() -> RateLimiter:
    """Frame batches have their own per-participant limit (GAZE_RATE_PER_S, GAZE_BURST)."""
    lim = current_app.extensions.get("gazepref_gaze_limiter")
    if lim is None:
        lim = current_app.extensions.setdefault("gazepref_gaze_limiter", RateLimiter(
            float(current_app.config.get("GAZE_RATE_PER_S", 15.0)), float(current_app.config.get("GAZE_BURST", 30))))
    return lim


def _shed_ms() -> float:
    """Load shedding budget in ms (app config GAZE_SHED_MS or $GAZEPREF_GAZE_SHED_MS; 0: off)."""
    return float(current_app.config.get("GAZE_SHED_MS") or os.environ.get("GAZEPREF_GAZE_SHED_MS") or 0)


def _study_settings(study_id: int) -> tuple[StudyConfig, GazeSettings]:
    """The study's config and ``[gaze]`` settings (cached per process, as ``Site.config`` is)."""
    cache = current_app.extensions.setdefault("gazepref_gaze_settings", {})
    found = cache.get(study_id)
    if found is None:
        cfg = site().config(db().get(store.Study, study_id))
        found = cache[study_id] = (cfg, gaze_settings(cfg))
    return found


def _participant_settings(pid: int) -> tuple[store.Participant, GazeSettings]:
    p = db().get(store.Participant, pid)
    if p is None or not p.consent:
        raise ApiError(401, "unknown participant")
    cfg, settings = _study_settings(p.study_id)
    if cfg.webcam == "off":
        raise ApiError(403, "this study records no webcam")
    return p, settings


# --------------------------------------------------------------------------- frames


C, T, P = store.StreamChunk.__table__, store.Task.__table__, store.Participant.__table__
F = store.GazeFrame.__table__
_CHUNK_COLUMNS = tuple(c.name for c in C.columns if c.name not in ("id", "received_at"))
# One query per frame batch: the participant's consent and study, the task's owner and clock
# anchor, whether (task, seq) is stored already, the task's last stored gaze seq (the WebSocket's
# replay check) and the participant's latest calibration.
_LOOKUP = select(
    P.c.consent, P.c.study_id,
    select(T.c.participant_id).where(T.c.id == bindparam("task")).scalar_subquery().label("owner"),
    select(T.c.clock_anchor_epoch_ms).where(T.c.id == bindparam("task")).scalar_subquery().label("anchor"),
    exists().where(and_(C.c.task_id == bindparam("task"), C.c.stream == "gaze",
                        C.c.seq == bindparam("seq"))).label("replay"),
    select(func.max(C.c.seq)).where(C.c.task_id == bindparam("task"), C.c.stream == "gaze")
    .scalar_subquery().label("last_seq"),
    select(func.max(CAL.c.id)).where(CAL.c.participant_id == P.c.id, CAL.c.kind == "calibration",
                                     CAL.c.model.is_not(None)).scalar_subquery().label("calibration"),
).where(P.c.id == bindparam("pid"))
_SET_ANCHOR = (update(T).where(T.c.id == bindparam("task"), T.c.clock_anchor_epoch_ms.is_(None))
               .values(clock_anchor_epoch_ms=bindparam("origin")))


def _frame_rows(frames_: list[bytes], times: list[float], participant_id: int, *, task_id: int | None = None,
                seq: int = 0, calibration_id: int | None = None) -> list[dict[str, Any]]:
    now = store.utcnow()
    return [{"participant_id": participant_id, "task_id": task_id, "calibration_id": calibration_id, "seq": seq,
             "index": i, "t": t, "data": data, "received_at": now} for i, (data, t) in enumerate(zip(frames_, times))]


def store_gaze(task_id: int, seq: int, origin: float, rows: list[dict[str, float]], *, set_anchor: bool = True,
               frames: list[dict[str, Any]] | None = None) -> bool:
    """Store ``rows`` as the task's gaze chunk ``seq`` (and the kept ``frames``, GazeFrame rows)
    in one transaction; False for a replay."""
    chunk = store.chunk_from_batch(task_id, "gaze", seq, rows_to_chunk_batch(rows), clock_origin_epoch_ms=origin)
    values = {c: getattr(chunk, c) for c in _CHUNK_COLUMNS} | {"received_at": store.utcnow()}
    with site().engine.connect() as conn:
        try:
            with _write_lock(conn), conn.begin():
                conn.execute(insert(C), [values])
                if set_anchor:
                    conn.execute(_SET_ANCHOR, {"task": task_id, "origin": origin})
                if frames:
                    conn.execute(insert(F), frames)
        except IntegrityError:  # the same batch arrived twice at once
            return False
    return True


def next_gaze_seq(task: store.Task) -> int:
    last = db().scalar(select(func.max(C.c.seq)).where(C.c.task_id == task.id, C.c.stream == "gaze"))
    return 0 if last is None else last + 1


class FrameMeta(NamedTuple):
    phase: str                 # "setup" | "task"
    times: list[float]
    task_id: int | None = None
    seq: int | None = None
    origin: float | None = None


def frame_meta(meta: dict[str, Any], times: list[float] | None = None) -> FrameMeta:
    """Checked ``{phase, task, seq, origin}`` of a frame batch (HTTP) or one frame (WebSocket,
    ``times`` given: its ``t``)."""
    phase = meta.get("phase", "task")
    if phase not in ("setup", "task"):
        raise ApiError(400, f"phase must be 'setup' or 'task' (got {phase!r})")
    times = _times(meta.get("t")) if times is None else times
    if phase != "task":
        return FrameMeta(phase, times)
    task_id, seq = _int(meta, "task"), _int(meta, "seq")
    try:  # the ranges the exporters need (as for telemetry batches)
        origin = origin_ms(meta.get("origin"), "origin (performance.timeOrigin)")
        for t in times:
            page_time_ms(t, "t")
    except InvalidInput as e:
        raise ApiError(400, str(e)) from None
    return FrameMeta(phase, times, task_id, seq, origin)


class FrameContext(NamedTuple):
    """What one lookup tells about a participant's frames (:func:`frame_context`)."""
    pid: int
    meta: FrameMeta
    settings: GazeSettings
    entry: _Entry
    replay: bool               # (task, seq) is stored already (an HTTP replay)
    last_seq: int | None       # the task's highest stored gaze chunk seq
    set_anchor: bool           # the task has no clock anchor yet


def frame_context(pid: int, meta: FrameMeta) -> FrameContext:
    """One query (:data:`_LOOKUP`): consent, study settings, task ownership, replay; then the
    participant's tracker with the latest calibration (and, in a task with drift correction, the
    clicks stored since the last look). Raises ApiError 401/403."""
    task_id, seq = meta.task_id, meta.seq
    with site().engine.connect() as conn:
        found = conn.execute(_LOOKUP, {"pid": pid, "task": -1 if task_id is None else task_id,
                                       "seq": -1 if seq is None else seq}).first()
    if found is None or not found.consent:
        raise ApiError(401, "unknown participant")
    cfg, settings = _study_settings(found.study_id)
    if cfg.webcam == "off":
        raise ApiError(403, "this study records no webcam")
    if meta.phase == "task" and found.owner != pid:
        raise ApiError(403, f"task {task_id} is not yours")
    entry = registry().get(pid, settings)
    ctx = FrameContext(pid, meta, settings, entry, bool(found.replay), found.last_seq, found.anchor is None)
    if found.replay:
        return ctx
    if meta.phase == "task" and (found.calibration != entry.calibration_id or settings.drift_correction):
        with site().engine.connect() as conn:
            _sync_calibration(entry, found.calibration, conn)
            if settings.drift_correction:
                with entry.lock:
                    gaze_drift.update(conn, entry.drift, task_id)
    return ctx


def track_frames(ctx: FrameContext, frames_: list[bytes], times: list[float], arrived: float | None = None,
                 stale: Callable[[], bool] | None = None) -> tuple[list[dict[str, float]], int]:
    """Decode ``frames_`` (all first: one bad frame, ApiError 400, processes none), run them through
    the participant's tracker (load shedding as configured, and ``stale``: see :func:`_process`),
    drift-correct task rows."""
    images = _decode_all(frames_, ctx.settings.max_side)
    rows, dropped = _process(ctx.entry, images, times, arrived, _shed_ms(), stale)
    if ctx.meta.phase == "task" and rows and ctx.settings.drift_correction:
        gaze_drift.apply(rows, ctx.entry.drift)
    return rows, dropped


def store_task_rows(ctx: FrameContext, seq: int, rows: list[dict[str, float]], frames_: list[bytes],
                    times: list[float], set_anchor: bool | None = None) -> bool:
    """Store task ``rows`` as the gaze chunk ``seq`` (with the frames when the study keeps them);
    False for a replay."""
    kept = (_frame_rows(frames_, times, ctx.pid, task_id=ctx.meta.task_id, seq=seq)
            if ctx.settings.keep_frames else None)
    return store_gaze(ctx.meta.task_id, seq, float(ctx.meta.origin), rows,
                      set_anchor=ctx.set_anchor if set_anchor is None else set_anchor, frames=kept)


@bp.post("/frames")
def frames():
    arrived = time.monotonic()
    pid = request_participant_id()
    if not _limiter().allow(f"g{pid}"):
        raise ApiError(429, "too many frame batches; slow down", retry_after=1)
    meta_, parts = _form()
    meta = frame_meta(meta_)
    frames_ = _frames(parts, len(meta.times), MAX_FRAMES_PER_BATCH)
    ctx = frame_context(pid, meta)
    seq = meta.seq
    if ctx.replay:
        return jsonify(ok=True, seq=seq, stored=0, duplicate=True, face=ctx.entry.face)
    rows, dropped = track_frames(ctx, frames_, meta.times, arrived)
    stored = 0
    if meta.phase == "task" and rows:
        stored = len(rows) if store_task_rows(ctx, seq, rows, frames_, meta.times) else 0
    entry = ctx.entry
    return jsonify(ok=True, seq=seq, stored=stored, duplicate=meta.phase == "task" and not stored and bool(rows),
                   dropped=dropped, face=entry.face, calibrated=entry.tracker.calibration is not None)


# --------------------------------------------------------------------------- calibration rounds


@bp.post("/round")
def calibration_round():
    from gazepref.signals.gaze_session import calibrate, calibration_summary, validate_round

    request.max_content_length = MAX_ROUND_BYTES  # a round carries all its targets' frames at once
    pid = request_participant_id()
    if not _limiter().allow(f"g{pid}"):
        raise ApiError(429, "too many requests; slow down", retry_after=1)
    meta, parts = _form()
    kind = meta.get("kind")
    if kind not in ("calibration", "validation"):
        raise ApiError(400, f"kind must be 'calibration' or 'validation' (got {kind!r})")
    viewport = meta.get("viewport")
    if not (isinstance(viewport, list) and len(viewport) == 2):
        raise ApiError(400, "viewport must be [width, height]")
    viewport = _times(viewport, "viewport")
    targets = meta.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        raise ApiError(400, "targets must be a non-empty list of {x, y, t}")
    per_target = [_times(t.get("t"), f"targets[{i}].t") for i, t in enumerate(targets)]
    xy = [tuple(_times([t.get("x"), t.get("y")], f"targets[{i}] x/y")) for i, t in enumerate(targets)]
    all_times = [v for ts in per_target for v in ts]
    frames_ = _frames(parts, len(all_times), MAX_FRAMES_PER_ROUND)
    p, settings = _participant_settings(pid)
    images = _decode_all(frames_, settings.max_side)
    entry = registry().get(pid, settings)
    db().rollback()
    rows, _ = _process(entry, images, all_times)
    points, k = [], 0
    for target, ts in zip(xy, per_target):
        points.append((target, rows[k:k + len(ts)]))
        k += len(ts)
    found = sum(1 for r in rows if not int(r["flags"]) & 1)
    base = {"viewport": viewport, "targets": [list(t) for t in xy], "frames": len(rows), "face_found": found}
    if kind == "calibration":
        try:
            model = calibrate(points)
        except ValueError as e:
            return jsonify(ok=False, error=str(e), face=entry.face), 422
        row = store.Calibration(participant_id=p.id, kind="calibration", model=model.to_bytes(),
                                result=_clean(base | calibration_summary(model)))
        db().add(row)
        db().flush()
        _keep_round_frames(settings, frames_, all_times, p.id, row.id)
        db().commit()
        with entry.lock:
            entry.tracker.calibration, entry.calibration_id = model, row.id
            entry.drift.reset()
        vt = validation_targets(settings.validation_points, *viewport)
        return jsonify(ok=True, calibration=row.id, summary=row.result, validation_targets=[list(t) for t in vt])
    _sync_calibration(entry, _latest_calibration_id(pid))
    model = entry.tracker.calibration
    if model is None:
        raise ApiError(409, "calibrate before validating")
    result = validate_round(model, points, roi_radius_px=settings.roi_radius_px,
                            pass_accuracy_px=settings.pass_accuracy_px)
    result = _clean(result)
    overall = result.get("overall", {})
    result = base | result | {"accuracy_px": overall.get("accuracy_px"), "passed": bool(overall.get("passed")),
                              "calibration": entry.calibration_id}
    row = store.Calibration(participant_id=p.id, kind="validation", result=result)
    db().add(row)
    db().flush()
    _keep_round_frames(settings, frames_, all_times, p.id, row.id)
    db().commit()
    return jsonify(ok=True, passed=result["passed"], accuracy_px=result["accuracy_px"], result=result)


def _keep_round_frames(settings: GazeSettings, frames_: list[bytes], times: list[float], participant_id: int,
                       calibration_id: int) -> None:
    """With ``keep_frames``, the round's frames as GazeFrame rows of its Calibration row."""
    if settings.keep_frames:
        db().execute(insert(F), _frame_rows(frames_, times, participant_id, calibration_id=calibration_id))


def _clean(o: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy values plain Python."""
    if hasattr(o, "tolist"):
        o = o.tolist()
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    return o


# --------------------------------------------------------------------------- the flow step


def gaze_state(p: store.Participant) -> str | None:
    """``"calibrated"``, ``"no-camera"`` or None (step not reached / webcam off)."""
    return (p.state or {}).get("gaze")


def page_data(p: store.Participant, cfg: StudyConfig, task: store.Task | None, token: str) -> dict[str, Any] | None:
    """What the page scripts need to capture frames (None: no webcam for this participant)."""
    if cfg.webcam == "off" or (task is not None and gaze_state(p) != "calibrated"):
        return None
    data = {"mode": cfg.webcam, "token": token, "settings": gaze_settings(cfg).page(),
            "urls": {"frames": url_for("gaze.frames"), "round": url_for("gaze.calibration_round")}}
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


def register() -> None:
    """Install the calibration step (called by the app factory)."""
    from .flow import register_step

    register_step("calibration", _render_calibration, _submit_calibration)
