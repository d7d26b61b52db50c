"""What the webcam gaze paths read and write in the database: the one lookup per frame batch
(:data:`LOOKUP`), a study's ``[gaze]`` settings, the participant's calibrations (the latest, and
an older one a late batch was taken under), the task's gaze chunks (each frame once:
:func:`store_gaze`, under the task's lock, through the inserts of :mod:`.chunks` that the
telemetry batches use too) and the frames a study keeps (``store.GazeFrame`` rows)."""
from __future__ import annotations

import time
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, exists, func, literal_column, or_, select
from sqlalchemy.exc import IntegrityError

from .. import store
from ..signals.gaze_batch import rows_to_chunk_batch
from .api import ApiError, raise_if_task_gone, token_participant
from .chunks import task_transaction, write_chunks
from .config import StudyConfig
from .gaze_settings import GazeSettings, gaze_settings
from .gaze_trackers import Scoring, TrackerEntry
from .runtime import db, site
from .security import ParticipantToken

__all__ = ["IN_FORCE", "LOOKUP", "calibration_in_force", "frame_rows", "last_gaze_seq", "next_gaze_seq",
           "older_scoring", "participant_settings", "store_gaze", "stored_gaze_times", "study_settings",
           "sync_calibration"]

C, T, P = store.StreamChunk.__table__, store.Task.__table__, store.Participant.__table__
F = store.GazeFrame.__table__
CAL = store.Calibration.__table__

#: the calibration rows a tracker may use: a step's outcome (its model None: the calibration
#: failed, gaze stays uncalibrated) or, during a step, a fitted attempt (:mod:`.gaze_attempts`)
IN_FORCE = or_(CAL.c.kind == "outcome", and_(CAL.c.kind == "calibration", CAL.c.model.is_not(None)))


def _latest_in_force(participant: Any):
    """The id of participant ``participant``'s (a column or a value) latest :data:`IN_FORCE` row."""
    return select(func.max(CAL.c.id)).where(CAL.c.participant_id == participant, IN_FORCE)


#: the task's last stored gaze chunk seq (:func:`last_gaze_seq`: where a page's counter starts)
_LAST_SEQ = select(func.max(C.c.seq)).where(C.c.task_id == bindparam("task"), C.c.stream == "gaze")
#: the last stored gaze chunk seq of the page load ``origin`` (a column of :data:`LOOKUP`: the
#: WebSocket's replay check). A seq numbers one page load's frames and batches: a reloaded page
#: that lost its saved counter numbers from the server's next seq again while the earlier page's
#: frames may still be on the way (a socket's buffer, a beacon), and those seqs are not its own
_LAST_PAGE_SEQ = select(func.max(C.c.seq)).where(C.c.task_id == bindparam("task"), C.c.stream == "gaze",
                                                  C.c.clock_origin_epoch_ms == bindparam("origin"))

# One query per frame batch: the participant's consent, study and pseudonym (of the row the token
# names; the caller checks the pseudonym against the token, :meth:`.security.ParticipantToken.matches`),
# the task's owner and clock
# anchor, whether (task, origin, seq) is stored already, the page load's last stored gaze seq (the
# WebSocket's replay check; ``origin``: the page load, -1 outside a task), the participant's latest calibration and, of the calibration the batch says it
# was taken under (``cal``; -1: none said), its id when it is one of this participant's in force
# (else None).
LOOKUP = select(
    P.c.consent, P.c.study_id, P.c.pseudonym,
    select(T.c.participant_id).where(T.c.id == bindparam("task")).scalar_subquery().label("owner"),
    select(T.c.clock_anchor_epoch_ms).where(T.c.id == bindparam("task")).scalar_subquery().label("anchor"),
    exists().where(and_(C.c.task_id == bindparam("task"), C.c.stream == "gaze",
                        C.c.clock_origin_epoch_ms == bindparam("origin"), C.c.seq == bindparam("seq"))).label("replay"),
    _LAST_PAGE_SEQ.scalar_subquery().label("last_seq"),
    _latest_in_force(P.c.id).scalar_subquery().label("calibration"),
    select(CAL.c.id).where(CAL.c.id == bindparam("cal"), CAL.c.participant_id == P.c.id, IN_FORCE)
    .scalar_subquery().label("tagged"),
).where(P.c.id == bindparam("pid"))


# --------------------------------------------------------------------------- settings


#: how long (s) a process uses a study's cached ``[gaze]`` settings before it looks at the study's
#: row again (:func:`study_settings`): the frame paths run per frame, the row changes only when a
#: host starts with an edited study file
SETTINGS_RECHECK_S = 5.0


