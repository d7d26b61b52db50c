"""Telemetry ingest: ``POST /api/ingest`` stores one batch atomically and idempotently.

Answers ``{"ok": true, "seq": n, "stored": rows, "duplicate": false}``; a replayed batch (same
task and seq) answers ``duplicate: true`` and adds nothing. Malformed batches get 400 (too large:
413) with ``{"error": "..."}``, and nothing of them is stored. Each participant token is rate
limited (429 with ``Retry-After``).

This is the hot path (one request per participant per second), so it uses SQLAlchemy Core on
one connection: one query checks ownership, consent and replay; one transaction inserts the
batch's chunks (one per stream) and sets the task's clock anchor on its first batch
(:func:`.chunks.insert_chunks`, the insert the webcam gaze paths share).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import and_, bindparam, exists, select

from .. import store
from .api import ApiError, install_error_handlers, request_participant_id
from .batches import Batch, BatchError, decode_body, parse_batch
from .chunks import insert_chunks
from .runtime import site

bp = Blueprint("ingest", __name__, url_prefix="/api")
install_error_handlers(bp)

T, P, C = store.Task.__table__, store.Participant.__table__, store.StreamChunk.__table__


# built once (bound parameters): the task's anchor and whether (task, seq) is stored, only when
# the task belongs to the consenting participant
_TASK_QUERY = (
    select(T.c.clock_anchor_epoch_ms,
           exists().where(and_(C.c.task_id == bindparam("task"), C.c.seq == bindparam("seq"),
                               C.c.stream.in_(bindparam("streams", expanding=True)))).label("replay"))
    .select_from(T.join(P, T.c.participant_id == P.c.id))
    .where(T.c.id == bindparam("task"), P.c.id == bindparam("participant"), P.c.consent.is_(True))
)


def store_batch(participant_id: int, batch: Batch) -> bool:
    """Store ``batch`` in one transaction; False when it was stored before (a replay)."""
    chunks = [store.make_chunk(batch.task, stream, batch.seq, table, clock_origin_epoch_ms=batch.origin)
              for stream, table in batch.tables.items()]
    with site().engine.connect() as conn:
        # PostgreSQL: the check is one statement, read outside a transaction (autocommit) to save
        # the BEGIN and ROLLBACK round trips (ingest profile, docs/STUDY_SITE.md "Benchmark")
        networked = conn.dialect.name != "sqlite"
        if networked:
            conn.execution_options(isolation_level="AUTOCOMMIT")
        # the batch's own streams: the webcam frames endpoint numbers its gaze chunks on its own
        found = conn.execute(_TASK_QUERY, {"task": batch.task, "seq": batch.seq, "participant": participant_id,
                                           "streams": sorted(batch.tables) or [""]}).first()
        # end the read (autocommit: SQLAlchemy's marker only); a SQLite read transaction cannot
        # always become a write one
        conn.rollback()
        if networked:
            conn.execution_options(isolation_level=conn.default_isolation_level)
        if found is None:
            raise ApiError(403, f"task {batch.task} is not yours")
        anchor, replay = found
        if replay:
            return False
        # the task's first page sets the task clock's anchor
        return insert_chunks(conn, batch.task, batch.origin, chunks, set_anchor=anchor is None)


@bp.post("/ingest")
def ingest():
    pid = request_participant_id()
    if not site().limiter.allow(f"p{pid}"):
        raise ApiError(429, "too many batches; slow down", retry_after=1)
    gzipped = (request.headers.get("Content-Encoding", "").lower() == "gzip" or request.args.get("enc") == "gzip")
    try:
        batch = parse_batch(decode_body(request.get_data(cache=False), gzipped))
    except BatchError as e:
        raise ApiError(e.status, str(e)) from None
    stored = store_batch(pid, batch)
    return jsonify(ok=True, seq=batch.seq, stored=batch.rows if stored else 0, duplicate=not stored)
