"""What the webcam gaze paths read and write in the database: the one lookup per frame batch
(:data:`LOOKUP`), a study's ``[gaze]`` settings, the participant's calibrations (the latest, and
an older one a late batch was taken under), the task's
gaze chunks (stored through :func:`.chunks.insert_chunks`, the insert the telemetry batches use
too) and the frames a study keeps (``store.GazeFrame`` rows)."""
from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, exists, func, or_, select

from .. import store
from ..signals.gaze_batch import rows_to_chunk_batch
from .api import ApiError, token_participant
from .chunks import insert_chunks
from .config import StudyConfig
from .gaze_settings import GazeSettings, gaze_settings
from .gaze_trackers import Scoring, TrackerEntry
from .runtime import db, site
from .security import ParticipantToken

__all__ = ["IN_FORCE", "LOOKUP", "calibration_in_force", "frame_rows", "last_gaze_seq", "next_gaze_seq",
           "older_scoring", "participant_settings", "store_gaze", "study_settings", "sync_calibration"]

C, T, P = store.StreamChunk.__table__, store.Task.__table__, store.Participant.__table__
F = store.GazeFrame.__table__
CAL = store.Calibration.__table__

#: the calibration rows a tracker may use: a step's outcome (its model None: the calibration
#: failed, gaze stays uncalibrated) or, during a step, a fitted attempt (:mod:`.gaze_attempts`)
IN_FORCE = or_(CAL.c.kind == "outcome", and_(CAL.c.kind == "calibration", CAL.c.model.is_not(None)))

#: the task's last stored gaze chunk seq (:func:`last_gaze_seq`, and a column of :data:`LOOKUP`)
_LAST_SEQ = select(func.max(C.c.seq)).where(C.c.task_id == bindparam("task"), C.c.stream == "gaze")

# One query per frame batch: the participant's consent, study and pseudonym (of the row the token
# names; the caller checks the pseudonym against the token, :meth:`.security.ParticipantToken.matches`),
# the task's owner and clock
# anchor, whether (task, seq) is stored already, the task's last stored gaze seq (the WebSocket's
# replay check), the participant's latest calibration and, of the calibration the batch says it
# was taken under (``cal``; -1: none said), its id when it is one of this participant's in force
# (else None).
LOOKUP = select(
    P.c.consent, P.c.study_id, P.c.pseudonym,
    select(T.c.participant_id).where(T.c.id == bindparam("task")).scalar_subquery().label("owner"),
    select(T.c.clock_anchor_epoch_ms).where(T.c.id == bindparam("task")).scalar_subquery().label("anchor"),
    exists().where(and_(C.c.task_id == bindparam("task"), C.c.stream == "gaze",
                        C.c.seq == bindparam("seq"))).label("replay"),
    _LAST_SEQ.scalar_subquery().label("last_seq"),
    select(func.max(CAL.c.id)).where(CAL.c.participant_id == P.c.id, IN_FORCE).scalar_subquery().label("calibration"),
    select(CAL.c.id).where(CAL.c.id == bindparam("cal"), CAL.c.participant_id == P.c.id, IN_FORCE)
    .scalar_subquery().label("tagged"),
).where(P.c.id == bindparam("pid"))


# --------------------------------------------------------------------------- settings


def study_settings(study_id: int) -> tuple[StudyConfig, GazeSettings]:
    """The study's config and ``[gaze]`` settings (cached per process, as ``Site.config`` is)."""
    cache = current_app.extensions.setdefault("gazepref_gaze_settings", {})
    found = cache.get(study_id)
    if found is None:
        cfg = site().config(db().get(store.Study, study_id))
        found = cache[study_id] = (cfg, gaze_settings(cfg))
    return found


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
    return db().scalar(select(func.max(CAL.c.id)).where(CAL.c.participant_id == participant_id, IN_FORCE))


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
               frames: list[dict[str, Any]] | None = None) -> bool:
    """Store ``rows`` as the task's gaze chunk ``seq`` (and the kept ``frames``, GazeFrame rows)
    in one transaction; False for a replay."""
    chunk = store.chunk_from_batch(task_id, "gaze", seq, rows_to_chunk_batch(rows), clock_origin_epoch_ms=origin)
    # PostgreSQL, no kept frames: one statement on the autocommit engine (:func:`.chunks.insert_chunks`)
    with (site().engine if frames else site().statements).connect() as conn:
        return insert_chunks(conn, task_id, origin, [chunk], set_anchor=set_anchor, also=[(F, frames or [])])


def last_gaze_seq(task_id: int, conn: Any = None) -> int | None:
    """The seq of the task's last stored gaze chunk (None: none yet), read on ``conn`` (default
    the request's session)."""
    return (conn if conn is not None else db()).execute(_LAST_SEQ, {"task": task_id}).scalar()


def next_gaze_seq(task: store.Task) -> int:
    """The seq of the task's next gaze chunk (what the page's counter starts at)."""
    last = last_gaze_seq(task.id)
    return 0 if last is None else last + 1
