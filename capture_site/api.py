"""Shared pieces of the participant JSON API (chat and ingest): errors and token access.

Every API error is JSON ``{"error": "..."}`` with a status code; a request is authorised only by
the participant token (header ``X-Participant-Token`` or query ``token`` for ``sendBeacon``), and
only for tasks of that participant: the row the token names, with the pseudonym it was issued to
(the token carries a keyed digest of it, :class:`.security.ParticipantToken`; 401 otherwise, as
for a forged token).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import bindparam, select
from werkzeug.exceptions import HTTPException

from .. import store
from .runtime import db
from .security import ParticipantToken, read_participant_token
from .validation import InvalidInput, loads_json


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def install_error_handlers(bp: Blueprint) -> None:
    """JSON answers for the blueprint's errors (a database that cannot serve the request is the
    app's own handler: 503 + Retry-After, ``{"error", "retry": true}``, ``app._DatabaseUnavailable``)."""
    @bp.errorhandler(ApiError)
    def _api_error(e: ApiError):
        headers = {"Retry-After": str(e.extra["retry_after"])} if "retry_after" in e.extra else {}
        return jsonify(error=e.message, **e.extra), e.status, headers

    @bp.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        return jsonify(error=e.description or e.name), e.code



#: what a token answers once its participant is gone or no longer consents (withdrew)
UNKNOWN_PARTICIPANT = "unknown participant"


class TaskGone(ApiError):
    """A write found its task deleted after the request's consent check passed (the participant
    withdrew, or the researcher deleted their data, meanwhile): 401, as the same request gets
    after the withdrawal (:func:`token_participant`). Nothing of the request is stored."""

    def __init__(self) -> None:
        super().__init__(401, UNKNOWN_PARTICIPANT)


class ParticipantGone(TaskGone):
    """The participant's row went (a researcher's "Allow to start again" after "Delete data")
    while a request of theirs ran, found when it takes their lock
    (:func:`.chunks.participant_lock`): 401 from the API, as the next request gets
    (:func:`token_participant`); the flow's pages send the browser to the study's start."""


_TASK_ROW = select(store.Task.__table__.c.id).where(store.Task.__table__.c.id == bindparam("task"))


def raise_if_task_gone(conn, task_id: int) -> None:
    """:class:`TaskGone` when task ``task_id`` has no row (read on ``conn``, a connection or a
    session with no failed transaction open): the check an insert that failed on an integrity
    error makes before it calls the failure a replay. A deleted task fails its rows' foreign key;
    a replay (a unique key) leaves the task where it is."""
    if conn.execute(_TASK_ROW, {"task": task_id}).first() is None:
        raise TaskGone()


def request_token() -> ParticipantToken:
    """The participant the request's token names (signature checked; no database access: the
    caller checks the row with :meth:`~.security.ParticipantToken.names`, or
    :meth:`~.security.ParticipantToken.matches` on the pseudonym a query read with the row, or
    through :func:`token_participant`)."""
    token = request.headers.get("X-Participant-Token") or request.args.get("token")
    found = read_participant_token(token)
    if found is None:
        raise ApiError(401, "missing or invalid participant token")
    return found


def token_participant(token: ParticipantToken) -> store.Participant:
    """The consenting participant ``token`` was issued to (ApiError 401 otherwise: no such row,
    no consent, or a row with another pseudonym, as on a database that reused the id)."""
    p = db().get(store.Participant, token.id)
    if not token.names(p) or not p.consent:
        raise ApiError(401, UNKNOWN_PARTICIPANT)
    return p


def request_participant() -> store.Participant:
    return token_participant(request_token())


def owned_task(p: store.Participant, task_id: object) -> store.Task:
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise ApiError(400, "task must be an integer task id")
    task = db().get(store.Task, task_id) if 0 < task_id <= store.MAX_ID else None
    if task is None or task.participant_id != p.id:
        raise ApiError(403, f"task {task_id} is not yours")
    return task


def loads_object(text: str | bytes | None) -> dict | None:
    """``text`` parsed as a JSON object; None when it is not JSON, is JSON of another kind, or
    holds what the site cannot store (:func:`.validation.loads_json`; the callers answer 400 / 401)."""
    try:
        obj = loads_json(text) if text is not None else None
    except InvalidInput:
        return None
    return obj if isinstance(obj, dict) else None


def json_object() -> dict:
    """The request's JSON body as an object ({} when the body is empty), checked at the edge
    (:func:`.validation.loads_json`: storable text, finite numbers, bounded nesting) before any
    handler work; 400 for anything else."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        body = loads_json(data)
    except InvalidInput as e:
        raise ApiError(400, str(e)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def to_task_clock(task: store.Task, origin: float, t: float) -> float:
    """Shift a page-clock time onto the task clock; the task's first page sets the anchor."""
    if task.clock_anchor_epoch_ms is None:
        task.clock_anchor_epoch_ms = origin
    return t + store.task_clock_shift(origin, task.clock_anchor_epoch_ms)