def study_settings(study_id: int) -> tuple[StudyConfig, GazeSettings]:
    """The study's config and ``[gaze]`` settings, cached per process and compared with the
    study's row every :data:`SETTINGS_RECHECK_S` seconds: a host started with a newer study file
    rewrites the row, and this process's frames follow it (``Site.config``) within that time
    instead of keeping the settings it first read (two hosts scoring one participant's frames
    under different thresholds)."""
    cache = current_app.extensions.setdefault("gazepref_gaze_settings", {})
    found, now = cache.get(study_id), time.monotonic()
    if found is None or now - found[2] >= SETTINGS_RECHECK_S:
        # the row in a session of its own, closed at once: a frame socket lives in one request
        # context and lets that session go (gaze_ws.authenticate); read through it, the row stayed
        # in its identity map and the session held a pooled connection for the socket's life
        with site().sessions() as s:
            cfg = site().config(s.get(store.Study, study_id))  # the same object while the row is unchanged
        found = cache[study_id] = (cfg, found[1] if found is not None and found[0] is cfg else gaze_settings(cfg), now)
    return found[0], found[1]


def participant_settings(token: ParticipantToken) -> tuple[store.Participant, GazeSettings]:
    """The consenting participant ``token`` names and their study's settings (ApiError 401/403)."""
    p = token_participant(token)
    cfg, settings = study_settings(p.study_id)
    if cfg.webcam == "off":
        raise ApiError(403, "this study records no webcam")
    return p, settings


# --------------------------------------------------------------------------- calibrations


def calibration_in_force(participant_id: int) -> int | None:
    """The id of the participant's latest calibration row in force (:data:`IN_FORCE`; None: none):
    what a task page is told it records under (``page_data``'s ``calibration``), the same as
    :data:`LOOKUP`'s ``calibration``."""
    return db().scalar(_latest_in_force(participant_id))


def _model_of(calibration_id: int, conn: Any) -> tuple[Any, bool]:
    """(model, failed) of calibration row ``calibration_id``: None and True for a failed
    calibration's outcome."""
    from gazepref.signals.calibration import GazeCalibration

    query = select(CAL.c.model, CAL.c.kind).where(CAL.c.id == calibration_id)
    found = (conn.execute(query) if conn is not None else db().execute(query)).first()
    model, kind = found if found is not None else (None, None)
    return (GazeCalibration.from_bytes(model) if model is not None else None), kind == "outcome" and model is None


def sync_calibration(entry: TrackerEntry, latest: int | None, conn: Any = None) -> None:
    """Give the tracker the participant's calibration row ``latest`` (id; another process may have
    written it): its model, or none for a failed calibration's outcome (``entry.failed``); a new
    calibration starts a new drift correction (:meth:`.gaze_trackers.TrackerEntry.set_latest`:
    the previous one is kept for its late batches). Never back to an earlier one (ids grow: a
    lookup made before another request's newer calibration is stale), which would start the
    newer one's drift correction afresh when it comes back."""
    if latest is None or (entry.calibration_id is not None and latest <= entry.calibration_id):
        return
    model, failed = _model_of(latest, conn)
    with entry.lock:
        entry.set_latest(latest, model, failed)


def older_scoring(entry: TrackerEntry, calibration_id: int, conn: Any = None) -> Scoring:
    """The :class:`.gaze_trackers.Scoring` of an older calibration of the participant (a batch
    taken under it that reached the server after a newer one): kept by the tracker, else read
    (``calibration_id`` must be one of the participant's :data:`IN_FORCE` rows: the caller
    checked it, :data:`LOOKUP`'s ``tagged``). The latest calibration and its drift state are left
    as they are."""
    with entry.lock:
        found = entry.kept_older(calibration_id)
    if found is not None:
        return found
    model, failed = _model_of(calibration_id, conn)
    with entry.lock:  # (another request may have read it meanwhile: keep one)
        return entry.kept_older(calibration_id) or entry.add_older(calibration_id, model, failed)


# --------------------------------------------------------------------------- gaze chunks and frames


def frame_rows(frames_: list[bytes], times: list[float], participant_id: int, *, task_id: int | None = None,
               seq: int = 0, calibration_id: int | None = None) -> list[dict[str, Any]]:
    """``store.GazeFrame`` rows of kept frames (of a task's chunk ``seq`` or of a calibration)."""
    now = store.utcnow()
    return [{"participant_id": participant_id, "task_id": task_id, "calibration_id": calibration_id, "seq": seq,
             "index": i, "t": t, "data": data, "received_at": now} for i, (data, t) in enumerate(zip(frames_, times))]


