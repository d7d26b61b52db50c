"""Telemetry ingest: ``POST /api/ingest`` stores one batch atomically and idempotently.

Answers ``{"ok": true, "seq": n, "stored": rows, "duplicate": false}``; a replayed batch (same
task, page load ``origin`` and seq) answers ``duplicate: true`` and adds nothing. Malformed batches get 400 (too large:
413) with ``{"error": "..."}``, and nothing of them is stored; so does a batch with ``gaze`` rows
of a study that records a webcam (those go through the webcam endpoints, whose checks this path
lacks: each frame once, calibration, flags; the pages never send gaze here). A study without a
webcam may send gaze rows here (the simulator's tracker-output gaze, :mod:`.simulate`). Each participant token is rate
limited (429 with ``Retry-After``). The token is taken with the batch's lookup, after the batch is
parsed (it names the task); a body of more than :data:`.batches.LARGE_JSON_BYTES` as JSON (gzip:
as its trailer declares) is parsed only after a read of the participant's bucket found a token in
it (:meth:`.ratelimit.DbRateLimiter.has_token`), so a participant out of tokens cannot make the
server decompress and parse up to 16 MB a request; the page's usual batches (a few KB) cost no
extra read.

This is the hot path (one request per participant per second), so it uses SQLAlchemy Core on
one connection: one query checks ownership, consent and replay and reads the pseudonym the token's digest is checked
against (on PostgreSQL it also takes the
rate-limit token: :func:`.ratelimit.with_take`); one transaction inserts the batch's chunks (one
per stream) and sets the task's clock anchor on its first batch (:func:`.chunks.insert_chunks`;
on PostgreSQL one autocommit statement; the webcam gaze paths insert through the same code, in
a transaction under the task's lock, :func:`.gaze_store.store_gaze`). Two round trips
a batch on PostgreSQL (docs/STUDY_SITE.md "Benchmark").
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import and_, bindparam, exists, select

from .. import store
from .api import ApiError, install_error_handlers, request_token, token_participant
from .batches import Batch, BatchError, decode_body, json_size, out_of_tokens_for, parse_batch
from .chunks import insert_chunks, seq_refusal
from .ratelimit import with_take
from .runtime import site
from .security import ParticipantToken

bp = Blueprint("ingest", __name__, url_prefix="/api")
install_error_handlers(bp)

T, P, C = store.Task.__table__, store.Participant.__table__, store.StreamChunk.__table__


# built once (bound parameters): the task's anchor and whether (task, origin, seq) is stored (a
# replay: the same page load's batch; another page load's seq is its own), only when
# the task belongs to the consenting participant of the token's row id, and that row's pseudonym
# (the caller checks it against the token: :meth:`.security.ParticipantToken.matches`)
_TASK_QUERY = (
    select(T.c.clock_anchor_epoch_ms, P.c.pseudonym, P.c.study_id,
           exists().where(and_(C.c.task_id == bindparam("task"), C.c.seq == bindparam("seq"),
                               C.c.clock_origin_epoch_ms == bindparam("origin"),
                               C.c.stream.in_(bindparam("streams", expanding=True)))).label("replay"))
    .select_from(T.join(P, T.c.participant_id == P.c.id))
    .where(T.c.id == bindparam("task"), P.c.id == bindparam("participant"), P.c.consent.is_(True))
)


_TASK_QUERY_TAKING = with_take(_TASK_QUERY)


def _bucket(token: ParticipantToken) -> str:
    """The participant's ingest rate-limit key."""
    return f"p{token.id}"


#: what a webcam study's ``gaze`` rows sent here are told (:func:`store_batch`)
GAZE_ELSEWHERE = ("streams.gaze: this study records gaze through the webcam endpoints "
                  "(POST /api/gaze/frames, POST /api/gaze/samples or the WebSocket /api/gaze/ws), not /api/ingest")