def store_gaze(task_id: int, seq: int, origin: float, rows: list[dict[str, float]], *, set_anchor: bool = True,
               frames: list[dict[str, Any]] | None = None, seqs: list[int] | None = None) -> int:
    """Store those of ``rows`` that are not stored yet as the task's gaze chunk ``seq`` (with their
    kept ``frames``, GazeFrame rows in the order of ``rows``) in one transaction; the number of
    rows stored (0: every one was stored already, or the chunk ``seq`` is: a replay).

    A frame is the page load's (``origin``) picture taken at ``t``: a row whose (origin, t) the
    task has in a gaze chunk already, or an earlier row of ``rows`` has, is left out, whichever way it came (the WebSocket's resend
    after a reconnect, stored by the lost socket too, on this host or another; the HTTP batches
    that carry what a socket lost for good had not confirmed). The check and the insert are one
    transaction under the task's lock (:func:`.chunks.task_transaction`), so two sockets or a
    socket and a batch storing the same frames at once store them once. ``seqs``: the frames'
    own seqs (the WebSocket's; the chunk's seq is then that of its last stored frame, so a chunk
    left with fewer frames takes no seq another chunk holds); without, the chunk is ``seq``
    (an HTTP batch: its seq stays the batch's, so its replay is known as before).

    A task deleted after the caller's consent check (its participant withdrew meanwhile: the
    chunk fails the task's foreign key) raises :class:`.api.TaskGone` (401) and stores nothing."""
    if not rows:
        return 0
    times = [float(r["t"]) for r in rows]
    with site().engine.connect() as conn:
        try:
            return _store_gaze(conn, task_id, seq, origin, rows, times, set_anchor, frames, seqs)
        except IntegrityError:  # the chunk seq is stored already with other frames (a replay), or the task is gone
            raise_if_task_gone(conn, task_id)
            return 0


def _store_gaze(conn: Any, task_id: int, seq: int, origin: float, rows: list[dict[str, float]], times: list[float],
                set_anchor: bool, frames: list[dict[str, Any]] | None, seqs: list[int] | None) -> int:
    """:func:`store_gaze`'s transaction on ``conn`` (``IntegrityError`` out of it: nothing stored).

    The chunk of all ``rows`` is encoded (Arrow, compressed) before the transaction: SQLite's
    write lock is one for the whole host (:func:`.chunks.write_lock`), and under load a holder
    also waits for the GIL after each step, so what it does while holding it is kept to the
    reads and inserts. Only when some rows are stored already (a resend) is the rest encoded
    again inside."""
    chunk = _gaze_chunk(task_id, seq if seqs is None else seqs[-1], origin, rows)
    with task_transaction(conn, task_id):
        seen = stored_gaze_times(conn, task_id, origin, min(times), max(times))
        keep = []
        for i, t in enumerate(times):  # (a time twice in the batch: its first row)
            if t not in seen:
                keep.append(i)
                seen.add(t)
        if not keep:
            return 0
        if seqs is not None:
            seq = seqs[keep[-1]]
        if len(keep) < len(rows):
            rows = [rows[i] for i in keep]
            frames = [frames[i] for i in keep] if frames else frames
            chunk = _gaze_chunk(task_id, seq, origin, rows)
        kept = [f | {"seq": seq, "index": j} for j, f in enumerate(frames)] if frames else []
        write_chunks(conn, task_id, origin, [chunk], set_anchor=set_anchor, also=[(F, kept)])
    return len(keep)


def _gaze_chunk(task_id: int, seq: int, origin: float, rows: list[dict[str, float]]) -> store.StreamChunk:
    """The task's gaze chunk ``seq`` of ``rows`` (the page load ``origin``'s)."""
    return store.chunk_from_batch(task_id, "gaze", seq, rows_to_chunk_batch(rows), clock_origin_epoch_ms=origin)


#: the task's gaze chunks of one page load (``origin``) that may hold a time in [t0, t1]
#: (``ix_stream_chunks_gaze_time``; the stream is in the SQL text, as in the index's condition,
#: so both databases' planners may use that partial index)
_OVERLAPPING = select(C.c.columns, C.c.raw_size, C.c.data).where(
    C.c.task_id == bindparam("task"), C.c.stream == literal_column("'gaze'"),
    C.c.clock_origin_epoch_ms == bindparam("origin"), C.c.t_end >= bindparam("t0"), C.c.t_start <= bindparam("t1"))


def stored_gaze_times(conn: Any, task_id: int, origin: float, t0: float, t1: float) -> set[float]:
    """The times in [t0, t1] (and around: whole chunks) of the task's stored gaze rows of the page
    load ``origin``: none to read for a page's next frames (no chunk of theirs ends after t0)."""
    found: set[float] = set()
    for columns, raw_size, data in conn.execute(_OVERLAPPING, {"task": task_id, "origin": origin, "t0": t0, "t1": t1}):
        found.update(store.decode_chunk("gaze", columns, raw_size, data).column("t").to_pylist())
    return found


def last_gaze_seq(task_id: int, conn: Any = None) -> int | None:
    """The seq of the task's last stored gaze chunk (None: none yet), read on ``conn`` (default
    the request's session)."""
    return (conn if conn is not None else db()).execute(_LAST_SEQ, {"task": task_id}).scalar()


def next_gaze_seq(task: store.Task) -> int:
    """The seq of the task's next gaze chunk (what the page's counter starts at)."""
    last = last_gaze_seq(task.id)
    return 0 if last is None else last + 1