def _gaze_refused(study_id: int) -> bool:
    """Whether the study records a webcam (its ``gaze`` stream is the webcam paths': each frame
    once under the task's lock, its calibration and flags, :func:`.gaze_store.store_gaze`), so
    ingest takes no gaze rows of it. A study without one (``webcam = "off"``, the default) may
    send gaze rows here: the simulator sends its tracker-output gaze that way (:mod:`.simulate`)."""
    from .gaze_store import study_settings  # (cached per process)

    return study_settings(study_id)[0].webcam != "off"


def _too_many() -> ApiError:
    return ApiError(429, "too many batches; slow down", retry_after=1)


def store_batch(token: ParticipantToken, batch: Batch) -> bool:
    """Take the participant's rate-limit token (ApiError 429) and store ``batch`` in one
    transaction; False when it was stored before (a replay). ApiError 401 when ``token``'s
    participant is gone, not consenting or another (:func:`.api.token_participant`), 403 when the
    task is not theirs, 400 for ``gaze`` rows of a study that records a webcam (:data:`GAZE_ELSEWHERE`)."""
    chunks = [store.make_chunk(batch.task, stream, batch.seq, table, clock_origin_epoch_ms=batch.origin)
              for stream, table in batch.tables.items()]
    limiter, key = site().limiter, _bucket(token)
    params = {"task": batch.task, "seq": batch.seq, "origin": batch.origin, "participant": token.id,
              # the batch's own streams: the webcam frames endpoint numbers its gaze chunks on its own
              "streams": sorted(batch.tables) or [""]}
    networked = site().engine.dialect.name != "sqlite"
    # PostgreSQL: the token and the check are one statement (the take as a CTE) and the insert
    # another, each on its own outside a transaction (the site's autocommit engine): two round
    # trips a batch (ingest profile, docs/STUDY_SITE.md "Benchmark")
    with (site().statements if networked else site().engine).connect() as conn:
        allowed = networked or limiter.allow(key)
        found = conn.execute(_TASK_QUERY_TAKING if networked else _TASK_QUERY,
                             params | limiter.params(key) if networked else params).first()
        if found is not None and not token.matches(found.pseudonym):
            found = None  # the row took a deleted participant's id: not the token's participant
        if networked:
            allowed = (found is None or bool(found.took)) and limiter.burst >= 1.0
        # (a seq beyond chunks.SEQ_FREE: one more read, in this read transaction)
        why = None if found is None or found.replay else seq_refusal(conn, batch.task, batch.seq)
        # end the read (autocommit: SQLAlchemy's marker only); a SQLite read transaction cannot
        # always become a write one
        conn.rollback()
        if not allowed:
            raise _too_many()
        if found is None:  # (the refusal only: which one it is costs a second look)
            token_participant(token)
            raise ApiError(403, f"task {batch.task} is not yours")
        if "gaze" in batch.tables and _gaze_refused(found.study_id):
            raise ApiError(400, GAZE_ELSEWHERE)
        if found.replay:
            return False
        if why is not None:
            raise ApiError(400, why)
        # the task's first page sets the task clock's anchor
        return insert_chunks(conn, batch.task, batch.origin, chunks, set_anchor=found.clock_anchor_epoch_ms is None)


@bp.post("/ingest")
def ingest():
    token = request_token()
    gzipped = (request.headers.get("Content-Encoding", "").lower() == "gzip" or request.args.get("enc") == "gzip")
    raw = request.get_data(cache=False)
    # a large body waits for a look at the bucket (the take itself comes with the task's lookup,
    # which needs the parsed batch)
    if out_of_tokens_for(json_size(raw, gzipped), site().limiter, _bucket(token)):
        raise _too_many()
    try:
        batch = parse_batch(decode_body(raw, gzipped))
    except BatchError as e:
        raise ApiError(e.status, str(e)) from None
    stored = store_batch(token, batch)
    return jsonify(ok=True, seq=batch.seq, stored=batch.rows if stored else 0, duplicate=not stored)
